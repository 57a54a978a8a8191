"""Weight clustering: exact 1-D k-means, Huffman sizes, and the cluster pass in both storage modes."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from models import builders
from passes.cluster.huffman import code_lengths, coded_bits
from passes.cluster.kmeans1d import kmeans_1d
from passes.manager import PassManager


def brute_force_cost(x, k):
    x = np.sort(x)
    best = np.inf
    for cuts in itertools.combinations(range(1, x.size), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(((p - p.mean()) ** 2).sum() for p in parts))
    return best


def test_kmeans_1d_finds_the_optimal_clustering():
    x = np.random.default_rng(3).standard_normal(14)
    centroids, index = kmeans_1d(x, 3)
    assert np.isclose(((x - centroids[index]) ** 2).sum(), brute_force_cost(x, 3))


def test_huffman_lengths_of_a_known_distribution():
    assert list(code_lengths(np.array([8, 4, 2, 1, 1]))) == [1, 2, 3, 4, 4]
    assert coded_bits(np.array([0, 0, 0, 0]), 16) == 4


def run(model, pipeline):
    return PassManager(pipeline, verify="off", strict=True).run(model)


def output(model, feed):
    proto = ir.serde.serialize_model(model).SerializeToString()
    return ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, feed)[0]


@pytest.mark.parametrize("per_channel", [False, True])
def test_index_mode_decodes_in_graph_to_the_same_weights_as_float_mode(per_channel):
    feed = {"input": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    option = f"per_channel={'true' if per_channel else 'false'}"
    indexed = run(builders.build("resnet18", image_size=32), f"cluster{{clusters=16,{option}}}")
    plain = run(builders.build("resnet18", image_size=32), f"cluster{{clusters=16,mode=float,{option}}}")
    onnx.checker.check_model(ir.serde.serialize_model(indexed.model), full_check=True)
    assert np.allclose(output(indexed.model, feed), output(plain.model, feed), rtol=1e-4, atol=1e-5)
    ops = [n.op_type for n in indexed.model.graph]
    assert ("GatherElements" if per_channel else "Gather") in ops
    stats = indexed.records[0].stats
    assert stats["Huffman-coded bytes (indices + codebooks)"] < stats["index bytes (uint8)"] < stats["float bytes"] / 3
    conv = next(n for n in plain.model.graph if n.op_type == "Conv" and n.inputs[1].const_value.size >= 1024)
    weight = conv.inputs[1].const_value.numpy()
    rows = weight.reshape(weight.shape[0], -1) if per_channel else weight.reshape(1, -1)
    assert max(np.unique(row).size for row in rows) <= 16
