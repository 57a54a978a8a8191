"""Model inputs made the way rapidocr-onnxruntime 1.4.4 makes them, with Pillow instead of OpenCV.

Rules (from ``rapidocr_onnxruntime/ch_ppocr_{rec,cls,det}`` and its ``config.yaml``):
- Channel order is BGR: rapidocr loads images as RGB and converts them with ``COLOR_RGB2BGR``.
- Pixels are normalized as ``(x / 255 - 0.5) / 0.5`` for all three models (the detector's mean and
  std are both 0.5 in the config), then laid out CHW with a batch axis of 1.
- Recognizer (``TextRecognizer.resize_norm_img``) and classifier (``TextClassifier.resize_norm_img``):
  resize to height 48 keeping the aspect ratio, width ``ceil(48 * w / h)`` capped at the target width
  (320 / 192; wider lines are squeezed), then zero-pad on the right to the target width (zero is the
  normalized mid-grey). rapidocr widens a recognizer batch beyond 320 for lines wider than 320/48;
  here the width is fixed at 320 so that every sample has one shape.
- Detector (``DetPreProcess``): resize so that the shorter side reaches ``limit_side_len`` when it is
  smaller (``limit_type: min``), then round both sides to multiples of 32. rapidocr's limit is 736;
  here it is the page size (640), which leaves a 640 x 640 page as it is.
- Resizing is Pillow's bilinear filter; OpenCV's ``INTER_LINEAR`` differs slightly when shrinking
  (Pillow antialiases), which is why images are rendered near the target scale.
"""

from __future__ import annotations

import math

import numpy as np

from models.ocr_render import pillow

REC_SHAPE = (3, 48, 320)
CLS_SHAPE = (3, 48, 192)
DET_LIMIT_SIDE_LEN = 640


def normalize_chw(image_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 HWC -> BGR float32 CHW in [-1, 1]."""
    bgr = image_rgb[..., ::-1].astype(np.float32)
    return (bgr.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5


def resize(image_rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if image_rgb.shape[:2] == (height, width):
        return image_rgb
    image = pillow().Image
    return np.asarray(image.fromarray(image_rgb).resize((width, height), image.BILINEAR))


def text_line_input(image_rgb: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A line crop as a ``[1, 3, 48, W]`` input (recognizer: ``REC_SHAPE``, classifier: ``CLS_SHAPE``)."""
    channels, height, width = shape
    h, w = image_rgb.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / h)))
    padded = np.zeros((channels, height, width), dtype=np.float32)
    padded[:, :, :resized_w] = normalize_chw(resize(image_rgb, resized_w, height))
    return padded[None]


def rec_input(image_rgb: np.ndarray) -> np.ndarray:
    return text_line_input(image_rgb, REC_SHAPE)


def cls_input(image_rgb: np.ndarray) -> np.ndarray:
    return text_line_input(image_rgb, CLS_SHAPE)


def det_resized_size(height: int, width: int, limit_side_len: int = DET_LIMIT_SIDE_LEN) -> tuple[int, int]:
    """rapidocr's ``DetPreProcess.resize`` rule for ``limit_type: min``: (height, width)."""
    ratio = limit_side_len / min(height, width) if min(height, width) < limit_side_len else 1.0
    resize_h = int(round(int(height * ratio) / 32) * 32)
    resize_w = int(round(int(width * ratio) / 32) * 32)
    return max(resize_h, 32), max(resize_w, 32)


def det_input(image_rgb: np.ndarray, limit_side_len: int = DET_LIMIT_SIDE_LEN) -> np.ndarray:
    height, width = det_resized_size(*image_rgb.shape[:2], limit_side_len)
    return normalize_chw(resize(image_rgb, width, height))[None]
