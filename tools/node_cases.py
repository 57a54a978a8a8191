"""Record which of the onnx package's backend node test cases ONNX Runtime itself passes.

The fold pipeline is then required to keep every one of them passing (tests/test_node_suite.py).
Since onnx 1.23 the node cases are built in memory by ``collect_testcases()``; a case passes when ORT
loads it, runs every data set, and matches the expected outputs within rtol 1e-3, atol 1e-7.

Usage: python tools/node_cases.py  (rewrites tests/data/node_cases_ort_passes.txt)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.backend.test.case.node import collect_testcases

RTOL, ATOL = 1e-3, 1e-7
LIST_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "node_cases_ort_passes.txt"


def cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return collect_testcases()


def as_feed(value):
    """Data sets hold numpy arrays, numpy scalars, TensorProtos or lists (sequences)."""
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    if isinstance(value, list):
        return [as_feed(v) for v in value]
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


def outputs_match(expected, actual) -> bool:
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual):
        want, got = as_feed(want), got
        if isinstance(want, list) or isinstance(got, list):
            if not (isinstance(want, list) and isinstance(got, list) and outputs_match(want, got)):
                return False
            continue
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            return False
        if want.dtype.kind in "fc":
            if not np.allclose(want, got, rtol=RTOL, atol=ATOL, equal_nan=True):
                return False
        elif want.dtype == object or not np.array_equal(want, got):
            return False
    return True


def run_case(model: onnx.ModelProto, data_sets) -> bool:
    """True when ORT loads the model and reproduces every data set."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        for inputs, expected in data_sets:
            feeds = {name: as_feed(value) for name, value in zip(names, inputs)}
            if not outputs_match(expected, session.run(None, feeds)):
                return False
    except Exception:
        return False
    return True


def main() -> int:
    all_cases = cases()
    passing = sorted(case.name for case in all_cases if run_case(case.model, case.data_sets))
    LIST_PATH.parent.mkdir(parents=True, exist_ok=True)
    LIST_PATH.write_text("\n".join(passing) + "\n")
    sys.stdout.write(f"ONNX Runtime {ort.__version__} passes {len(passing)} of {len(all_cases)} cases; wrote {LIST_PATH}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
