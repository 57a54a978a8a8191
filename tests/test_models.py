"""Specification of ``models/``: the built test subjects, the real-model zoo, and the OCR evaluation data.

Tests that need the PP-OCR models carry ``real_models`` and skip without ``rapidocr_onnxruntime``.
"""

from __future__ import annotations

import importlib.util
import math
import types

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from ir.errors import ModelLoadError, UsageError
from models import build as build_cli
from models import ocr_data, ocr_metrics, ocr_preprocess, ocr_render, zoo
from models.builders import BUILDERS, build, build_proto

# Rendering and resizing need Pillow, which comes with the real-models extra.
needs_pillow = pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="needs Pillow (real-models extra)")

# Small images keep the image models fast; VGG-16 at 32 has a 512-input classifier instead of 25088.
SMALL_SIZE = 64


def run_model(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def random_input(proto: onnx.ModelProto, batch: int = 1, seed: int = 1) -> np.ndarray:
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim][1:]
    return np.random.default_rng(seed).standard_normal([batch, *dims]).astype(np.float32)


def initializer_bytes(proto: onnx.ModelProto) -> dict[str, bytes]:
    return {t.name: t.raw_data for t in proto.graph.initializer}


# -- builders -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_is_valid_and_runs_with_declared_shape_and_sane_values(name):
    size = 32 if name == "vgg16" else SMALL_SIZE
    proto = build_proto(name, image_size=size)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    assert len(proto.graph.initializer) > 10, "weights are initializers"
    assert len({n.name for n in proto.graph.node}) == len(proto.graph.node), "ORT needs unique node names"

    y = run_model(proto, random_input(proto))
    declared = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert declared == ([1, 32, 128] if name == "transformer_encoder" else [1, 1000])
    assert list(y.shape) == declared
    assert np.isfinite(y).all()
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    assert 1e-2 < rms < 10, f"output RMS {rms} is outside a sane range"


def test_resnet50_at_default_size_keeps_activations_near_unit_scale():
    proto = build_proto("resnet50")
    watched = [n.output[0] for n in proto.graph.node if n.op_type == "BatchNormalization"]
    proto.graph.output.extend(onnx.ValueInfoProto(name=name) for name in watched)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": random_input(proto)})
    assert outputs[0].shape == (1, 1000)
    bn_rms = [float(np.sqrt(np.mean(np.square(o)))) for o in outputs[1:]]
    assert len(bn_rms) == 53
    assert max(bn_rms) < 3 and min(bn_rms) > 0.2, "BN running statistics match the activations"


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    first = initializer_bytes(build_proto("resnet18", image_size=32, seed=3))
    again = initializer_bytes(build_proto("resnet18", image_size=32, seed=3))
    other = initializer_bytes(build_proto("resnet18", image_size=32, seed=4))
    assert first == again
    assert first.keys() == other.keys()
    assert first["layer1.0.conv1.weight"] != other["layer1.0.conv1.weight"]


def test_weights_follow_torchvision_names_and_he_scale():
    proto = build_proto("resnet50", image_size=32)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    expected = {"conv1.weight", "bn1.running_var", "layer4.2.conv3.weight", "layer2.0.downsample.0.weight", "fc.weight"}
    assert expected <= weights.keys()
    conv = weights["layer3.1.conv2.weight"]  # 256 x 256 x 3 x 3
    assert conv.dtype == np.float32
    assert abs(conv.std() - math.sqrt(2 / (256 * 9))) < 0.05 * math.sqrt(2 / (256 * 9))
    assert not np.allclose(weights["bn1.running_var"], 1.0), "running statistics are measured, not placeholders"
    assert (weights["bn1.running_var"] > 0).all()


@pytest.mark.parametrize("name", ["resnet18", "transformer_encoder"])
def test_symbolic_batch_accepts_any_batch_size(name):
    model = build(name, batch="N", image_size=32)
    assert isinstance(model, ir.Model)
    assert str(model.graph.inputs[0].shape[0]) == "N"
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    x = random_input(proto, batch=3)
    y = run_model(proto, x)
    assert y.shape[0] == 3
    # Samples are independent: the second sample alone gives the same result.
    np.testing.assert_allclose(run_model(proto, x[1:2])[0], y[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet34"}, "unknown model"),
        ({"name": "resnet18", "image_size": 100}, "multiple of 32"),
        ({"name": "resnet18", "batch": 0}, "at least 1"),
        ({"name": "resnet18", "batch": "2 3"}, "identifier"),
    ],
)
def test_bad_builder_arguments_raise_usage_error(kwargs, message):
    with pytest.raises(UsageError, match=message):
        build(**kwargs)


def test_build_cli_writes_a_loadable_model(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert build_cli.main(["mobilenetv2", "-o", str(path), "--batch", "B", "--image-size", "32"]) == 0
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"
    assert {p.key: p.value for p in proto.metadata_props}["graphpress.builder"] == "mobilenetv2"
    assert build_cli.main(["resnet18", "-o", str(path), "--image-size", "50"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


# -- zoo ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.LIGHT_MODELS)
def test_light_models_are_always_available_with_their_declared_input(name):
    assert zoo.available(name)
    path = zoo.model_path(name)
    assert path.is_file() and path.suffix == ".onnx"
    shapes = zoo.default_input_shapes(name)
    assert list(shapes.values()) == [[1, 3, 224, 224]]


def test_unknown_zoo_name_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown real model"):
        zoo.model_path("ppocr-layout")


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(zoo.importlib.util, "find_spec", lambda name: None)
    assert not zoo.available("ppocr-rec")
    with pytest.raises(ModelLoadError, match=r"pip install graphpress\[real-models\]"):
        zoo.model_path("ppocr-det")


@pytest.mark.real_models
def test_ppocr_models_and_dictionary_match_the_recognizer_head():
    pytest.importorskip("rapidocr_onnxruntime")
    for name in ("ppocr-det", "ppocr-rec", "ppocr-cls"):
        assert zoo.model_path(name).is_file()
    dictionary = zoo.ppocr_rec_dictionary()
    rec = ort.InferenceSession(str(zoo.model_path("ppocr-rec")), providers=["CPUExecutionProvider"])
    assert rec.get_outputs()[0].shape[-1] == len(dictionary) == 6625
    assert dictionary[0] == "blank" and dictionary[-1] == " "
    assert set("abcXYZ0189" + ocr_render.PUNCTUATION) <= set(dictionary)
    assert zoo.default_input_shapes("ppocr-rec") == {"x": [1, 3, 48, 320]}


# -- metrics on hand-made cases -------------------------------------------------------------------
@pytest.mark.parametrize(
    "a, b, distance",
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0), ("flaw", "lawn", 2), ("ab", "ba", 2)],
)
def test_edit_distance(a, b, distance):
    assert ocr_metrics.edit_distance(a, b) == distance


def test_ctc_greedy_decode_collapses_repeats_and_drops_blanks():
    dictionary = ["blank", "a", "b", "c"]
    steps = [1, 1, 0, 1, 2, 2, 0, 3, 3]  # a a _ a b b _ c c  ->  "aabc"
    logits = np.full((len(steps), 4), -5.0, dtype=np.float32)
    logits[np.arange(len(steps)), steps] = 5.0
    assert ocr_metrics.ctc_greedy_decode(logits, dictionary) == "aabc"
    assert ocr_metrics.ctc_greedy_decode(np.zeros((5, 4)), dictionary) == "", "all-blank argmax decodes to nothing"


def test_text_scores_pool_edit_distance_and_ignore_outer_spaces():
    scores = ocr_metrics.text_scores([" abc ", "abd", "x"], ["abc", "abc", "xyz"])
    assert scores["char_accuracy"] == pytest.approx(1 - 3 / 9)
    assert scores["line_accuracy"] == pytest.approx(1 / 3)
    assert ocr_metrics.text_scores(["zzzzzzzz"], ["a"])["char_accuracy"] == 0.0


def test_iou_and_one_to_one_matching():
    a = (0.0, 0.0, 10.0, 10.0)
    assert ocr_metrics.iou(a, a) == 1.0
    assert ocr_metrics.iou(a, (20.0, 0.0, 30.0, 10.0)) == 0.0
    assert ocr_metrics.iou(a, (5.0, 0.0, 15.0, 10.0)) == pytest.approx(50 / 150)
    # Two predictions on one truth box: only one can match it.
    assert ocr_metrics.match_boxes([a, (0.0, 0.0, 10.0, 11.0)], [a]) == 1
    # IoU 1/3 is below the 0.5 threshold.
    assert ocr_metrics.match_boxes([(5.0, 0.0, 15.0, 10.0)], [a]) == 0
    scores = ocr_metrics.detection_scores([[a, (50.0, 50.0, 60.0, 60.0)]], [[a]])
    assert scores == pytest.approx({"precision": 0.5, "recall": 1.0, "f_score": 2 / 3})


def test_boxes_from_probability_follows_db_postprocessing():
    probability = np.zeros((100, 200), dtype=np.float32)
    probability[20:30, 10:110] = 0.9  # a text kernel
    probability[60:70, 150:190] = 0.4  # above the 0.3 threshold, but mean below box_thresh 0.5
    probability[80:82, 10:50] = 0.9  # too thin: short side under 3 pixels
    boxes = ocr_metrics.boxes_from_probability(probability, (200, 400))  # original is twice the map
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    kernel = (9, 19, 109, 29)  # dilated by the 2x2 kernel towards the origin, pixel centres
    grow = ocr_metrics.unclip(kernel)[2] - kernel[2]
    assert grow == pytest.approx(100 * 10 * 1.6 / (2 * 110))
    assert (x0, y0, x1, y1) == pytest.approx(((9 - grow) * 2, (19 - grow) * 2, (109 + grow) * 2, (29 + grow) * 2))


def test_classification_accuracy():
    scores = [np.array([0.9, 0.1]), np.array([0.2, 0.8]), np.array([0.6, 0.4])]
    assert ocr_metrics.classification_accuracy(scores, [0, 1, 1]) == {"accuracy": pytest.approx(2 / 3)}


# -- preprocessing --------------------------------------------------------------------------------
@needs_pillow
def test_text_line_input_keeps_aspect_pads_right_and_orders_bgr():
    red = np.zeros((24, 60, 3), dtype=np.uint8)
    red[..., 0] = 255
    x = ocr_preprocess.rec_input(red)
    assert x.shape == (1, 3, 48, 320) and x.dtype == np.float32
    width = 120  # 60 * 48 / 24
    assert np.allclose(x[0, 2, :, :width], 1.0) and np.allclose(x[0, 0, :, :width], -1.0), "BGR, (x/255-0.5)/0.5"
    assert np.all(x[0, :, :, width:] == 0.0), "zero padding on the right"
    assert ocr_preprocess.cls_input(np.zeros((10, 500, 3), np.uint8)).shape == (1, 3, 48, 192), "wide crops squeeze"


def test_det_resize_rule_matches_rapidocr_limit_type_min():
    assert ocr_preprocess.det_resized_size(640, 640) == (640, 640)
    assert ocr_preprocess.det_resized_size(500, 1000) == (640, 1280)
    assert ocr_preprocess.det_resized_size(700, 1000, limit_side_len=736) == (736, 1056)


@pytest.mark.real_models
def test_preprocessing_agrees_with_rapidocr_code():
    pytest.importorskip("rapidocr_onnxruntime")
    pytest.importorskip("cv2")
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess
    from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer

    for shape in [(640, 640), (500, 1000), (333, 1234)]:
        resized = DetPreProcess(640, "min").resize(np.zeros((*shape, 3), np.uint8))
        assert ocr_preprocess.det_resized_size(*shape) == resized.shape[:2]
    image = ocr_data.make_dataset("rec", 1, seed=5).images[0]
    bgr = np.ascontiguousarray(image[..., ::-1])
    theirs = TextRecognizer.resize_norm_img(types.SimpleNamespace(rec_image_shape=[3, 48, 320]), bgr, 320 / 48)
    ours = ocr_preprocess.rec_input(image)[0]
    assert ours.shape == theirs.shape
    assert np.array_equal(ours == 0, theirs == 0), "same resized width, same padding"
    assert np.abs(ours - theirs).mean() < 0.05, "Pillow and OpenCV bilinear resizes differ only slightly"


# -- evaluation data ------------------------------------------------------------------------------
@needs_pillow
@pytest.mark.parametrize("task, shape", [("rec", (1, 3, 48, 320)), ("cls", (1, 3, 48, 192)), ("det", (1, 3, 640, 640))])
def test_datasets_are_deterministic_prefix_stable_and_fixed_shape(task, shape):
    small = ocr_data.make_dataset(task, 2, seed=7)
    large = ocr_data.make_dataset(task, 3, seed=7)
    assert small.labels == large.labels[:2]
    for a, b in zip(small.inputs, large.inputs):
        np.testing.assert_array_equal(a, b)
    assert all(x.shape == shape and x.dtype == np.float32 for x in large.inputs)
    assert not np.array_equal(ocr_data.make_dataset(task, 1, seed=8).inputs[0], small.inputs[0])


@needs_pillow
def test_rec_lines_fit_the_input_and_cls_rotates_half():
    rec = ocr_data.make_dataset("rec", 10, seed=0)
    assert all(img.shape[1] <= img.shape[0] * 320 / 48 for img in rec.images)
    assert all(label and label == label.strip() for label in rec.labels)
    cls = ocr_data.make_dataset("cls", 10, seed=0)
    assert cls.labels == [0, 1] * 5
    assert all(img.shape[1] <= img.shape[0] * 192 / 48 for img in cls.images)


@needs_pillow
def test_det_pages_have_separate_boxes_that_cover_the_ink():
    dataset = ocr_data.make_dataset("det", 2, seed=0)
    for image, boxes in zip(dataset.images, dataset.labels):
        assert len(boxes) >= 2
        dark = image.mean(axis=2) < 128
        covered = np.zeros_like(dark)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 640
            covered[y0:y1, x0:x1] = True
        assert not (dark & ~covered).any(), "no ink outside the ground-truth boxes"
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert ocr_metrics.iou(a, b) == 0.0


@needs_pillow
def test_calibration_arrays_are_the_dataset_inputs():
    feeds = ocr_data.calibration_arrays("cls", 3, seed=2)
    assert [list(f) for f in feeds] == [["x"]] * 3
    np.testing.assert_array_equal(feeds[1]["x"], ocr_data.make_dataset("cls", 3, seed=2).inputs[1])


def test_missing_fonts_raise_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(ocr_render, "FONT_DIR", tmp_path)
    ocr_render._load_font.cache_clear()
    try:
        with pytest.raises(ModelLoadError, match="fonts-dejavu-core"):
            ocr_data.make_dataset("rec", 1)
    finally:
        ocr_render._load_font.cache_clear()


def test_evaluate_rejects_unknown_tasks_and_inputs():
    with pytest.raises(UsageError, match="unknown OCR task"):
        ocr_data.evaluate("layout", b"")
    with pytest.raises(UsageError, match="cannot evaluate"):
        ocr_data.evaluate("rec", 42)
    with pytest.raises(ModelLoadError, match="not found"):
        ocr_data.evaluate("rec", "/nonexistent/model.onnx")


# -- the original PP-OCR models score well on the rendered data ----------------------------------
@pytest.mark.real_models
def test_original_recognizer_reads_rendered_lines():
    pytest.importorskip("rapidocr_onnxruntime")
    scores = ocr_data.evaluate("rec", zoo.model_path("ppocr-rec"), n=20, seed=0)
    assert scores["n"] == 20
    assert scores["char_accuracy"] > 0.95
    assert scores["line_accuracy"] > 0.75


@pytest.mark.real_models
def test_original_detector_finds_rendered_lines():
    pytest.importorskip("rapidocr_onnxruntime")
    model = zoo.model_path("ppocr-det").read_bytes()
    scores = ocr_data.evaluate("det", model, n=8, seed=0)
    assert scores["f_score"] > 0.85
    assert scores["precision"] > 0.85 and scores["recall"] > 0.85


@pytest.mark.real_models
def test_original_classifier_tells_upright_from_rotated():
    pytest.importorskip("rapidocr_onnxruntime")
    model = ir.load(zoo.model_path("ppocr-cls"))
    scores = ocr_data.evaluate("cls", model, n=40, seed=0)
    assert scores["accuracy"] > 0.85


@pytest.mark.real_models
def test_a_broken_recognizer_scores_low():
    """The metric can fail: a recognizer whose output is replaced by a constant reads nothing."""
    pytest.importorskip("rapidocr_onnxruntime")
    proto = onnx.load(zoo.model_path("ppocr-rec"))
    output = proto.graph.output[0].name
    for node in proto.graph.node:
        if output in node.output:
            node.output[list(node.output).index(output)] = "unused_softmax"
    blank_first = np.zeros((1, 40, 6625), dtype=np.float32)
    blank_first[..., 0] = 1.0
    constant = onnx.helper.make_node("Constant", [], [output], value=onnx.numpy_helper.from_array(blank_first))
    proto.graph.node.append(constant)
    scores = ocr_data.evaluate("rec", proto, n=5, seed=0)
    assert scores["char_accuracy"] == 0.0 and scores["line_accuracy"] == 0.0
