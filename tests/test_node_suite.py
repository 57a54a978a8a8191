"""The onnx package's backend node cases as a peer corpus for the fold pipeline.

Specification: for every node case that ONNX Runtime itself passes (listed in
tests/data/node_cases_ort_passes.txt by tools/node_cases.py), the model after the ``fold`` pipeline
still loads in ONNX Runtime and reproduces every stored expected output (rtol 1e-3, atol 1e-7).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import onnx_ir as ir
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import node_cases  # noqa: E402

from passes.manager import PassManager  # noqa: E402

PASSING = node_cases.LIST_PATH.read_text().split()


@functools.cache
def cases_by_name():
    return {case.name: case for case in node_cases.cases()}


def test_the_list_of_cases_ort_passes_names_existing_cases_once():
    """The list is tools/node_cases.py's output for the installed onnx: no stale or repeated names."""
    assert PASSING and len(set(PASSING)) == len(PASSING)
    assert set(PASSING) <= set(cases_by_name())


@pytest.mark.parametrize("name", PASSING)
def test_fold_keeps_node_case_passing(name):
    case = cases_by_name()[name]
    model = ir.serde.deserialize_model(case.model)
    result = PassManager("fold", verify="off", strict=True).run(model)
    folded = ir.serde.serialize_model(result.model)
    assert node_cases.run_case(folded, case.data_sets), f"{name}: outputs changed after fold (ORT {ort.__version__})"
