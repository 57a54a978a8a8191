"""Loading and saving models: clear errors on bad input, atomic writes, external data both ways.

Rules:
- ``load`` never modifies the file it reads. A missing, empty, truncated or non-ONNX file raises
  ``ModelLoadError`` naming the path and the reason. Nodes are put in topological order (ONNX Runtime
  accepts any order); a cyclic graph raises ``InvalidModelError``.
- ``save`` writes to a temporary file in the destination folder and renames it into place, so a crash
  never leaves a half-written model. Models whose tensors exceed ``EXTERNAL_THRESHOLD`` bytes in all are
  saved with external data in ``<name>.data`` next to the model, never pointing back at the input's data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from ir import shapes
from ir.errors import InvalidModelError, ModelLoadError, ModelSaveError

# Protobuf cannot serialize a message of 2 GiB or more; keep well below that.
EXTERNAL_THRESHOLD = 1 << 30


def load(source: str | os.PathLike | bytes, *, load_external: bool = True) -> ir.Model:
    """Load an ONNX model from a path or from serialized bytes."""
    if isinstance(source, (bytes, bytearray)):
        proto = _parse_bytes(bytes(source), "<bytes>")
        model = ir.serde.deserialize_model(proto)
        _sort(model, "<bytes>")
        shapes.remember_declared(model)
        return model
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not an ONNX model file")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path}: empty file, not an ONNX model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a valid ONNX model (truncated or not protobuf): {_first_line(exc)}") from exc
    _check_proto(proto, str(path))
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx_ir raises assorted errors on malformed graphs
        raise ModelLoadError(f"{path}: malformed ONNX graph: {_first_line(exc)}") from exc
    if load_external:
        _resolve_external(model, path.parent)
    _sort(model, str(path))
    shapes.remember_declared(model)
    return model


def _sort(model: ir.Model, where: str) -> None:
    # ONNX Runtime accepts nodes out of order; the passes expect topological order, so establish it.
    try:
        model.graph.sort()
    except ValueError as exc:
        raise InvalidModelError(f"{where}: the graph contains a cycle") from exc


def _parse_bytes(data: bytes, where: str) -> onnx.ModelProto:
    if not data:
        raise ModelLoadError(f"{where}: empty input, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as exc:
        raise ModelLoadError(f"{where}: not a valid ONNX model (truncated or not protobuf): {_first_line(exc)}") from exc
    _check_proto(proto, where)
    return proto


def _check_proto(proto: onnx.ModelProto, where: str) -> None:
    # An empty or foreign protobuf parses "successfully" into an empty ModelProto.
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise ModelLoadError(f"{where}: not an ONNX model (no ir_version or no graph)")
    if not proto.graph.output:
        raise ModelLoadError(f"{where}: ONNX graph has no outputs")


def _resolve_external(model: ir.Model, base_dir: Path) -> None:
    """Point external tensors at absolute paths so the model can be saved anywhere."""
    for graph in (model.graph, *model.graph.subgraphs()):
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.ExternalTensor):
                location = base_dir / tensor.location if not Path(tensor.base_dir or "").is_absolute() else Path(tensor.base_dir) / tensor.location
                if not location.exists():
                    raise ModelLoadError(f"{base_dir}: external data file '{tensor.location}' for '{value.name}' is missing")
                tensor.base_dir = str(location.parent)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def tensor_bytes(model: ir.Model) -> int:
    total = 0
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            total += value.const_value.nbytes
    return total


def save(model: ir.Model, path: str | os.PathLike, *, external: bool | None = None) -> Path:
    """Save atomically. ``external=None`` chooses external data when the weights need it."""
    path = Path(path)
    folder = path.parent
    if not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelSaveError(f"{folder}: cannot create output folder: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK):
        raise ModelSaveError(f"{folder}: output folder is not writable")
    if external is None:
        external = tensor_bytes(model) >= EXTERNAL_THRESHOLD
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.fchmod(fd, default_file_mode())  # mkstemp makes it 0600; the output should follow the umask
    os.close(fd)
    data_name = f"{path.name}.data"
    tmp_data = folder / f".{data_name}.tmp"
    try:
        if external:
            # onnx_ir writes the data file under the name we give, relative to the model; write it
            # under a temporary name and rename it together with the model.
            ir.save(model, tmp, external_data=tmp_data.name, size_threshold_bytes=1024)
            _repoint_external_locations(tmp, tmp_data.name, data_name)
            os.replace(tmp_data, folder / data_name)
        else:
            ir.save(model, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ModelSaveError(f"{path}: cannot write model: {exc.strerror or exc}") from exc
    finally:
        for leftover in (Path(tmp), tmp_data):
            if leftover.exists():
                leftover.unlink()
    return path


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 under umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (temporary file in the same folder, then rename), umask mode."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _repoint_external_locations(model_path: str, old: str, new: str) -> None:
    proto = onnx.load(model_path, load_external_data=False)
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    onnx.save(proto, model_path)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    return ir.serde.serialize_model(model)


def copy_model(model: ir.Model) -> ir.Model:
    """A deep copy (through protobuf; external tensors stay references to their files)."""
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))
