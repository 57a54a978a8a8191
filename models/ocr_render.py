"""Text images with exact ground truth, rendered with Pillow and the DejaVu fonts.

Rules:
- Everything is drawn from the ``numpy.random.Generator`` passed in; the same generator state gives
  the same pixels.
- Text is printable ASCII that the PP-OCR dictionary holds: random words (lower case, capitalised,
  upper case), numbers, codes like ``AB-1234``, with some punctuation attached. Words are random
  letter strings, not a vocabulary: the recognizer must read glyphs, not guess words.
- Dark text on a light background with mild variation: font family and size, ink and paper colour,
  margins, Gaussian pixel noise (sigma <= 4).
- A line image's ground truth is its text. A page's ground truth is one box per line, the exact ink
  extent ``(x0, y0, x1, y1)`` (x1, y1 exclusive) measured from the rendered glyph mask; lines on a page
  are kept ``PAGE_LINE_GAP`` pixels apart so that each is a separate detection.
- Fonts come from ``FONT_DIR`` (Debian ``fonts-dejavu-core``); Pillow comes with the ``real-models``
  extra and is imported on first use, so that importing this module never fails. Either missing
  raises ``ModelLoadError``.
"""

from __future__ import annotations

import functools
import string
import types
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ir.errors import ModelLoadError
from models.zoo import REAL_MODELS_HINT

if TYPE_CHECKING:
    from PIL import ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
)
PUNCTUATION = ".,:;!?-()/%&+#"
PAGE_LINE_GAP = 16


def pillow() -> types.ModuleType:
    """The ``PIL`` package with ``Image``, ``ImageDraw`` and ``ImageFont`` loaded."""
    try:
        import PIL.Image
        import PIL.ImageDraw
        import PIL.ImageFont
    except ImportError as exc:
        raise ModelLoadError(f"Pillow is missing; {REAL_MODELS_HINT}") from exc
    return PIL


def font(file: str, size: int) -> ImageFont.FreeTypeFont:
    return _load_font(file, int(size))


@functools.lru_cache(maxsize=256)
def _load_font(file: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / file
    if not path.is_file():
        raise ModelLoadError(f"font {path} is missing; install the DejaVu fonts (apt-get install fonts-dejavu-core)")
    return pillow().ImageFont.truetype(str(path), size)


# -- text -----------------------------------------------------------------------------------------
def random_word(rng: np.random.Generator) -> str:
    kind = rng.choice(["lower", "capital", "upper", "number", "code", "punctuated"], p=[0.35, 0.2, 0.1, 0.15, 0.1, 0.1])
    if kind == "number":
        digits = _letters(rng, string.digits, 1, 6)
        if rng.random() < 0.4:
            digits += rng.choice(list(".,:/")) + _letters(rng, string.digits, 1, 3)
        return digits
    if kind == "code":
        return _letters(rng, string.ascii_uppercase, 1, 3) + "-" + _letters(rng, string.digits, 2, 4)
    word = _letters(rng, string.ascii_lowercase, 2, 9)
    if kind == "capital":
        word = word.capitalize()
    elif kind == "upper":
        word = word.upper()
    elif kind == "punctuated":
        mark = str(rng.choice(list(PUNCTUATION)))
        word = f"({word})" if mark in "()" else word + mark
    return word


def random_text(rng: np.random.Generator, max_words: int) -> str:
    return " ".join(random_word(rng) for _ in range(int(rng.integers(1, max_words + 1))))


def _letters(rng: np.random.Generator, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(low, high + 1))))


# -- drawing --------------------------------------------------------------------------------------
def random_font(rng: np.random.Generator, size_range: tuple[int, int]) -> ImageFont.FreeTypeFont:
    return font(str(rng.choice(FONT_FILES)), int(rng.integers(size_range[0], size_range[1] + 1)))


def random_colors(rng: np.random.Generator) -> dict:
    """Ink and paper RGB (a grey level with a slight tint each) and the pixel noise sigma."""
    ink = rng.integers(0, 70)
    paper = rng.integers(200, 256)
    return {
        "ink": np.clip(ink + rng.integers(-15, 16, 3), 0, 255),
        "paper": np.clip(paper + rng.integers(-12, 13, 3), 0, 255),
        "noise": float(rng.uniform(0, 4)),
    }


def glyph_mask(text: str, face: ImageFont.FreeTypeFont) -> np.ndarray:
    """Anti-aliased coverage (0..1) of ``text``, cropped to its exact ink extent."""
    left, top, right, bottom = face.getbbox(text)
    pil = pillow()
    canvas = pil.Image.new("L", (right - left + 4, bottom - top + 4), 0)
    pil.ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, font=face, fill=255)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"text renders no ink: {text!r}")
    return np.asarray(canvas.crop(box), dtype=np.float32) / 255.0


def render_line(rng: np.random.Generator, text: str, size_range: tuple[int, int] = (22, 44)) -> np.ndarray:
    """One text line as an RGB uint8 image with a margin around the ink (like a detector's crop)."""
    mask = glyph_mask(text, random_font(rng, size_range))
    height, width = mask.shape
    pad_x = int(rng.integers(3, 12 + height // 4))
    pad_y = int(rng.integers(2, 4 + height // 4))
    page = np.zeros((height + 2 * pad_y, width + 2 * pad_x), dtype=np.float32)
    page[pad_y:pad_y + height, pad_x:pad_x + width] = mask
    return _composite(rng, page, random_colors(rng))


def render_page(
    rng: np.random.Generator, size: int = 640, lines: tuple[int, int] = (4, 10), attempts: int = 60
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], list[str]]:
    """A ``size`` x ``size`` RGB page with text lines at random, separate places: (image, boxes, texts)."""
    colors = random_colors(rng)
    coverage = np.zeros((size, size), dtype=np.float32)
    boxes: list[tuple[int, int, int, int]] = []
    texts: list[str] = []
    wanted = int(rng.integers(lines[0], lines[1] + 1))
    for _ in range(attempts):
        if len(boxes) == wanted:
            break
        text = random_text(rng, max_words=4)
        mask = glyph_mask(text, random_font(rng, (18, 44)))
        height, width = mask.shape
        if width > size - 2 * PAGE_LINE_GAP:
            continue
        x0 = int(rng.integers(PAGE_LINE_GAP, size - width - PAGE_LINE_GAP + 1))
        y0 = int(rng.integers(PAGE_LINE_GAP, size - height - PAGE_LINE_GAP + 1))
        box = (x0, y0, x0 + width, y0 + height)
        if any(_too_close(box, other, PAGE_LINE_GAP) for other in boxes):
            continue
        coverage[y0:y0 + height, x0:x0 + width] = mask
        boxes.append(box)
        texts.append(text)
    return _composite(rng, coverage, colors), boxes, texts


def _too_close(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _composite(rng: np.random.Generator, coverage: np.ndarray, colors: dict) -> np.ndarray:
    alpha = coverage[..., None]
    image = colors["paper"] * (1 - alpha) + colors["ink"] * alpha
    image = image + rng.normal(0, colors["noise"], image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def rotate_180(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[::-1, ::-1])
