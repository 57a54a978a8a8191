"""The pass contract: a registered textual name, typed options validated at construction, statistics.

A pass is an ``onnx_ir`` in-place pass. Subclasses set:

- ``name``: the textual name used in pipeline strings (``fold-batchnorm``);
- ``Options``: a dataclass whose fields are the pass's options. Field types are ``int``, ``float``,
  ``bool``, ``str`` or ``typing.Literal[...]``; a field's ``metadata={"check": fn, "doc": "..."}``
  gives a validity predicate and a description. Values from a pipeline string arrive as text and are
  converted here, so an unknown option or a value of the wrong type fails when the pass is built;
- ``lossless``: whether the pass promises numerically equivalent outputs (the verifier compares them);
- ``call(model) -> PassResult``: the rewrite, reporting whether it modified the model;
- lossy passes: ``intent(original) -> Intent | None``, the exact model the pass means to produce,
  built from the model it was given by an independent construction (``passes.intent``); the pass
  manager checks the produced model against it like a lossless pass.

Passes count what they did in ``self.stats`` (a Counter shown in the report) and record nodes they
left alone on purpose with ``self.note(...)`` (e.g. an op from an unknown custom domain).

Lossy passes also hand the report what they did layer by layer (the pass manager copies these into
the pass's record; ``report.md`` and ``report.json`` show them per pass):

- ``self.layers``: one row per changed layer (``layer_row``): ``layer`` (node name), ``op``,
  ``action`` (short text: "int8", "pruned 16/64 channels"), ``params_before``, ``params_after``,
  ``macs_before``, ``macs_after``, optionally ``sqnr_db`` (that layer's error on held-back feeds)
  and any pass-specific keys;
- ``self.skipped``: ``(layer, reason)`` for layers left alone on purpose;
- ``self.fidelity``: the pass's own measured output error on held-back feeds, as returned by
  ``ir.fidelity.measure`` (``max_abs``, ``max_rel``, ``sqnr_db``, ``cosine``, optional
  ``top1_agreement``, ``feeds``), or None when it measured none.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
import typing
from collections import Counter
from typing import Any, ClassVar

import onnx_ir as ir

from ir.errors import UsageError
from passes.presets import preset_names

PassResult = ir.passes.PassResult

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """This pass takes no options."""


class Pass(ir.passes.InPlacePass):
    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    lossless: ClassVar[bool] = True

    def __init__(self, **options: Any):
        super().__init__()
        self.options = build_options(self.name, self.Options, options)
        self.stats: Counter[str] = Counter()
        self.notes: list[str] = []
        self.context: Any = None  # set by the pass manager: input shapes, calibration data
        self.layers: list[dict[str, Any]] = []
        self.skipped: list[tuple[str, str]] = []
        self.fidelity: dict[str, float] | None = None

    def clear_report(self) -> None:
        """Forget the statistics and the layer report of an earlier run (the manager calls this)."""
        self.stats.clear()
        self.layers = []
        self.skipped = []
        self.fidelity = None

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def calibration_feeds(self, model: ir.Model, n: int, *, generated: int = 4, warning: str | None = None) -> list[dict]:
        """Up to ``n`` feeds of the run's calibration data (``context.calibration``); without any, up to
        ``generated`` generated random inputs. ``warning`` is noted when the feeds are generated."""
        from passes.calibration import Calibration  # noqa: PLC0415 - only data-aware passes need it

        calibration = getattr(self.context, "calibration", None) if self.context is not None else None
        feeds = calibration.take(n) if calibration is not None else []
        if not feeds:
            calibration = Calibration.generated_for(model, n=generated)
            feeds = calibration.take(n)
        if warning and calibration.generated:
            self.note(warning)
        return feeds

    def call(self, model: ir.Model) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def intent(self, original: ir.Model):
        """The exact model this (lossy) pass means to produce from ``original``, a fresh copy of the
        model it was given, as a ``passes.intent.Intent``; None when the pass states none."""
        return None

    def options_text(self) -> dict[str, str]:
        """Options that differ from their defaults, as pipeline text."""
        text = {}
        for field in dataclasses.fields(self.Options):
            value = getattr(self.options, field.name)
            if field.default is not dataclasses.MISSING and value == field.default:
                continue
            text[field.name] = format_value(value)
        return text

    def __repr__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options_text().items())
        return f"{self.name}{{{opts}}}" if opts else self.name


_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its textual name."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"pass name '{cls.name}' is registered twice")
    if not dataclasses.is_dataclass(cls.Options):
        raise TypeError(f"{cls.__name__}.Options must be a dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Pass]]:
    _load_builtin_passes()
    return dict(sorted(_REGISTRY.items()))


def lookup(name: str) -> type[Pass]:
    passes = registered()
    if name not in passes:
        known = ", ".join([*passes, *preset_names()])
        raise UsageError(f"unknown pass '{name}' (known: {known})")
    return passes[name]


def create(name: str, options: dict[str, Any] | None = None) -> Pass:
    return lookup(name)(**(options or {}))


# Subpackages of ``passes`` that are not pass families.
NOT_FAMILIES = frozenset({"app"})
_LOADED_FAMILIES: set[str] = set()


def _load_builtin_passes() -> None:
    """Import every module of every pass family, which registers the passes they define.

    A family is any subpackage folder of ``passes`` except ``app`` and names starting with ``_``;
    its modules are found on disk (``pkgutil``), so a new family or pass is a new folder or file
    and nothing else. Done lazily, on the first lookup, to keep ``import passes`` cheap.
    """
    package = sys.modules[__package__]
    for family in pkgutil.iter_modules(package.__path__):
        if not family.ispkg or family.name in NOT_FAMILIES or family.name.startswith("_") or family.name in _LOADED_FAMILIES:
            continue
        family_package = importlib.import_module(f"{__package__}.{family.name}")
        for module in pkgutil.iter_modules(family_package.__path__):
            if not module.name.startswith("_") and not module.name.endswith("_test"):
                importlib.import_module(f"{family_package.__name__}.{module.name}")
        _LOADED_FAMILIES.add(family.name)


def build_options(pass_name: str, options_cls: type, given: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    values = {}
    for key, raw in given.items():
        if key not in fields:
            accepted = ", ".join(fields) or "none"
            raise UsageError(f"pass '{pass_name}': unknown option '{key}' (accepted: {accepted})")
        value = convert_value(pass_name, key, hints[key], raw)
        check = fields[key].metadata.get("check")
        if check is not None and not check(value):
            rule = fields[key].metadata.get("rule", "a valid value")
            raise UsageError(f"pass '{pass_name}': option '{key}' must be {rule}, got {format_value(value)}")
        values[key] = value
    missing = [name for name, f in fields.items() if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UsageError(f"pass '{pass_name}': missing required option(s): {', '.join(missing)}")
    return options_cls(**values)


def convert_value(pass_name: str, key: str, hint: Any, raw: Any) -> Any:
    where = f"pass '{pass_name}': option '{key}'"
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            if raw == choice or (isinstance(raw, str) and raw == format_value(choice)):
                return choice
        raise UsageError(f"{where} must be one of {', '.join(map(format_value, choices))}, got {raw}")
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"{where} expects true or false, got {raw}")
    if hint in (int, float):
        if isinstance(raw, bool):
            raise UsageError(f"{where} expects {hint.__name__}, got {raw}")
        try:
            value = hint(raw)
        except (TypeError, ValueError):
            raise UsageError(f"{where} expects {'an integer' if hint is int else 'a number'}, got {raw}") from None
        if hint is int and isinstance(raw, float) and raw != value:
            raise UsageError(f"{where} expects an integer, got {raw}")
        return value
    if hint is str:
        return str(raw)
    raise TypeError(f"{where}: unsupported option type {hint}")


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def option_docs(cls: type[Pass]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) for each option, for `passes list`."""
    hints = typing.get_type_hints(cls.Options)
    rows = []
    for field in dataclasses.fields(cls.Options):
        hint = hints[field.name]
        type_text = "|".join(map(format_value, typing.get_args(hint))) if typing.get_origin(hint) is typing.Literal else hint.__name__
        default = "" if field.default is dataclasses.MISSING else format_value(field.default)
        rows.append((field.name, type_text, default, field.metadata.get("doc", "")))
    return rows


def layer_costs(model: ir.Model, *, infer_shapes: bool = True) -> dict[ir.Node, tuple[int, int]]:
    """(params, MACs) of every main-graph node, for the rows of ``Pass.layers`` (unknown MACs count 0)."""
    from ir import cost  # noqa: PLC0415 - only lossy passes need it

    summary = cost.analyze(model, infer_shapes=infer_shapes)
    return {node: (entry.params, entry.macs or 0) for node, entry in zip(model.graph, summary.per_node)}


def layer_name(node: ir.Node) -> str:
    return node.name or (node.outputs[0].name if node.outputs else node.op_type)


def layer_row(node: ir.Node, action: str, before: tuple[int, int], after: tuple[int, int] | None = None, **extra: Any) -> dict[str, Any]:
    """One row of ``Pass.layers``: ``before``/``after`` are (params, MACs); ``after`` defaults to ``before``."""
    after = before if after is None else after
    return {"layer": layer_name(node), "op": node.op_type, "action": action, "params_before": int(before[0]), "params_after": int(after[0]),
            "macs_before": int(before[1]), "macs_after": int(after[1]), **extra}


def is_standard_domain(node: ir.Node) -> bool:
    return node.domain in STANDARD_DOMAINS


def all_nodes(model: ir.Model):
    """Every node of the model: main graph, subgraphs (If/Loop/Scan) and model-local functions."""
    yield from ir.traversal.RecursiveGraphIterator(model.graph)
    for function in model.functions.values():
        yield from ir.traversal.RecursiveGraphIterator(function)


def all_graphs(model: ir.Model):
    """The main graph, every subgraph inside it, and every model-local function."""
    yield model.graph
    yield from model.graph.subgraphs()
    for function in model.functions.values():
        yield function
        yield from (g for node in function for attr in node.attributes.values() for g in _attr_graphs(attr))


def _attr_graphs(attr):
    if attr.type == ir.AttributeType.GRAPH:
        yield attr.value
        yield from attr.value.subgraphs()
    elif attr.type == ir.AttributeType.GRAPHS:
        for graph in attr.value:
            yield graph
            yield from graph.subgraphs()
