"""Real trained models: fold keeps their outputs, and TVM can import and compile them afterwards.

The PP-OCRv4 models come from the rapidocr-onnxruntime wheel (real-models extra); the light_*
architectures ship inside the onnx package. Compiling every model takes minutes, so the default
suite compiles a representative few and imports the rest; ``-m slow`` compiles all of them.
"""

from __future__ import annotations

import numpy as np
import pytest

from ir import fidelity, io, runtime, shapes
from ir.errors import BackendError
from models import zoo
from passes.manager import PassManager

OCR_TASKS = {"ppocr-det": "det", "ppocr-rec": "rec", "ppocr-cls": "cls"}
COMPILED_BY_DEFAULT = {"ppocr-cls", "ppocr-rec", "light_squeezenet", "light_shufflenet"}


def _needs(name):
    marks = []
    if name.startswith("ppocr"):
        marks.append(pytest.mark.real_models)
        if not zoo.available(name):
            marks.append(pytest.mark.skip(reason=zoo.REAL_MODELS_HINT))
    return marks


def _params(names, slow=()):
    return [pytest.param(n, marks=[*_needs(n), *([pytest.mark.slow] if n in slow else [])]) for n in names]


def _load(name):
    model = io.load(zoo.model_path(name))
    fixed = zoo.default_input_shapes(name)
    shapes.fix_input_shapes(model, fixed)
    return model, fixed


_FOLDED: dict = {}


def _folded(name):
    if name not in _FOLDED:
        model, fixed = _load(name)
        if name in OCR_TASKS:  # rendered text images: real inputs, not noise
            from models.ocr_data import calibration_arrays

            feeds = calibration_arrays(OCR_TASKS[name], 2, seed=0)
        else:
            feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
        reference = [runtime.run(model, f) for f in feeds]
        result = PassManager("fold", verify="end", feeds=feeds).run(model)
        _FOLDED[name] = (model, result, fixed, feeds, reference)
    return _FOLDED[name]


@pytest.mark.parametrize("name", _params(zoo.REAL_MODELS))
def test_fold_matches_onnx_runtime_within_1e4(name):
    original_nodes = len(_load(name)[0].graph)
    _, result, _, feeds, reference = _folded(name)
    assert not result.failures, [f.failure for f in result.failures]
    assert len(result.model.graph) < original_nodes
    for feed, expected in zip(feeds, reference):
        error = fidelity.compare(expected, runtime.run(result.model, feed))
        assert error["max_rel"] <= 1e-4, error


@pytest.mark.tvm
@pytest.mark.parametrize("name", _params(zoo.REAL_MODELS))
def test_tvm_imports_the_folded_model(name):
    tvm_build = pytest.importorskip("backends.tvm_build")
    tvm = tvm_build.import_tvm()
    _, result, fixed, _, _ = _folded(name)
    module = tvm_build.import_onnx(tvm, result.model, {k: tuple(v) for k, v in fixed.items()})
    assert "main" in [gv.name_hint for gv in module.get_global_vars()]


@pytest.mark.tvm
@pytest.mark.real_models
@pytest.mark.skipif(not zoo.available("ppocr-cls"), reason=zoo.REAL_MODELS_HINT)
def test_tvm_cannot_import_the_raw_direction_classifier():
    tvm_build = pytest.importorskip("backends.tvm_build")
    model, fixed = _load("ppocr-cls")
    with pytest.raises(BackendError, match="Reshape"):
        tvm_build.import_onnx(tvm_build.import_tvm(), model, {k: tuple(v) for k, v in fixed.items()})


@pytest.mark.tvm
@pytest.mark.parametrize("name", _params(zoo.REAL_MODELS, slow=set(zoo.REAL_MODELS) - COMPILED_BY_DEFAULT))
def test_tvm_compiles_the_folded_model_and_matches_onnx_runtime(name, tmp_path):
    pytest.importorskip("tvm")
    from backends import compile_model

    _, result, fixed, _, _ = _folded(name)
    build = compile_model(result.model, "llvm", tmp_path, input_shapes=fixed, name=name)
    assert build.library.exists() and build.size_bytes > 0
    assert build.check is not None and build.check.passed, build.check
    assert np.isfinite(build.check.max_rel_error)
