"""Evaluation data for the PP-OCR models with exact ground truth, and one entry point to score a model.

Rules:
- Tasks: ``rec`` (text lines -> text), ``det`` (640 x 640 pages -> line boxes), ``cls`` (line crops,
  the odd-numbered ones rotated by 180 degrees -> direction label 0 or 1, so half are rotated).
- Sample ``i`` of a task is drawn from ``numpy.random.default_rng([seed, task code, i])``: the data
  are the same on every machine, and ``make_dataset(task, 10, s)`` is a prefix of
  ``make_dataset(task, 20, s)``.
- Inputs are preprocessed as rapidocr does (``ocr_preprocess``) and have one shape per task, batch 1:
  rec ``[1, 3, 48, 320]``, cls ``[1, 3, 48, 192]``, det ``[1, 3, 640, 640]``. Rec lines are at most
  320/48 times as wide as high, cls crops at most 192/48, so neither is squeezed.
- ``evaluate`` accepts a model path, serialized bytes, an ``onnx.ModelProto``, an ``onnx_ir.Model`` or
  an ``onnxruntime.InferenceSession``; it feeds the session's first input and reads its first output,
  and returns the task's metrics (``ocr_metrics``) plus ``n``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ir.errors import ModelLoadError, UsageError
from models import ocr_metrics, ocr_preprocess, ocr_render, zoo

TASKS = ("rec", "det", "cls")
_TASK_CODES = {"rec": 1, "det": 2, "cls": 3}
DEFAULT_N = 100
PAGE_SIZE = 640
REC_MAX_ASPECT = ocr_preprocess.REC_SHAPE[2] / ocr_preprocess.REC_SHAPE[1]
CLS_MAX_ASPECT = ocr_preprocess.CLS_SHAPE[2] / ocr_preprocess.CLS_SHAPE[1]


@dataclasses.dataclass(frozen=True)
class OcrDataset:
    """Preprocessed inputs with their ground truth, and the rendered images they came from.

    ``labels``: rec, the text of each line; det, a list of ``(x0, y0, x1, y1)`` ink boxes per page
    (page pixels, x1/y1 exclusive); cls, 0 for upright and 1 for rotated by 180 degrees.
    """

    task: str
    seed: int
    inputs: list[np.ndarray]
    labels: list[Any]
    images: list[np.ndarray]


def make_dataset(task: str, n: int, seed: int = 0) -> OcrDataset:
    _check_task(task)
    if n < 1:
        raise UsageError(f"n must be at least 1, got {n}")
    samples = [_SAMPLERS[task](np.random.default_rng([seed, _TASK_CODES[task], i]), i) for i in range(n)]
    images, inputs, labels = (list(column) for column in zip(*samples))
    return OcrDataset(task, seed, inputs, labels, images)


def calibration_arrays(task: str, n: int, seed: int = 0, input_name: str = "x") -> list[dict[str, np.ndarray]]:
    """The same preprocessed inputs as ``make_dataset``, as feeds ``{input_name: [1, 3, H, W]}``."""
    return [{input_name: array} for array in make_dataset(task, n, seed).inputs]


def evaluate(task: str, session_or_model, *, n: int = DEFAULT_N, seed: int = 0) -> dict[str, float]:
    """Runs the model on ``make_dataset(task, n, seed)`` and returns the task's metrics and ``n``."""
    _check_task(task)
    session = as_session(session_or_model)
    dataset = make_dataset(task, n, seed)
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    outputs = [session.run([output_name], {input_name: array})[0] for array in dataset.inputs]
    if task == "rec":
        dictionary = zoo.ppocr_rec_dictionary()
        texts = [ocr_metrics.ctc_greedy_decode(out[0], dictionary) for out in outputs]
        scores = ocr_metrics.text_scores(texts, dataset.labels)
    elif task == "det":
        boxes = [
            ocr_metrics.boxes_from_probability(out[0, 0], image.shape[:2])
            for out, image in zip(outputs, dataset.images)
        ]
        scores = ocr_metrics.detection_scores(boxes, dataset.labels)
    else:
        scores = ocr_metrics.classification_accuracy([out[0] for out in outputs], dataset.labels)
    return {**scores, "n": float(n)}


def as_session(model) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for a path, bytes, ModelProto, onnx_ir.Model or session."""
    if isinstance(model, ort.InferenceSession):
        return model
    if isinstance(model, ir.Model):
        model = ir.serde.serialize_model(model).SerializeToString()
    elif isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    if isinstance(model, str) and not os.path.isfile(model):
        raise ModelLoadError(f"model file not found: {model}")
    if not isinstance(model, (str, bytes)):
        raise UsageError(
            f"cannot evaluate a {type(model).__name__}; pass a path, bytes, onnx_ir.Model or InferenceSession"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's exceptions share no useful base class
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"ONNX Runtime cannot load the model: {first_line}") from exc


# -- samples: (rendered image, preprocessed input, label) -----------------------------------------
def _rec_sample(rng: np.random.Generator, index: int):
    image, text = _line_within(rng, REC_MAX_ASPECT, max_words=3)
    return image, ocr_preprocess.rec_input(image), text


def _cls_sample(rng: np.random.Generator, index: int):
    image, _ = _line_within(rng, CLS_MAX_ASPECT, max_words=2)
    label = index % 2
    if label:
        image = ocr_render.rotate_180(image)
    return image, ocr_preprocess.cls_input(image), label


def _det_sample(rng: np.random.Generator, index: int):
    image, boxes, _ = ocr_render.render_page(rng, PAGE_SIZE)
    return image, ocr_preprocess.det_input(image), boxes


def _line_within(rng: np.random.Generator, max_aspect: float, max_words: int) -> tuple[np.ndarray, str]:
    """A rendered line no wider than ``max_aspect`` times its height; drops words until it fits."""
    words = ocr_render.random_text(rng, max_words).split(" ")
    while True:
        text = " ".join(words)
        image = ocr_render.render_line(rng, text)
        if image.shape[1] <= max_aspect * image.shape[0] or (len(words) == 1 and len(text) <= 2):
            return image, text
        if len(words) > 1:
            words.pop()
        else:
            words = [text[: max(2, len(text) - 2)]]


_SAMPLERS: dict[str, Callable] = {"rec": _rec_sample, "det": _det_sample, "cls": _cls_sample}


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UsageError(f"unknown OCR task '{task}'; choose one of: {', '.join(TASKS)}")
