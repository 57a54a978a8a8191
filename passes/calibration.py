"""Calibration data: the samples that data-aware passes and the verifier feed to the model.

Sources, all yielding feeds (``{input name: array}``), one batch each:
- a ``.npy`` file: an array for the model's single input; if its rank is one more than the input's,
  or the input's batch dimension is 1 and the array's is larger, the first axis enumerates samples;
- a ``.npz`` file: one array per input name, first axis enumerating samples when the rank is one more;
- a folder of ``.npy``/``.npz`` files (one sample each) or of images (``.png``, ``.jpg``, ``.jpeg``,
  ``.bmp``) read with Pillow and preprocessed by an ``ImagePreprocess`` spec;
- a Python iterable of feeds, through the API (``Calibration.from_iterable``).
Generated data (``Calibration.generated``) exists only as a fallback and is flagged: it says nothing
about the accuracy a lossy pass will have on real inputs, so callers show a warning.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import onnx_ir as ir

from ir import runtime
from ir.errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


@dataclasses.dataclass(frozen=True)
class ImagePreprocess:
    """How to turn an image file into a model input: resize, scale, normalize, order channels."""

    height: int
    width: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0 / 255.0
    layout: Literal["nchw", "nhwc"] = "nchw"
    color: Literal["rgb", "bgr"] = "rgb"

    @classmethod
    def parse(cls, text: str) -> ImagePreprocess:
        """``size=HxW,mean=a/b/c,std=a/b/c,scale=s,layout=nchw,color=bgr`` (mean/std may be one number)."""
        fields: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            try:
                if key == "size":
                    height, width = value.lower().split("x")
                    fields["height"], fields["width"] = int(height), int(width)
                elif key in ("mean", "std"):
                    numbers = [float(v) for v in value.split("/")]
                    fields[key] = tuple(numbers * 3 if len(numbers) == 1 else numbers)
                elif key == "scale":
                    fields["scale"] = float(value)
                elif key in ("layout", "color"):
                    allowed = ("nchw", "nhwc") if key == "layout" else ("rgb", "bgr")
                    if value.lower() not in allowed:
                        raise ValueError
                    fields[key] = value.lower()
                else:
                    raise UsageError(f"--calib-preprocess: unknown key '{key}' (accepted: size, mean, std, scale, layout, color)")
            except (ValueError, TypeError):
                raise UsageError(f"--calib-preprocess: bad value in '{item}'") from None
        if "height" not in fields:
            raise UsageError("--calib-preprocess: 'size=HxW' is required for image folders")
        return cls(**fields)  # type: ignore[arg-type]

    def __call__(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((self.width, self.height), Image.BILINEAR)
        array = np.asarray(rgb, dtype=np.float32) * self.scale
        if self.color == "bgr":
            array = array[..., ::-1]
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "nchw":
            array = array.transpose(2, 0, 1)
        return np.ascontiguousarray(array[None], dtype=np.float32)


class Calibration:
    """A re-iterable source of feeds with a description of where they came from."""

    def __init__(self, factory: Callable[[], Iterable[dict[str, np.ndarray]]], source: str, *, generated: bool = False, limit: int | None = None):
        self._factory = factory
        self.source = source
        self.generated = generated
        self.limit = limit

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return itertools.islice(iter(self._factory()), self.limit)

    def take(self, n: int) -> list[dict[str, np.ndarray]]:
        return list(itertools.islice(iter(self), n))

    @classmethod
    def from_iterable(cls, feeds: Iterable[dict[str, np.ndarray]], source: str = "Python iterable", limit: int | None = None) -> Calibration:
        cached = list(feeds) if not isinstance(feeds, (list, tuple)) else feeds
        return cls(lambda: cached, source, limit=limit)

    @classmethod
    def generated_for(cls, model: ir.Model, n: int = 4, seed: int = 0) -> Calibration:
        feeds = [runtime.generate_inputs(model, seed=seed + i) for i in range(n)]
        return cls(lambda: feeds, f"{n} generated random inputs", generated=True)

    @classmethod
    def from_path(cls, path: str | Path, model: ir.Model, *, preprocess: ImagePreprocess | None = None, limit: int | None = None) -> Calibration:
        path = Path(path)
        specs = runtime.input_specs(model)
        if not path.exists():
            raise UsageError(f"--calib {path}: no such file or folder")
        if path.is_file():
            return cls(lambda: _feeds_from_file(path, specs), str(path), limit=limit)
        files = sorted(p for p in path.iterdir() if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        arrays = [p for p in files if p.suffix in (".npy", ".npz")]
        if arrays:
            return cls(lambda: (feed for p in arrays for feed in _feeds_from_file(p, specs)), f"{path} ({len(arrays)} files)", limit=limit)
        if images:
            if preprocess is None:
                raise UsageError(f"--calib {path}: a folder of images needs --calib-preprocess 'size=HxW,...'")
            if len(specs) != 1:
                raise UsageError(f"--calib {path}: images can feed only a model with one input, this one has {len(specs)}")
            (name,) = specs
            return cls(lambda: ({name: preprocess(p)} for p in images), f"{path} ({len(images)} images)", limit=limit)
        raise UsageError(f"--calib {path}: no .npy, .npz or image files in the folder")


def _feeds_from_file(path: Path, specs: dict) -> Iterator[dict[str, np.ndarray]]:
    if path.suffix == ".npy":
        if len(specs) != 1:
            raise UsageError(f"--calib {path}: a .npy file can feed only a one-input model; use .npz with input names ({', '.join(specs)})")
        arrays = {next(iter(specs)): np.load(path)}
    elif path.suffix == ".npz":
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        unknown = set(arrays) - set(specs)
        missing = set(specs) - set(arrays)
        if unknown or missing:
            raise UsageError(f"--calib {path}: arrays {sorted(arrays)} do not match the model inputs {sorted(specs)}")
    else:
        raise UsageError(f"--calib {path}: expected a .npy or .npz file or a folder")
    batched = {}
    for name, array in arrays.items():
        dtype, dims = specs[name]
        if array.ndim == len(dims) + 1:
            batched[name] = list(array)
        elif array.ndim == len(dims) and dims and dims[0] == 1 and array.shape[0] > 1:
            # A stack of samples for a batch-1 input: split along the batch axis.
            batched[name] = [array[i : i + 1] for i in range(array.shape[0])]
        elif array.ndim == len(dims):
            batched[name] = [array]
        else:
            raise UsageError(f"--calib {path}: array '{name}' has rank {array.ndim}, the input has rank {len(dims)}")
    counts = {len(v) for v in batched.values()}
    if len(counts) != 1:
        raise UsageError(f"--calib {path}: arrays have different numbers of samples")
    for i in range(counts.pop()):
        yield {name: np.asarray(samples[i], dtype=specs[name][0]) for name, samples in batched.items()}
