"""Calibration data from files, folders, images and iterables, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ir.errors import UsageError
from passes.calibration import Calibration, ImagePreprocess


def test_npy_stack_for_a_batch_one_input_is_split_into_samples(tmp_path, tiny_model):
    np.save(tmp_path / "x.npy", np.ones((5, 3, 8, 8), np.float32))
    feeds = list(Calibration.from_path(tmp_path / "x.npy", tiny_model))
    assert len(feeds) == 5 and feeds[0]["x"].shape == (1, 3, 8, 8)


def test_npz_with_an_extra_sample_axis(tmp_path, tiny_model):
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 1, 3, 8, 8), np.float32))
    feeds = Calibration.from_path(tmp_path / "c.npz", tiny_model, limit=2).take(10)
    assert len(feeds) == 2 and feeds[1]["x"].shape == (1, 3, 8, 8)


def test_npz_with_wrong_names_is_refused(tmp_path, tiny_model):
    np.savez(tmp_path / "c.npz", image=np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(UsageError, match=r"do not match the model inputs \['x'\]"):
        list(Calibration.from_path(tmp_path / "c.npz", tiny_model))


def test_folder_of_images_is_preprocessed(tmp_path, tiny_model):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    spec = ImagePreprocess.parse("size=8x8,mean=0.5,std=0.5,color=bgr")
    feeds = list(Calibration.from_path(tmp_path, tiny_model, preprocess=spec))
    assert len(feeds) == 3 and feeds[0]["x"].shape == (1, 3, 8, 8)
    np.testing.assert_allclose(feeds[0]["x"], -1.0)
    np.testing.assert_allclose(feeds[2]["x"], (120 / 255 - 0.5) / 0.5, atol=1e-6)


def test_images_without_a_preprocessing_spec_are_refused(tmp_path, tiny_model):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(UsageError, match="needs --calib-preprocess"):
        Calibration.from_path(tmp_path, tiny_model)


@pytest.mark.parametrize("spec", ["size=8", "mean=1", "size=8x8,layout=chw", "size=8x8,colour=rgb"])
def test_bad_preprocessing_specs(spec):
    with pytest.raises(UsageError, match="--calib-preprocess"):
        ImagePreprocess.parse(spec)


def test_generated_data_is_flagged(tiny_model):
    calib = Calibration.generated_for(tiny_model, n=2)
    assert calib.generated and len(calib.take(5)) == 2


def test_iterables_are_reiterable():
    calib = Calibration.from_iterable(({"x": np.zeros(1)} for _ in range(3)))
    assert len(list(calib)) == len(list(calib)) == 3
