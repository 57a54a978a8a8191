"""External data confinement: an external tensor may only read bytes of a file inside its model's folder.

Rules, checked on the protobuf for every external tensor (initializers, sparse initializers,
``Constant`` and other tensor attributes, in the main graph, every subgraph and every function)
before a byte of external data is read:
- the ``location`` is a relative path without ``..`` steps, not absolute, not empty and without NUL;
- the file it names, with every symlink resolved, lies inside the model's folder (also resolved),
  exists and is a regular file;
- ``offset`` and ``length`` are non-negative integers and ``offset + length`` is within the file;
- the length (given, or the rest of the file from ``offset`` when absent, which is what loaders then
  read) equals what the tensor's dims and type need; strings cannot be stored externally.
A model given as bytes has no folder: its external tensors are refused unless a folder is named.
Violations raise ``ExternalDataError`` (an ``InvalidModelError``, exit code 1), one line naming the
tensor and the location.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from ir import limits
from ir.errors import InvalidModelError


class ExternalDataError(InvalidModelError):
    """An external tensor points outside its model's folder or at bytes its file does not hold."""


def external_tensors(proto: onnx.ModelProto, where: str):
    """(tensor, label) for every external tensor of the model, nested graphs and functions included."""
    for graph in limits.graphs(proto, where):
        for tensor, label in limits.tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                yield tensor, label


def check_model(proto: onnx.ModelProto, base_dir: str | os.PathLike | None, where: str) -> None:
    """Refuse the model unless every external tensor reads bytes of a file inside ``base_dir``."""
    folder = Path(os.path.realpath(base_dir)) if base_dir is not None else None
    sizes: dict[Path, int] = {}
    for tensor, label in external_tensors(proto, where):
        check_tensor(tensor, folder, f"{where}: {label}", sizes)


def check_tensor(tensor: onnx.TensorProto, folder: Path | None, where: str, sizes: dict[Path, int] | None = None) -> Path:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    said = f"{where}: external data location '{location}'"
    if not location or "\0" in location:
        raise ExternalDataError(f"{said}: empty or invalid location")
    if os.path.isabs(location) or location.startswith(("\\", "/")) or (len(location) > 1 and location[1] == ":"):
        raise ExternalDataError(f"{said} is an absolute path; external data must lie beside the model")
    if ".." in Path(location.replace("\\", "/")).parts:
        raise ExternalDataError(f"{said} steps out of the model's folder ('..')")
    if folder is None:
        raise ExternalDataError(f"{said}: a model given as bytes has no folder to read external data from")
    path = Path(os.path.realpath(folder / location))
    if path != folder and folder not in path.parents:
        raise ExternalDataError(f"{said} resolves outside the model's folder (symlink to {path})")
    if not path.exists():
        raise ExternalDataError(f"{said}: file is missing")
    if not path.is_file():
        raise ExternalDataError(f"{said} is not a regular file")
    if sizes is not None and path in sizes:
        size = sizes[path]
    else:
        size = path.stat().st_size
        if sizes is not None:
            sizes[path] = size
    offset = _non_negative(info.get("offset", "0"), "offset", said)
    length = _non_negative(info["length"], "length", said) if "length" in info else None
    if tensor.data_type == onnx.TensorProto.STRING:
        raise ExternalDataError(f"{said}: string tensors cannot be stored as external data")
    if offset > size:
        raise ExternalDataError(f"{said}: offset {offset:,} is beyond the end of the {size:,}-byte file")
    if length is not None and offset + length > size:
        raise ExternalDataError(f"{said}: offset {offset:,} + length {length:,} is beyond the end of the {size:,}-byte file")
    expected = limits.declared_bytes(tensor, where)
    available = length if length is not None else size - offset
    if expected is not None and available != expected:
        what = f"length {length:,}" if length is not None else f"the {available:,} bytes after offset {offset:,}"
        raise ExternalDataError(f"{said}: {what} does not match dims {list(tensor.dims)} x {limits._type_name(tensor.data_type)} ({expected:,} bytes)")
    return path


def _non_negative(text: str, key: str, said: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ExternalDataError(f"{said}: {key} '{text}' is not an integer") from None
    if value < 0:
        raise ExternalDataError(f"{said}: negative {key} {value}")
    return value
