"""``reconstruct.refit_layers`` (the sequential driver), ``independent_chunks`` and ``sample_input_rows``
on small models whose answer is known by construction: a layer refit to a linear reference recovers the
reference's weights (checked against numpy's least squares), held-out feeds reject a refit that does
worse there than the weights it had, and rows are counted, sampled and reported as documented."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from passes import reconstruct

RNG = np.random.default_rng(3)


def initializer(name: str, array: np.ndarray) -> str:
    array = np.asarray(array, dtype=np.float32)
    return f"float[{','.join(map(str, array.shape))}] {name} = {{{','.join(repr(float(v)) for v in array.ravel())}}}"


def gemm_model(w, b, *, op="Gemm", trans_b=False, alpha=1.0, beta=1.0, absolute=False, second=None, parallel=None) -> ir.Model:
    """``y = x @ w (+ b)`` over ``x: [N, features]`` as one Gemm (or MatMul); ``absolute``: of ``|x|``;
    ``second``: ``h = x @ w``, ``y = Relu(h) @ second``; ``parallel``: an extra output ``p = x @ parallel``."""
    inits = [initializer("w", w.T if trans_b else w)]
    args = "x1, w"
    if b is not None:
        inits.append(initializer("b", b))
        args += ", b"
    first = "h" if second is not None else "y"
    attributes = f"<transB = {int(trans_b)}, alpha = {alpha}, beta = {beta}>" if op == "Gemm" else ""
    body = ["x1 = Abs (x)" if absolute else "x1 = Identity (x)", f"{first} = {op} {attributes} ({args})"]
    outputs = [f"float[N,{(second if second is not None else w).shape[1]}] y"]
    if second is not None:
        inits.append(initializer("w2", second))
        body += ["r = Relu (h)", "y = Gemm (r, w2)"]
    if parallel is not None:
        inits.append(initializer("wp", parallel))
        body.append("p = Gemm (x, wp)")
        outputs.append(f"float[N,{parallel.shape[1]}] p")
    text = (f'<ir_version: 8, opset_import: ["" : 17]>\ng (float[N,{w.shape[0]}] x) => ({", ".join(outputs)}) '
            f'<{", ".join(inits)}> {{\n' + "\n".join(body) + "\n}")
    return ir.from_onnx_text(text)


def feeds(count: int, rows: int = 6, features: int = 5, sign: float | None = None) -> list[dict[str, np.ndarray]]:
    out = []
    for _ in range(count):
        x = RNG.standard_normal((rows, features)).astype(np.float32)
        out.append({"x": np.abs(x) * sign if sign is not None else x})
    return out


def node_named(model: ir.Model, output: str) -> ir.Node:
    return next(node for node in model.graph if node.outputs[0].name == output)


def layer_weight(node: ir.Node) -> np.ndarray:
    """The node's weight as ``[features, outputs]`` with alpha applied (Gemm), like ``x @ W``."""
    return reconstruct.flat_weight(node).T


def test_a_gemm_refit_to_a_linear_reference_recovers_its_weight_and_bias():
    w0, b0 = RNG.standard_normal((5, 3)), RNG.standard_normal(3)
    reference = gemm_model(w0, b0)
    model = gemm_model(w0 + 0.3 * RNG.standard_normal((5, 3)), b0 - 1.0, alpha=2.0, beta=0.5)
    data = feeds(3)
    result = reconstruct.refit_layers(reference, model, list(model.graph), data, ridge=1e-9, validate_every=0)
    node = node_named(model, "y")
    x = np.concatenate([f["x"] for f in data]).astype(np.float64)
    y = x @ w0 + b0
    expected, *_ = np.linalg.lstsq(np.concatenate([x, np.ones((18, 1))], axis=1), y, rcond=None)
    np.testing.assert_allclose(layer_weight(node), expected[:5], atol=1e-4)
    np.testing.assert_allclose(reconstruct.bias_of(node, 3), expected[5], atol=1e-4)
    assert (result.layers, result.rows, result.skipped, result.rejected) == (1, 18, 0, 0)
    assert result.written == [node]
    assert result.layer_reports == [{"layer": "y", "rows": 18, "features": 6, "ridge": 1e-9}]


def test_matmul_and_transposed_gemm_are_refit_in_their_own_layout():
    w0 = RNG.standard_normal((5, 3))
    for kwargs in ({"op": "MatMul"}, {"trans_b": True}):
        reference, model = gemm_model(w0, None, **kwargs), gemm_model(np.zeros((5, 3)), None, **kwargs)
        result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(2), ridge=1e-9, validate_every=0)
        assert result.layers == 1
        np.testing.assert_allclose(layer_weight(node_named(model, "y")), w0, atol=1e-4)


def test_fewer_rows_than_features_leave_the_layer_as_it_was():
    w1 = RNG.standard_normal((5, 3))
    reference, model = gemm_model(RNG.standard_normal((5, 3)), None), gemm_model(w1, None)
    # five weights and the bias column (a Gemm always gets one): six features
    result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(1, rows=5), validate_every=0)
    assert (result.layers, result.skipped, result.written) == (0, 1, [])
    assert result.layer_reports == [{"layer": "y", "rows": 5, "features": 6}]
    np.testing.assert_array_equal(layer_weight(node_named(model, "y")), w1.astype(np.float32))
    # six rows suffice for six features
    result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(1, rows=6), validate_every=0)
    assert (result.layers, result.skipped) == (1, 0)


def test_kept_outputs_refit_against_the_reference_channels_the_layer_still_has():
    w0 = RNG.standard_normal((5, 4))
    reference, model = gemm_model(w0, None), gemm_model(np.zeros((5, 2)), None)
    node = node_named(model, "y")
    result = reconstruct.refit_layers(reference, model, [node], feeds(2), ridge=1e-9, validate_every=0,
                                      kept_outputs={node: np.array([3, 1])})
    assert result.layers == 1
    np.testing.assert_allclose(layer_weight(node), w0[:, [3, 1]], atol=1e-4)


def test_a_refit_that_does_worse_on_the_held_out_feeds_is_rejected():
    # The reference reads |x|: on negative feeds the best linear fit is -W, on positive ones W.
    # Every second feed is held out (validate_every=2): fitting the negative ones and holding out the
    # positive ones, the unrefit weight W is exact there and the refit is not. (``unrefit`` is not
    # zero: the error comes from float32 normal equations, ``w'X'Xw - 2w'X'Y + Y'Y``, which cancel.)
    w0 = RNG.standard_normal((5, 3))
    reference, model = gemm_model(w0, None, absolute=True), gemm_model(w0, None)
    data = [f for pair in zip(feeds(2, sign=-1.0), feeds(2, sign=1.0)) for f in pair]
    result = reconstruct.refit_layers(reference, model, list(model.graph), data, validate_every=2)
    assert (result.layers, result.rejected, result.written, result.rows) == (0, 1, [], 0)
    report = result.layer_reports[0]
    assert report["ridge"] is None and report["unrefit"] < 1e-2 and report["best"] > 1.0
    np.testing.assert_array_equal(layer_weight(node_named(model, "y")), w0.astype(np.float32))


def test_the_ridge_is_chosen_on_held_out_feeds_and_the_final_fit_uses_every_feed():
    w0 = RNG.standard_normal((5, 3))
    reference, model = gemm_model(w0, None), gemm_model(w0 + RNG.standard_normal((5, 3)), None)
    result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(4), ridge=0.0, validate_every=2)
    report = result.layer_reports[0]
    # exact linear data: no ridge at all is the best held-out fit (and the first candidate at ridge 0)
    assert report["ridge"] == 0.0 and report["best"] == report["refit"] and report["best"] < 1e-3 < 0.1 < report["unrefit"]
    assert (result.layers, result.rows, result.written) == (1, 24, [node_named(model, "y")])
    np.testing.assert_allclose(layer_weight(node_named(model, "y")), w0, atol=1e-4)
    # with a positive ridge the candidates are its multiples
    model = gemm_model(w0 + RNG.standard_normal((5, 3)), None)
    result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(4), ridge=1e-6, validate_every=2)
    assert result.layer_reports[0]["ridge"] in [1e-6 * step for step in reconstruct.RIDGE_STEPS]
    # fewer feeds than validate_every: nothing held out, the given ridge is used
    model = gemm_model(w0 + RNG.standard_normal((5, 3)), None)
    result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(3), ridge=1e-6, validate_every=4)
    assert result.layer_reports[0] == {"layer": "y", "rows": 18, "features": 6, "ridge": 1e-6}


def test_a_large_ridge_shrinks_the_weights_but_leaves_the_bias_free():
    # the bias column is (nearly) unregularized: whatever the weights, the refit bias centers the residual
    w0, b0 = RNG.standard_normal((5, 3)), 10 + RNG.standard_normal(3)
    reference, model = gemm_model(w0, b0), gemm_model(np.zeros((5, 3)), np.zeros(3))
    data = feeds(4)
    result = reconstruct.refit_layers(reference, model, list(model.graph), data, ridge=1.0, validate_every=0)
    node = node_named(model, "y")
    weight, bias = layer_weight(node), reconstruct.bias_of(node, 3)
    x = np.concatenate([f["x"] for f in data]).astype(np.float64)
    np.testing.assert_allclose(bias, np.mean(x @ w0 + b0 - x @ weight, axis=0), atol=1e-3)
    assert np.linalg.norm(weight) < 0.8 * np.linalg.norm(w0)  # pulled towards the prior (zero)
    assert result.layer_reports[0]["ridge"] == 1.0
    # the default ridge (relative) is 1e-4
    model = gemm_model(np.zeros((5, 3)), np.zeros(3))
    assert reconstruct.refit_layers(reference, model, list(model.graph), data, validate_every=0).layer_reports[0]["ridge"] == 1e-4


def test_large_feeds_are_sampled_to_max_rows_per_batch():
    w0 = RNG.standard_normal((5, 3))
    reference, model = gemm_model(w0, None), gemm_model(np.zeros((5, 3)), None)
    rows = reconstruct.MAX_ROWS_PER_BATCH + 100
    result = reconstruct.refit_layers(reference, model, list(model.graph), feeds(1, rows=rows), ridge=1e-9, validate_every=0)
    assert result.rows == reconstruct.MAX_ROWS_PER_BATCH and result.layer_reports[0]["rows"] == reconstruct.MAX_ROWS_PER_BATCH
    np.testing.assert_allclose(layer_weight(node_named(model, "y")), w0, atol=1e-4)


def test_chained_layers_are_refit_in_graph_order_each_on_the_refit_inputs():
    w1, w2 = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 3))
    reference = gemm_model(w1, None, second=w2)
    model = gemm_model(np.zeros((5, 4)), None, second=np.zeros((4, 3)))
    # given in reverse order, with a layer that cannot be refit (Relu): sorted and filtered
    nodes = list(reversed(list(model.graph)))
    result = reconstruct.refit_layers(reference, model, nodes, feeds(3), ridge=1e-9, validate_every=0)
    assert result.layers == 2 and [n.outputs[0].name for n in result.written] == ["h", "y"]
    assert [r["layer"] for r in result.layer_reports] == ["h", "y"]
    # the second layer saw the first one's refit output: the whole model now matches the reference
    np.testing.assert_allclose(layer_weight(node_named(model, "h")), w1, atol=1e-4)
    np.testing.assert_allclose(layer_weight(node_named(model, "y")), w2, atol=1e-3)


def test_independent_chunks_split_at_dependencies_and_at_the_size():
    model = gemm_model(np.ones((5, 4)), None, second=np.ones((4, 3)), parallel=np.ones((5, 2)))
    h, p, y = (node_named(model, name) for name in ("h", "p", "y"))
    assert reconstruct.independent_chunks([h, p, y], 8) == [[h, p], [y]]
    assert reconstruct.independent_chunks([h, p, y], 1) == [[h], [p], [y]]
    assert reconstruct.independent_chunks([p, h], 8) == [[p, h]]
    assert reconstruct.independent_chunks([], 8) == []
    # y depends on h through a Relu: the walk goes past nodes outside the set
    relu = node_named(model, "r")
    assert reconstruct._depends_on(y, {h}) and not reconstruct._depends_on(y, {p}) and reconstruct._depends_on(y, {relu})
    assert not reconstruct._depends_on(h, {y, p})


def test_sample_input_rows_draws_evenly_from_the_feeds():
    model = gemm_model(np.ones((5, 4)), None, second=np.ones((4, 3)))
    data = feeds(3, rows=10)
    samples = reconstruct.sample_input_rows(model, list(model.graph), data, rows=12)
    h, y = node_named(model, "h"), node_named(model, "y")
    assert set(samples) == {h, y}
    first = samples[h]
    assert first.shape == (12, 5) and first.dtype == np.float32
    # ceil(12 / 3) = 4 rows from each feed, in feed order, each a row of that feed
    for index, feed in enumerate(data):
        block = first[4 * index: 4 * index + 4]
        assert all(any(np.array_equal(row, candidate) for candidate in feed["x"]) for row in block)
        assert len({row.tobytes() for row in block}) == 4
    relu = np.maximum(np.concatenate([f["x"] for f in data]) @ np.ones((5, 4)), 0)
    assert samples[y].shape == (12, 4)
    assert all(any(np.allclose(row, candidate) for candidate in relu) for row in samples[y])
    # fewer rows than asked: all of them
    assert reconstruct.sample_input_rows(model, [h], data, rows=100)[h].shape == (30, 5)
    assert reconstruct.sample_input_rows(model, [node_named(model, "r")], data) == {}
