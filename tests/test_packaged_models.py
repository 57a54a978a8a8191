"""Models fold was not tuned on (trained models other pip packages ship; the bench extra installs
them): fold keeps their outputs within 1e-4, and leaves no more nodes than onnxslim wherever
onnxslim keeps the outputs too."""

from __future__ import annotations

import pytest

from ir import fidelity, io, runtime, shapes
from models import zoo
from passes.manager import PassManager


def _params():
    return [pytest.param(name, marks=[] if zoo.available(name) else [pytest.mark.skip(reason=zoo.BENCH_HINT)])
            for name in zoo.PACKAGED_MODELS]


_FOLDED: dict = {}


def _folded(name):
    if name not in _FOLDED:
        model = io.load(zoo.model_path(name))
        shapes.fix_input_shapes(model, zoo.default_input_shapes(name))
        feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
        reference = [runtime.run(model, f) for f in feeds]
        original = io.to_proto(model)
        result = PassManager("fold", verify="end", feeds=feeds).run(model)
        _FOLDED[name] = (original, result, feeds, reference)
    return _FOLDED[name]


@pytest.mark.parametrize("name", _params())
def test_fold_keeps_the_outputs_of_models_it_was_not_tuned_on(name):
    original, result, feeds, reference = _folded(name)
    assert not result.failures, [f.failure for f in result.failures]
    assert len(result.model.graph) < len(original.graph.node)
    for feed, expected in zip(feeds, reference):
        assert fidelity.compare(expected, runtime.run(result.model, feed))["max_rel"] <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", _params())
def test_fold_leaves_no_more_nodes_than_onnxslim(name):
    onnxslim = pytest.importorskip("onnxslim")
    original, result, feeds, reference = _folded(name)
    slim = onnxslim.slim(original)
    slim_error = max(fidelity.compare(expected, runtime.run(slim, feed))["max_rel"] for feed, expected in zip(feeds, reference))
    if slim_error > 1e-4:
        pytest.skip(f"onnxslim changes this model's outputs (max relative error {slim_error:.1e}): no count to compare with")
    assert len(result.model.graph) <= len(slim.graph.node)
