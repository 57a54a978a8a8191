"""Pipelines as strings that parse and print back identically.

Grammar (whitespace around tokens is ignored; the printed form has none)::

    pipeline := element ("," element)*
    element  := NAME options?                       a pass or a named preset
              | "fixpoint" options? "(" pipeline ")"  repeat until no pass changes the model
    options  := "{" KEY "=" VALUE ("," KEY "=" VALUE)* "}"
    VALUE    := WORD ("," WORD)*      (a list value: a comma not followed by KEY "=" continues it)

``fixpoint`` takes one option, ``max`` (default 8): the bound on iterations. A preset name stands
for its registered pipeline and prints as its name. Examples::

    fold
    fold-constants,fold-batchnorm{...},eliminate-dead
    fixpoint{max=4}(fold-constants,eliminate-noop),prune{ratio=0.5,importance=l2}

Parsing validates everything: unknown passes, unknown options and values of the wrong type fail
here, before any model is touched.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from ir.errors import UsageError
from passes.base import Pass, create, lookup
from passes.presets import preset_names, preset_text, register_preset  # noqa: F401 - part of this module's interface

FIXPOINT = "fixpoint"
DEFAULT_FIXPOINT_MAX = 8

_NEXT_KEY = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_\-\.]*\s*=")


@dataclasses.dataclass
class PassStep:
    name: str
    options: dict[str, str]
    instance: Pass

    def __str__(self) -> str:
        return self.name + _options_text(self.options)


@dataclasses.dataclass
class PresetStep:
    name: str
    body: Pipeline

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass
class FixedPointStep:
    body: Pipeline
    max_iterations: int
    options: dict[str, str]

    def __str__(self) -> str:
        return f"{FIXPOINT}{_options_text(self.options)}({self.body})"


Step = PassStep | PresetStep | FixedPointStep


@dataclasses.dataclass
class Pipeline:
    steps: list[Step]

    def __str__(self) -> str:
        return ",".join(str(step) for step in self.steps)

    def passes(self) -> Iterator[Pass]:
        """Every pass instance, in order (each once, however many times a fixpoint repeats it)."""
        for step in self.steps:
            if isinstance(step, PassStep):
                yield step.instance
            else:
                yield from step.body.passes()


def _options_text(options: dict[str, str]) -> str:
    if not options:
        return ""
    return "{" + ",".join(f"{k}={v}" for k, v in options.items()) + "}"


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> UsageError:
        return UsageError(f"pipeline '{self.text}': {message} at position {self.pos}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.peek() or "end of text"
            raise self.fail(f"expected '{char}', found '{found}'")
        self.pos += 1

    def name(self) -> str:
        self.peek()
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_\-\.]*").match(self.text, self.pos)
        if not match:
            found = self.peek() or "end of text"
            raise self.fail(f"expected a pass name, found '{found}'")
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        self.peek()
        match = re.compile(r"[^,{}()=\s]+").match(self.text, self.pos)
        if not match:
            raise self.fail("expected an option value")
        self.pos = match.end()
        return match.group()

    def options(self) -> dict[str, str]:
        if self.peek() != "{":
            return {}
        self.pos += 1
        options: dict[str, str] = {}
        while True:
            key = self.name()
            self.expect("=")
            if key in options:
                raise self.fail(f"option '{key}' given twice")
            parts = [self.value()]
            # A comma followed by something that is not "KEY=" continues a list value:
            # quantize{ops=Conv,MatMul,calibrate=mse} has ops "Conv,MatMul".
            while self.peek() == "," and not _NEXT_KEY.match(self.text, self.pos + 1):
                self.pos += 1
                parts.append(self.value())
            options[key] = ",".join(parts)
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect("}")
            return options

    def pipeline(self) -> Pipeline:
        steps = [self.step()]
        while self.peek() == ",":
            self.pos += 1
            steps.append(self.step())
        return Pipeline(steps)

    def step(self) -> Step:
        name = self.name()
        options = self.options()
        if name == FIXPOINT:
            max_iterations = DEFAULT_FIXPOINT_MAX
            for key, raw in options.items():
                if key != "max":
                    raise self.fail(f"fixpoint: unknown option '{key}' (accepted: max)")
                if not raw.isdigit() or int(raw) < 1:
                    raise self.fail(f"fixpoint: option 'max' must be a positive integer, got {raw}")
                max_iterations = int(raw)
            self.expect("(")
            body = self.pipeline()
            self.expect(")")
            return FixedPointStep(body, max_iterations, options)
        if name in preset_names():
            if options:
                raise self.fail(f"preset '{name}' takes no options")
            return PresetStep(name, parse(preset_text(name)))
        lookup(name)  # unknown pass -> UsageError listing the known ones
        return PassStep(name, options, create(name, options))


def parse(text: str) -> Pipeline:
    """Parse and validate a pipeline string; ``str(parse(t)) == t`` for text written without spaces."""
    if not text or not text.strip():
        raise UsageError("empty pipeline: give at least one pass, e.g. 'fold'")
    parser = _Parser(text)
    pipeline = parser.pipeline()
    if parser.peek():
        raise parser.fail(f"unexpected '{parser.peek()}'")
    return pipeline
