"""Small models and calibration feeds for the low-rank passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from passes.base import create
from passes.calibration import Calibration
from passes.manager import PassContext

CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,16,16] x) => (float[1,16,8,8] y) {
    a = Conv <pads = [1,1,1,1]> (x, w1, b1)
    ra = Relu(a)
    b = Conv <pads = [1,1,1,1], strides = [2,2]> (ra, w2, b2)
    rb = Relu(b)
    c = Conv <pads = [0,2,0,2], dilations = [1,2]> (rb, w3, b3)
    rc = Relu(c)
    y = Conv (rc, w4, b4)
}
"""
CHAIN_SHAPES = {"w1": (32, 8, 3, 3), "w2": (32, 32, 3, 3), "w3": (32, 32, 1, 3), "w4": (16, 32, 1, 1)}


def planted_cp(shape, rank, rng) -> np.ndarray:
    """A kernel of CP rank ``rank`` (so CP at that rank is exact)."""
    n, c, kh, kw = shape
    factors = [rng.standard_normal((d, rank)) for d in (n, c, kh, kw)]
    return np.einsum("nr,cr,ir,jr->ncij", *factors) / np.sqrt(rank * c * kh * kw)


def chain_model(seed: int = 0, cp_rank: int | None = None) -> ir.Model:
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(CHAIN)
    for name, shape in CHAIN_SHAPES.items():
        fan_in = int(np.prod(shape[1:]))
        if cp_rank is not None and shape[2] > 1 and shape[3] > 1:
            weight = planted_cp(shape, cp_rank, rng) * np.sqrt(2.0)
        else:
            weight = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(weight.astype(np.float32), name))
        bias = (rng.standard_normal(shape[0]) * 0.1).astype(np.float32)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(bias, "b" + name[1:]))
    return ir.serde.deserialize_model(proto)


def correlated_feeds(n: int, seed: int, shape=(1, 8, 16, 16)) -> list[dict[str, np.ndarray]]:
    """Smooth, channel-correlated inputs (like images): what data-aware factorization exploits."""
    mix = np.random.default_rng(1234).standard_normal((shape[1], 3))  # one distribution, whatever the seed
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        coarse = rng.standard_normal((shape[0], 3, shape[2] // 4, shape[3] // 4))
        smooth = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
        x = np.einsum("cd,bdhw->bchw", mix, smooth) + 0.05 * rng.standard_normal(shape)
        feeds.append({"x": x.astype(np.float32)})
    return feeds


def run_pass(name: str, model: ir.Model, feeds=None, **options):
    pass_ = create(name, {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
    if feeds is not None:
        pass_.context = PassContext(calibration=Calibration.from_iterable(feeds))
    result = pass_(model)
    return pass_, result
