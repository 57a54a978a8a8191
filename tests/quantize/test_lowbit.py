"""Binary and TWN-ternary weights (experimental modes of quantize-weights): standard ONNX, fidelity reported."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir.errors import UsageError
from passes.base import create
from passes.quantize import lowbit
from tests.quantize.helpers import ort_outputs, run_pipeline, sqnr
from tests.quantize.test_quantize_weights import correlated_feeds, matmul_model


def test_binary_and_ternary_levels_and_least_squares_scales():
    w = np.array([[0.9, -0.1, 0.05, -1.1], [0.0, 0.0, 0.0, 0.0]])
    b, alpha = lowbit.binary(w)
    assert b.tolist() == [[1, -1, 1, -1], [1, 1, 1, 1]] and alpha[:, 0].tolist() == pytest.approx([0.5375, 1.0])
    t, alpha = lowbit.ternary(w)  # delta = 0.7 * 0.5375 = 0.376: the two small entries become 0
    assert t.tolist() == [[1, 0, 0, -1], [0, 0, 0, 0]] and alpha[:, 0].tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("options, dtype_bits", [("bits=1", 1), ("bits=2,twn=true", 2)])
def test_low_bit_modes_are_standard_onnx_and_report_their_error(options, dtype_bits):
    feeds = correlated_feeds()
    result = run_pipeline(matmul_model(), f"quantize-weights{{{options}}}", feeds)
    (record,) = result.records
    proto = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(proto, full_check=True)
    (dq,) = [n for n in result.model.graph if n.op_type == "DequantizeLinear"]
    levels = dq.inputs[0].const_value.numpy()
    assert set(np.unique(levels)) <= ({-1, 1} if dtype_bits == 1 else {-1, 0, 1})
    assert dq.inputs[1].const_value.shape == (1, 96)  # one scale per output channel
    assert record.stats["packed bytes at 1 or 2 bits"] == 128 * 96 * dtype_bits // 8 + 96 * 4
    assert any(note.startswith("error on") and "sqnr_db" in note for note in record.notes)
    ort_outputs(result.model, feeds[0])  # ONNX Runtime runs it


def test_fidelity_orders_binary_below_ternary_below_int4():
    feeds = correlated_feeds()
    test_feed = correlated_feeds(6)[5]
    reference = ort_outputs(matmul_model(), test_feed)[0]
    measured = {}
    for options in ("bits=1", "bits=2,twn=true", "bits=4,rounding=nearest"):
        model = run_pipeline(matmul_model(), f"quantize-weights{{{options}}}", feeds).model
        measured[options] = sqnr(reference, ort_outputs(model, test_feed)[0])
    # measured: binary 4.3 dB, TWN 6.9 dB, int4 block-wise 19.9 dB (block-wise int2 rounded to nearest: 3.5 dB)
    assert measured["bits=1"] < measured["bits=2,twn=true"] < measured["bits=4,rounding=nearest"]
    assert measured["bits=1"] > 3


def test_twn_needs_two_bits():
    with pytest.raises(UsageError, match="'twn' needs bits=2"):
        create("quantize-weights", {"bits": "4", "twn": "true"})
