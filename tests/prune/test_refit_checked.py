"""``reconstruct.refit_checked`` (the refit on a copy, written back only when the model's output SQNR on
the held-out feeds is not lower with it) and ``sample_input_rows`` (a deterministic, bounded sample of a
layer's input rows, drawn evenly from the feeds), on small models whose answer is known by construction:
a layer whose outputs are exactly reachable is refit to the weights numpy's least squares finds, and a
refit that makes the network worse (a later layer that compensated the layer's error) is discarded."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir import io, runtime
from passes import reconstruct

RNG = np.random.default_rng(5)


def model_of(nodes, initializers, outputs=("y",), features=5) -> ir.Model:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
                              [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in initializers.items()])
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


def gemm(w, b, **attributes) -> ir.Model:
    """``y = x @ w + b`` as one Gemm."""
    return model_of([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="layer", **attributes)], {"w": w, "b": b})


def chain(w1, w2) -> ir.Model:
    """``h = x @ w1`` (MatMul), ``y = h @ w2`` (Gemm without bias)."""
    return model_of([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Gemm", ["h", "w2"], ["y"])], {"w1": w1, "w2": w2})


def feeds(count: int, rows: int = 6, features: int = 5) -> list[dict[str, np.ndarray]]:
    return [{"x": RNG.standard_normal((rows, features)).astype(np.float32)} for _ in range(count)]


def node_named(model: ir.Model, output: str) -> ir.Node:
    return next(node for node in model.graph if node.outputs[0].name == output)


def weights(model: ir.Model) -> dict[str, np.ndarray]:
    return {name: value.const_value.numpy().copy() for name, value in model.graph.initializers.items()}


def stacked(data) -> np.ndarray:
    return np.concatenate([f["x"] for f in data]).astype(np.float64)


def test_an_accepted_refit_writes_the_least_squares_weights_into_the_model():
    w0, b0 = RNG.standard_normal((5, 3)), RNG.standard_normal(3)
    reference = gemm(w0, b0)
    model = gemm(w0 + 0.5 * RNG.standard_normal((5, 3)), b0 + 1.0, alpha=2.0, beta=0.5)
    before = io.copy_model(model)
    data = feeds(4)
    node = node_named(model, "y")
    done = reconstruct.refit_checked(reference, model, [node], data, ridge=1e-9, validate_every=2)
    assert done.accepted is True and done.written == [node] and node in list(model.graph)
    # the final fit uses every feed: numpy's least squares on all rows, with the bias column
    x = stacked(data)
    expected, *_ = np.linalg.lstsq(np.concatenate([x, np.ones((24, 1))], axis=1), x @ w0 + b0, rcond=None)
    np.testing.assert_allclose(reconstruct.flat_weight(node).T, expected[:5], atol=1e-4)
    np.testing.assert_allclose(reconstruct.bias_of(node, 3), expected[5], atol=1e-4)
    # the check: the second and fourth feed (every validate_every-th), the model before and after
    held = [data[1], data[3]]
    assert done.check == {"feeds": 2, "sqnr_db_unrefit": reconstruct.output_sqnr_db(reference, before, held),
                          "sqnr_db_refit": reconstruct.output_sqnr_db(reference, model, held)}
    assert done.check["sqnr_db_refit"] > done.check["sqnr_db_unrefit"] + 20
    # the result describes the refit of the copy: its nodes are not the model's
    assert done.result.layers == 1 and len(done.result.written) == 1 and done.result.written[0] is not node
    assert done.result.layer_reports[0]["layer"] == "layer" and "unrefit" in done.result.layer_reports[0]


def test_the_check_holds_out_every_fourth_feed_by_default():
    w0, b0 = RNG.standard_normal((5, 3)), RNG.standard_normal(3)
    reference, model = gemm(w0, b0), gemm(np.zeros((5, 3)), b0)
    before = io.copy_model(model)
    data = feeds(8)
    done = reconstruct.refit_checked(reference, model, [node_named(model, "y")], data, ridge=1e-9)
    assert done.accepted and done.check["feeds"] == 2
    assert done.check["sqnr_db_unrefit"] == reconstruct.output_sqnr_db(reference, before, [data[3], data[7]])


def test_a_refit_that_lowers_the_output_sqnr_is_discarded_and_the_model_is_left_as_it_was():
    # The first layer is off by a factor 2 that the second compensates: the network is nearly exact.
    # Refitting the first layer alone to the reference's h halves the output: the check must refuse it.
    w1, w2 = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 3))
    reference = chain(w1, w2)
    w2_model = w2 / 2 + 1e-3 * RNG.standard_normal((4, 3))
    model = chain(2 * w1, w2_model)
    before = weights(model)
    data = feeds(4)
    done = reconstruct.refit_checked(reference, model, [node_named(model, "h")], data, ridge=1e-9, validate_every=2)
    assert done.accepted is False and done.written == []
    assert done.result.layers == 1 and len(done.result.written) == 1  # the layer itself improved
    after = weights(model)
    assert list(after) == list(before) and all(np.array_equal(after[k], before[k]) for k in before)
    held = [data[1], data[3]]
    assert done.check["feeds"] == 2 and done.check["sqnr_db_unrefit"] == reconstruct.output_sqnr_db(reference, model, held)
    refit = chain(w1, w2_model)  # what the refit computes: the exact first layer, the unchanged second
    assert done.check["sqnr_db_refit"] == pytest.approx(reconstruct.output_sqnr_db(reference, refit, held), abs=0.05)
    assert done.check["sqnr_db_refit"] < 7 < 30 < done.check["sqnr_db_unrefit"]


def test_a_refit_that_leaves_the_output_sqnr_equal_is_kept():
    # h is refit but no output reads it: the output SQNR is the same number with and without the refit
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    w0 = RNG.standard_normal((5, 3))
    reference = model_of(nodes, {"w": w0, "b": np.zeros(3), "s": np.ones(1)})
    model = model_of(nodes, {"w": np.zeros((5, 3)), "b": np.ones(3), "s": np.full(1, 1.1)})
    node = node_named(model, "h")
    done = reconstruct.refit_checked(reference, model, [node], feeds(4), ridge=1e-9, validate_every=2)
    assert done.check["sqnr_db_refit"] == done.check["sqnr_db_unrefit"] == pytest.approx(20.0, abs=1e-3)
    assert done.accepted is True and done.written == [node]
    np.testing.assert_allclose(reconstruct.flat_weight(node).T, w0, atol=1e-4)


@pytest.mark.parametrize(("count", "validate_every"), [(4, 0), (4, 1), (3, 4)])
def test_without_held_out_feeds_the_refit_is_written_without_check(count, validate_every):
    w0, b0 = RNG.standard_normal((5, 3)), RNG.standard_normal(3)
    reference, model = gemm(w0, b0), gemm(np.zeros((5, 3)), np.zeros(3))
    node = node_named(model, "y")
    done = reconstruct.refit_checked(reference, model, [node], feeds(count), ridge=0.125, validate_every=validate_every)
    assert done.accepted is True and done.check is None
    assert done.written == [node] and done.result.written == [node]  # refit in place, no copy
    # nothing held out per layer either: the given ridge, no held-out errors in the report
    assert done.result.layer_reports == [{"layer": "layer", "rows": 6 * count, "features": 6, "ridge": 0.125}]
    assert reconstruct.flat_weight(node).T.std() > 0.1  # written (a ridge this large only shrinks it)


def test_a_refit_that_writes_nothing_is_not_accepted():
    w0, b0 = RNG.standard_normal((5, 3)), RNG.standard_normal(3)
    reference, model = gemm(w0, b0), gemm(np.ones((5, 3)), np.ones(3))
    before = weights(model)
    for validate_every in (0, 2):  # fewer rows than features: the layer is skipped
        done = reconstruct.refit_checked(reference, model, [node_named(model, "y")], feeds(4, rows=1), ridge=1e-9,
                                         validate_every=validate_every)
        assert done.accepted is False and done.written == [] and done.check is None
        assert done.result.skipped == 1 and done.result.layers == 0
        assert all(np.array_equal(weights(model)[k], before[k]) for k in before)


def test_kept_outputs_refer_to_the_model_nodes_and_a_layer_without_bias_stays_without():
    # h keeps the reference's channels 3 and 1; the next layer reads those two
    w1, w2 = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 3))
    reference = chain(w1, w2)
    model = chain(RNG.standard_normal((5, 2)), w2[[3, 1]])
    h, y = node_named(model, "h"), node_named(model, "y")
    done = reconstruct.refit_checked(reference, model, [h], feeds(4), ridge=1e-9, validate_every=2,
                                     kept_outputs={h: np.array([3, 1]), y: np.array([0])})  # y is not refit: ignored
    assert done.accepted and done.written == [h]
    np.testing.assert_allclose(reconstruct.flat_weight(h).T, w1[:, [3, 1]], atol=1e-4)
    assert len(h.inputs) == 2  # a MatMul gets no bias
    x = feeds(1)[0]
    np.testing.assert_allclose(runtime.run(model, x)["y"], x["x"] @ w1[:, [3, 1]] @ w2[[3, 1]], rtol=1e-4, atol=1e-4)


def matmul_model(features: int = 5) -> ir.Model:
    return model_of([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": np.ones((features, 2))}, features=features)


def distinct_feeds(count: int, rows: int) -> list[dict[str, np.ndarray]]:
    """Row ``r`` of feed ``f`` is ``(f, r, ...)``: every row says where it came from."""
    return [{"x": np.stack([np.full(rows, f), np.arange(rows), *RNG.standard_normal((3, rows))], axis=1).astype(np.float32)}
            for f in range(count)]


def origins(sample: np.ndarray) -> list[tuple[int, int]]:
    return [(int(f), int(r)) for f, r in sample[:, :2]]


def test_sampled_rows_are_distinct_rows_spread_over_each_feed():
    model = matmul_model()
    node = node_named(model, "y")
    data = distinct_feeds(3, rows=30)
    sample = reconstruct.sample_input_rows(model, [node], data, rows=60)[node]
    assert sample.shape == (60, 5) and sample.dtype == np.float32
    where = origins(sample)
    assert [f for f, _ in where] == [0] * 20 + [1] * 20 + [2] * 20  # ceil(60 / 3) from each, in feed order
    assert len(set(where)) == 60 and all(0 <= r < 30 for _, r in where)
    for (f, r), row in zip(where, sample):
        np.testing.assert_array_equal(row, data[f]["x"][r])


def test_sampling_is_deterministic_for_a_seed_and_the_seed_defaults_to_zero():
    model = matmul_model()
    node = node_named(model, "y")
    data = distinct_feeds(2, rows=40)
    first = reconstruct.sample_input_rows(model, [node], data, rows=20)[node]
    np.testing.assert_array_equal(first, reconstruct.sample_input_rows(model, [node], data, rows=20)[node])
    np.testing.assert_array_equal(first, reconstruct.sample_input_rows(model, [node], data, rows=20, seed=0)[node])
    assert origins(first) != origins(reconstruct.sample_input_rows(model, [node], data, rows=20, seed=1)[node])


def test_feeds_no_larger_than_their_share_give_all_their_rows_in_order():
    model = matmul_model()
    node = node_named(model, "y")
    data = distinct_feeds(3, rows=4)  # share: ceil(12 / 3) = 4, exactly each feed's rows
    assert origins(reconstruct.sample_input_rows(model, [node], data, rows=12)[node]) == [(f, r) for f in range(3) for r in range(4)]
    small = distinct_feeds(3, rows=3)  # fewer rows than the share: all of them
    assert origins(reconstruct.sample_input_rows(model, [node], small, rows=12)[node]) == [(f, r) for f in range(3) for r in range(3)]


def test_a_small_sample_still_takes_one_row_from_each_feed_in_turn():
    model = matmul_model()
    node = node_named(model, "y")
    sample = reconstruct.sample_input_rows(model, [node], distinct_feeds(3, rows=10), rows=2)[node]
    assert [f for f, _ in origins(sample)] == [0, 1]
    one = reconstruct.sample_input_rows(model, [node], distinct_feeds(1, rows=30), rows=12)[node]
    assert one.shape == (12, 5) and len(set(origins(one))) == 12


def test_the_sample_is_bounded_by_the_default_of_1024_rows():
    model = matmul_model()
    node = node_named(model, "y")
    sample = reconstruct.sample_input_rows(model, [node], distinct_feeds(2, rows=700))[node]
    assert sample.shape == (1024, 5) and [f for f, _ in origins(sample)] == [0] * 512 + [1] * 512
    assert reconstruct.sample_input_rows(model, [node], []) == {}
