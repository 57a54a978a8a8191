"""ir.fidelity: the one place that says how far one model's outputs are from another's."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import fidelity


def test_errors_are_relative_to_the_output_magnitude():
    error = fidelity.output_error(np.array([100.0, 0.001]), np.array([100.005, 0.0]))
    assert error.max_abs == pytest.approx(0.005) and error.magnitude == 100.0
    assert error.max_rel == pytest.approx(5e-5)


def test_nan_matches_nan_and_infinity_the_same_infinity_but_nothing_else():
    assert fidelity.output_error(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0])).max_abs == 0.0
    assert fidelity.output_error(np.array([np.nan, 1.0]), np.array([0.0, 1.0])).max_abs == math.inf
    assert fidelity.output_error(np.array([1.0, 2.0]), np.array([1.0, np.inf])).max_abs == math.inf


def test_integer_outputs_must_match_exactly_and_an_all_zero_output_is_judged_absolutely():
    assert fidelity.output_error(np.array([7, 3]), np.array([7, 3])).max_rel == 0.0
    assert fidelity.output_error(np.array([700, 3]), np.array([700, 4])).max_rel == math.inf
    zero = fidelity.output_error(np.zeros(3, np.float32), np.full(3, 1e-7, np.float32))
    assert zero.max_abs == pytest.approx(1e-7) and zero.max_rel == math.inf


def test_compare_names_what_cannot_be_compared():
    reference = {"y": np.zeros((2, 3)), "z": np.ones(2)}
    assert fidelity.compare(reference, {"y": np.zeros((3, 2)), "z": np.ones(2)})["shape_mismatch"] == "y"
    assert fidelity.compare(reference, {"y": np.zeros((2, 3))})["missing"] == "z"
    assert fidelity.compare(reference, {"y": np.zeros((2, 3)), "z": np.array([1.0, 1.5])}) == {"max_abs": 0.5, "max_rel": 0.5}


def test_sqnr_and_cosine():
    signal = np.array([3.0, 4.0])
    assert fidelity.sqnr_db(signal, signal + np.array([0.03, 0.04])) == pytest.approx(40.0)
    assert fidelity.sqnr_db(signal, signal) == math.inf
    assert fidelity.cosine(signal, -signal) == pytest.approx(-1.0)
    assert fidelity.cosine(np.zeros(2), np.zeros(2)) == 1.0 and fidelity.cosine(np.zeros(2), signal) == 0.0


def _scaled(factor: float) -> ir.Model:
    proto = onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4,3] x) => (float[4,3] y, float[4,3] z) {{
            s = Constant <value = float {{{factor}}}> ()
            y = Mul(x, s)
            z = Identity(x)
        }}
    """)
    return ir.serde.deserialize_model(proto)


def test_measure_on_held_back_feeds_reports_the_first_output_and_the_worst_of_all():
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((4, 3)).astype(np.float32)} for _ in range(3)]
    result = fidelity.measure(_scaled(1.0), _scaled(1.01), feeds)
    assert result["feeds"] == 3
    assert result["sqnr_db"] == pytest.approx(40.0, abs=0.01)  # the noise is 1% of the signal
    assert result["max_rel"] == pytest.approx(0.01, rel=1e-3) and result["cosine"] == pytest.approx(1.0)
    assert result["top1_agreement"] == 1.0  # scaling keeps every row's argmax
    assert result["worst_output_sqnr_db"] == result["sqnr_db"]  # z is identical: inf dB
    assert "feeds" not in fidelity.describe(result) and "sqnr_db 40" in fidelity.describe(result)
