"""Decoding model outputs and scoring them against ground truth, for the three PP-OCR tasks.

Rules:
- Recognition: greedy CTC as rapidocr's ``CTCLabelDecode`` does it: argmax per time step, collapse
  repeats, drop the blank (index 0), map indices through the model's own dictionary. Scores compare
  texts with leading and trailing spaces stripped: the PP-OCR recognizer emits its space class over
  the margins and padding of a crop, which carries no content. Character accuracy is
  ``1 - sum(edit distance) / sum(len(truth))`` over the data set, clipped at 0 (garbage predictions
  can make it negative); line accuracy is the share of exact matches.
- Detection: rapidocr's ``DBPostProcess`` with axis-aligned boxes instead of minimum-area rotated
  ones (rendered text is horizontal): threshold the probability map at
  0.3, dilate with a 2x2 kernel, 8-connected components (``scipy.ndimage.label``), drop components
  whose mean probability is below 0.5 (``box_thresh``) or whose short side is under 3 pixels, expand
  each box by DB's unclip distance ``area * 1.6 / perimeter``, scale to the original image. A
  prediction matches a ground-truth box when their IoU is at least 0.5, one-to-one, greedily by IoU.
  Precision, recall and F-score are pooled over the data set.
- Direction: argmax over ``label_list = ['0', '180']``; accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 with x1, y1 exclusive

DET_THRESH = 0.3
DET_BOX_THRESH = 0.5
DET_UNCLIP_RATIO = 1.6
DET_MIN_SIZE = 3
MATCH_IOU = 0.5
CLS_LABELS = ("0", "180")


# -- recognition ----------------------------------------------------------------------------------
def ctc_greedy_decode(probabilities: np.ndarray, dictionary: Sequence[str]) -> str:
    """Text from one ``[T, C]`` matrix of per-step class scores (class 0 is the CTC blank)."""
    best = np.asarray(probabilities).argmax(axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    return "".join(dictionary[index] for index in best[keep])


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def text_scores(predictions: Sequence[str], truths: Sequence[str]) -> dict[str, float]:
    if len(predictions) != len(truths) or not truths:
        raise ValueError("text_scores needs as many predictions as truths, and at least one")
    predictions = [p.strip(" ") for p in predictions]
    truths = [t.strip(" ") for t in truths]
    errors = sum(edit_distance(p, t) for p, t in zip(predictions, truths))
    characters = sum(len(t) for t in truths)
    exact = sum(p == t for p, t in zip(predictions, truths))
    return {"char_accuracy": max(0.0, 1.0 - errors / characters), "line_accuracy": exact / len(truths)}


# -- detection ------------------------------------------------------------------------------------
def boxes_from_probability(probability: np.ndarray, original_size: tuple[int, int]) -> list[Box]:
    """Boxes in original-image pixels from a ``[H, W]`` text-probability map; ``original_size`` is (h, w)."""
    mask = ndimage.binary_dilation(probability > DET_THRESH, structure=np.ones((2, 2), dtype=bool))
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    scale_y = original_size[0] / probability.shape[0]
    scale_x = original_size[1] / probability.shape[1]
    boxes = []
    for rows, cols in ndimage.find_objects(labels):
        if probability[rows, cols].mean() < DET_BOX_THRESH:
            continue
        # Pixel centres, as the contour points DB takes its minimum-area box from.
        x0, x1, y0, y1 = cols.start, cols.stop - 1, rows.start, rows.stop - 1
        if min(x1 - x0, y1 - y0) < DET_MIN_SIZE:
            continue
        x0, y0, x1, y1 = unclip((x0, y0, x1, y1))
        boxes.append((
            float(np.clip(x0 * scale_x, 0, original_size[1])),
            float(np.clip(y0 * scale_y, 0, original_size[0])),
            float(np.clip(x1 * scale_x, 0, original_size[1])),
            float(np.clip(y1 * scale_y, 0, original_size[0])),
        ))
    return boxes


def unclip(box: Box, ratio: float = DET_UNCLIP_RATIO) -> Box:
    """Grows a box by DB's distance ``area * ratio / perimeter`` on every side."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    distance = width * height * ratio / (2 * (width + height)) if width + height > 0 else 0.0
    return (x0 - distance, y0 - distance, x1 + distance, y1 + distance)


def iou(a: Box, b: Box) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def match_boxes(predicted: Sequence[Box], truth: Sequence[Box], threshold: float = MATCH_IOU) -> int:
    """How many one-to-one (prediction, truth) pairs have IoU >= threshold, pairing the best first."""
    pairs = sorted(
        ((iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)), reverse=True
    )
    used_p, used_t, matched = set(), set(), 0
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched += 1
    return matched


def detection_scores(predicted: Sequence[Sequence[Box]], truth: Sequence[Sequence[Box]]) -> dict[str, float]:
    """Precision, recall and F-score pooled over images (one list of boxes per image)."""
    matched = sum(match_boxes(p, t) for p, t in zip(predicted, truth, strict=True))
    n_predicted = sum(len(p) for p in predicted)
    n_truth = sum(len(t) for t in truth)
    precision = matched / n_predicted if n_predicted else 0.0
    recall = matched / n_truth if n_truth else 0.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f_score": f_score}


# -- direction ------------------------------------------------------------------------------------
def classification_accuracy(scores: Sequence[np.ndarray], labels: Sequence[int]) -> dict[str, float]:
    """Accuracy of argmax over ``[2]`` score vectors against labels (indices into ``CLS_LABELS``)."""
    correct = sum(int(np.argmax(s)) == label for s, label in zip(scores, labels, strict=True))
    return {"accuracy": correct / len(labels)}
