"""The pass manager verifies every pass, rolls back the ones that break the model, and reports."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from ir import io
from ir.errors import PassFailedError
from passes.base import Pass, PassResult, register
from passes.instruments import DumpAfterChange, Reproducer, StatisticsInstrument
from passes.manager import PIPELINE_METADATA_KEY, PassManager


@register
class _BreakOutputs(Pass):
    """Claims to be lossless but scales the first initializer: the verifier must catch it."""

    name = "test-break-outputs"

    def call(self, model):
        value = next(iter(model.graph.initializers.values()))
        value.const_value = ir.tensor(value.const_value.numpy() * 2.0, name=value.name)
        return PassResult(model, modified=True)


@register
class _BreakStructure(Pass):
    """Removes the first node while its output is still used: a dangling value."""

    name = "test-break-structure"

    def call(self, model):
        model.graph.remove(next(iter(model.graph)), safe=False)
        return PassResult(model, modified=True)


@register
class _Crash(Pass):
    name = "test-crash"

    def call(self, model):
        raise RuntimeError("bug in the pass")


@register
class _AlwaysModified(Pass):
    """Reports a change every time without changing anything: a fixpoint must stop at its bound."""

    name = "test-always-modified"

    def call(self, model):
        return PassResult(model, modified=True)


def _weights(model):
    return {name: v.const_value.numpy().copy() for name, v in model.graph.initializers.items()}


@pytest.mark.parametrize("bad", ["test-break-outputs", "test-break-structure", "test-crash"])
def test_a_pass_that_breaks_the_model_is_rolled_back_and_named(tiny_model, bad):
    weights = _weights(tiny_model)
    result = PassManager(f"eliminate-noop,{bad}").run(tiny_model)
    (failed,) = result.failures
    assert failed.name == bad and failed.rolled_back
    assert result.records[0].modified and not result.records[0].rolled_back  # the Identity went
    assert [n.op_type for n in result.model.graph] == ["Conv", "Relu"]
    for name, array in weights.items():
        np.testing.assert_array_equal(result.model.graph.initializers[name].const_value.numpy(), array)


def test_strict_mode_stops_at_the_breaking_pass(tiny_model):
    with pytest.raises(PassFailedError, match="pass 'test-break-outputs' failed: changed the outputs"):
        PassManager("test-break-outputs", strict=True).run(tiny_model)


def test_verification_off_cannot_roll_back_so_it_stops(tiny_model):
    with pytest.raises(PassFailedError, match="test-crash"):
        PassManager("test-crash", verify="off").run(tiny_model)


def test_fixpoint_stops_at_its_bound_and_says_it_did_not_converge(tiny_model):
    result = PassManager("fixpoint{max=3}(test-always-modified)").run(tiny_model)
    assert len(result.records) == 3
    assert result.fixpoints == [{"group": "fixpoint{max=3}(test-always-modified)", "iterations": 3, "converged": False}]


def test_fold_converges_and_records_its_pipeline_in_the_model(tiny_model):
    result = PassManager("fold").run(tiny_model)
    assert result.fixpoints[0]["converged"]
    assert result.model.metadata_props[PIPELINE_METADATA_KEY] == "fold"
    assert result.final_error["max_rel"] <= 1e-6


def test_statistics_record_nodes_before_and_after_each_change(tiny_model):
    result = PassManager("eliminate-noop", instruments=[StatisticsInstrument()]).run(tiny_model)
    (record,) = result.records
    assert record.before["nodes"] == 3 and record.after["nodes"] == 2
    assert record.before["params"] == record.after["params"] == 4 * 3 * 3 * 3 + 4


def test_dump_after_change_writes_one_model_per_change(tiny_model, tmp_path):
    PassManager("eliminate-noop,eliminate-dead", instruments=[DumpAfterChange(tmp_path)]).run(tiny_model)
    (dumped,) = sorted(tmp_path.iterdir())
    assert dumped.name == "001-eliminate-noop.onnx"
    assert len(io.load(dumped).graph) == 2


def test_reproducer_holds_the_model_before_the_failing_pass(tiny_model, tmp_path):
    repro = Reproducer(tmp_path / "repro")
    PassManager("eliminate-noop,test-break-outputs", instruments=[repro]).run(tiny_model)
    assert (tmp_path / "repro" / "pipeline.txt").read_text().strip() == "test-break-outputs"
    before = io.load(tmp_path / "repro" / "model.onnx")
    assert [n.op_type for n in before.graph] == ["Conv", "Relu"]
