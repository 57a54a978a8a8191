"""The defaults a user gets: ``prune{macs=F}`` ranks channels by reconstruction when calibration data are
given (data-aware), by l1 otherwise, and says so."""

from __future__ import annotations

import pytest

from ir import io, shapes
from models import zoo
from passes.base import create
from passes.calibration import Calibration
from passes.manager import PassContext
from tests.prune.test_prune import chain_model, correlated_feeds


def test_importance_defaults_to_reconstruction_with_calibration_data_and_to_l1_without():
    with_data = create("prune", {"macs": "0.3"})
    with_data.context = PassContext(calibration=Calibration.from_iterable(correlated_feeds(8, seed=1)))
    with_data(chain_model())
    assert {row["why"] for row in with_data.layers} == {"lowest reconstruction importance"}
    without = create("prune", {"macs": "0.3"})
    without(chain_model())
    assert {row["why"] for row in without.layers} == {"lowest l1 importance"}
    assert any("importance=auto without calibration data" in note for note in without.notes)


@pytest.mark.slow
@pytest.mark.real_models
@pytest.mark.skipif(not zoo.available("ppocr-rec"), reason=zoo.REAL_MODELS_HINT)
def test_the_default_beats_l1_on_an_ocr_recognizer_nobody_tuned_it_on():
    from models import ocr_data

    accuracy = {}
    for importance in ("auto", "l1"):
        model = io.load(zoo.model_path("ppocr-rec"))
        shapes.fix_input_shapes(model, zoo.default_input_shapes("ppocr-rec"))
        create("fold-constants", {})(model)
        pass_ = create("prune", {"macs": "0.3", "importance": importance, "calib": "32"})
        pass_.context = PassContext(calibration=Calibration.from_iterable(ocr_data.calibration_arrays("rec", 36, seed=1)))
        pass_(model)
        accuracy[importance] = ocr_data.evaluate("rec", model, n=50, seed=0)["char_accuracy"]
    assert accuracy["auto"] > accuracy["l1"], accuracy


@pytest.mark.slow
@pytest.mark.real_models
@pytest.mark.skipif(not zoo.available("ppocr-det"), reason=zoo.REAL_MODELS_HINT)
def test_the_default_keeps_an_ocr_detector_nobody_tuned_it_on():
    """activation importance (the earlier default) left PP-OCRv4 det's output at 0.0 dB SQNR at 30% fewer MACs."""
    from ir.fidelity import measure
    from models import ocr_data

    model = io.load(zoo.model_path("ppocr-det"))
    shapes.fix_input_shapes(model, zoo.default_input_shapes("ppocr-det"))
    create("fold-constants", {})(model)
    original = io.copy_model(model)
    feeds = ocr_data.calibration_arrays("det", 20, seed=1)
    pass_ = create("prune", {"macs": "0.3", "calib": "16"})
    pass_.context = PassContext(calibration=Calibration.from_iterable(feeds[:16]))
    pass_(model)
    assert measure(original, model, feeds[16:])["sqnr_db"] > 10  # measured: 15.4 dB (activation: 0.0 dB)
