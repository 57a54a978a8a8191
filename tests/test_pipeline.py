"""Pipeline strings parse, validate and print back identically; options are typed."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from ir.errors import UsageError
from passes.base import Pass, PassResult, create, register
from passes.pipeline import parse


@register
class _OptionsProbe(Pass):
    """A pass that only exists to exercise typed options."""

    name = "test-options-probe"

    @dataclasses.dataclass(frozen=True)
    class Options:
        ratio: float = dataclasses.field(default=0.5, metadata={"check": lambda v: 0 < v < 1, "rule": "in (0, 1)"})
        bits: int = 8
        symmetric: bool = True
        mode: Literal["l1", "l2"] = "l2"

    def call(self, model):
        return PassResult(model, modified=False)


@pytest.mark.parametrize(
    "text",
    [
        "fold",
        "eliminate-dead",
        "test-options-probe{ratio=0.25,bits=4,symmetric=false,mode=l1}",
        "fixpoint{max=3}(eliminate-dead,test-options-probe{bits=2}),eliminate-dead",
        "fixpoint(fixpoint{max=2}(eliminate-dead))",
        "quantize{ops=Conv,MatMul,calibrate=mse},eliminate-dead",
        "quantize{exclude=conv_1,Softmax}",
    ],
)
def test_pipeline_text_round_trips(text):
    assert str(parse(text)) == text


def test_whitespace_is_ignored_and_not_printed():
    assert str(parse(" eliminate-dead , test-options-probe{ bits = 4 } ")) == "eliminate-dead,test-options-probe{bits=4}"


def test_a_comma_not_followed_by_a_key_continues_a_list_value():
    quantize = next(parse("quantize{ops=Conv,Gemm,calibrate=mse}").passes())
    assert quantize.options.ops == "Conv,Gemm" and quantize.options.calibrate == "mse"


def test_options_arrive_typed():
    probe = next(parse("test-options-probe{ratio=0.25,bits=4,symmetric=false,mode=l1}").passes())
    assert probe.options.ratio == 0.25 and probe.options.bits == 4
    assert probe.options.symmetric is False and probe.options.mode == "l1"


def test_repr_of_a_pass_shows_only_non_default_options():
    assert repr(create("test-options-probe", {"bits": "4"})) == "test-options-probe{bits=4}"


def test_fold_preset_expands_to_a_fixpoint_of_registered_passes():
    step = parse("fold").steps[0]
    names = [p.name for p in step.body.passes()]
    assert "eliminate-dead" in names and len(names) == len(set(names)) > 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-such-pass", "unknown pass 'no-such-pass'"),
        ("test-options-probe{nope=1}", "unknown option 'nope' (accepted: ratio, bits, symmetric, mode)"),
        ("test-options-probe{bits=four}", "option 'bits' expects an integer, got four"),
        ("test-options-probe{ratio=1.5}", "option 'ratio' must be in (0, 1), got 1.5"),
        ("test-options-probe{mode=l3}", "option 'mode' must be one of l1, l2, got l3"),
        ("test-options-probe{symmetric=maybe}", "expects true or false"),
        ("test-options-probe{bits=4,bits=5}", "given twice"),
        ("fixpoint{max=0}(eliminate-dead)", "positive integer"),
        ("fixpoint(eliminate-dead", "expected ')'"),
        ("eliminate-dead,", "expected a pass name"),
        ("fold{x=1}", "takes no options"),
        ("", "empty pipeline"),
    ],
)
def test_bad_pipelines_fail_with_a_message_naming_the_problem(text, message):
    with pytest.raises(UsageError, match=None) as info:
        parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
