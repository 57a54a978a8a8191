"""sparsify: magnitude pruning to a target sparsity, per layer or global, with the zip size measured."""

from __future__ import annotations

import numpy as np
import pytest

from ir import io, runtime
from ir.channel_groups import weight_array
from models import builders
from passes.base import create


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_sparsity_is_reached_and_zip_size_shrinks(scope):
    model = builders.build("mobilenetv2", image_size=32)
    before = io.copy_model(model)
    pass_ = create("sparsify", {"sparsity": "0.6", "scope": scope})
    assert pass_(model).modified
    assert abs(pass_.stats["sparsity x1000"] - 600) <= 2
    assert pass_.stats["zip bytes after"] < 0.75 * pass_.stats["zip bytes before"]
    feeds = runtime.generate_inputs(before)
    out = runtime.run(model, feeds)["output"]
    assert out.shape == runtime.run(before, feeds)["output"].shape and np.isfinite(out).all()


def test_per_layer_scope_sparsifies_every_layer_equally():
    model = builders.build("mobilenetv2", image_size=32)
    create("sparsify", {"sparsity": "0.5", "scope": "layer"})(model)
    for node in model.graph:
        if node.op_type == "Conv":
            weight = weight_array(node.inputs[1])
            if weight.size >= 1024:
                assert np.mean(weight == 0) == pytest.approx(0.5, abs=0.01)
