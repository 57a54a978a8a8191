"""Helpers shared by the pass tests: models written as ONNX text, running a pass, comparing outputs
with ONNX Runtime, and the real models.

Test modules import them with ``from conftest import ...``: pytest loads this file, under the module
name ``conftest``, before it imports the test modules beside it.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx_ir as ir
import pytest

from ir import fidelity, io, runtime, shapes
from models import zoo
from passes.base import Pass, PassResult, create

# ONNX text names of the element types the tests write; float64 numbers are written as float.
_TEXT_TYPES = {np.float32: "float", np.float64: "float", np.float16: "float16", np.int64: "int64"}


def model_text(body: str, inputs: str = "float[2,3] x", outputs: str = "float[2,3] y", opset: int = 17, inits: str = "") -> str:
    """A one-graph model ``g`` in ONNX text, with ``inits`` (ONNX text too) as its initializers."""
    initializers = f"<{inits}>" if inits else ""
    return f"""
    <ir_version: 8, opset_import: ["" : {opset}]>
    g ({inputs}) => ({outputs}) {initializers} {{
        {body}
    }}
    """


def branch_model_text(then_body: str, before_if: str = "") -> str:
    """A model ``y = If(c)`` over ``x: float[2,3]``: the then branch runs ``then_body`` and returns its
    ``t``, the else branch returns ``Neg(x)``; ``before_if`` holds main-graph nodes ahead of the If."""
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2,3] x) => (float[2,3] y) {{
        {before_if}
        y = If(c) <
            then_branch = then_g () => (float[2,3] t) {{ {then_body} }},
            else_branch = else_g () => (float[2,3] e) {{ e = Neg(x) }}
        >
    }}
    """


def then_branch(model: ir.Model) -> ir.Graph:
    """The then branch of the first node (an If) of the main graph."""
    return next(iter(model.graph)).attributes["then_branch"].value


def weights_model_text(signature: str, weights: dict[str, np.ndarray], body: str, opset: int = 17) -> str:
    """A model ``g`` with the signature ``(inputs) => (outputs)`` and ``weights`` as initializers."""
    inits = ", ".join(initializer_text(name, array) for name, array in weights.items())
    return f'<ir_version: 8, opset_import: ["" : {opset}]>\ng {signature} <{inits}> {{\n{body}\n}}'


def initializer_text(name: str, array: np.ndarray) -> str:
    """An initializer declaration in ONNX text; float64 arrays become float (float32) ones."""
    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    dims = f"[{','.join(map(str, array.shape))}]" if array.ndim else ""  # a scalar has no brackets
    # The text format spells float16 values as their bit patterns.
    raw = array.view(np.uint16) if array.dtype == np.float16 else array
    values = ",".join(repr(v.item()) for v in raw.ravel())
    return f"{_TEXT_TYPES[array.dtype.type]}{dims} {name} = {{{values}}}"


def apply_pass(name: str, text: str, **options) -> tuple[ir.Model, PassResult, Pass]:
    """Run the pass ``name`` on the model in ONNX text: (a copy of the model before, result, pass)."""
    model = ir.from_onnx_text(text)
    before = io.copy_model(model)
    rewrite = create(name, options)
    return before, rewrite(model), rewrite


def apply_and_compare(name: str, text: str, **options) -> tuple[Pass, PassResult, float]:
    """Run the pass as ``apply_pass`` does: (pass, result, largest relative output error vs. before)."""
    before, result, rewrite = apply_pass(name, text, **options)
    return rewrite, result, output_difference(before, result.model)["max_rel"]


def output_difference(before: ir.Model, after: ir.Model, feeds: dict[str, np.ndarray] | None = None) -> dict:
    """ONNX Runtime's outputs of both models on the same inputs (random ones unless given), compared."""
    feeds = runtime.generate_inputs(before) if feeds is None else feeds
    return fidelity.compare(runtime.run(before, feeds), runtime.run(after, feeds))


def assert_same_outputs(before: ir.Model, after: ir.Model, *, max_abs: float | None = None, max_rel: float | None = None, feeds=None) -> None:
    """The outputs agree within the bounds given; without bounds they must be equal to the bit."""
    if max_abs is None and max_rel is None:
        max_abs = 0.0
    difference = output_difference(before, after, feeds)
    assert max_abs is None or difference["max_abs"] <= max_abs, difference
    assert max_rel is None or difference["max_rel"] <= max_rel, difference


def assert_same_outputs_in_both_branches(before: ir.Model, after: ir.Model) -> None:
    """``assert_same_outputs`` for a ``branch_model_text`` model, with the condition true and false."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    for condition in (True, False):
        assert_same_outputs(before, after, feeds={"c": np.array(condition), "x": x})


def op_types(model: ir.Model) -> list[str]:
    """The main graph's op types, in order."""
    return [node.op_type for node in model.graph]


def op_counts(model: ir.Model) -> collections.Counter:
    """How many nodes of each op type the main graph has."""
    return collections.Counter(op_types(model))


def ints_of(value: ir.Value):
    """A constant value's contents as (nested) Python ints."""
    return ir.convenience.get_const_tensor(value).numpy().tolist()


def real_model(name: str) -> ir.Model:
    """A real model of ``models.zoo`` with its default input shapes fixed; skips when not installed."""
    if not zoo.available(name):
        pytest.skip(f"{name} is not installed ({zoo.REAL_MODELS_HINT})")
    model = io.load(zoo.model_path(name))
    shapes.fix_input_shapes(model, zoo.default_input_shapes(name))
    return model
