"""Loading and saving models: clear errors on bad input, atomic writes, external data both ways.

Rules:
- ``load`` never modifies the file it reads. A missing, empty, truncated or non-ONNX file raises
  ``ModelLoadError`` naming the path and the reason. Nodes are put in topological order (ONNX Runtime
  accepts any order); a cyclic graph raises ``InvalidModelError``.
- ``save`` writes to a temporary file in the destination folder and renames it into place, so a crash
  never leaves a half-written model. Models whose tensors exceed ``EXTERNAL_THRESHOLD`` bytes in all are
  saved with external data in ``<name>.data`` next to the model, never pointing back at the input's data.
- Models are untrusted input. Before anything is built from the protobuf, ``ir.limits`` caps its size,
  node count, nesting depth and tensor declarations, and ``ir.external`` confines every external
  tensor to the model's folder and to bytes its file holds; a violation is an ``InvalidModelError``
  (exit code 1) naming the tensor and the location. External tensors that are not main-graph
  initializers are read into memory at load, so nothing resolves them later against the working
  directory. A model that loads can be serialized again (checked at load).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from ir import external, limits, shapes
from ir.errors import InvalidModelError, ModelLoadError, ModelSaveError

# Protobuf cannot serialize a message of 2 GiB or more; keep well below that.
EXTERNAL_THRESHOLD = 1 << 30


def load(source: str | os.PathLike | bytes) -> ir.Model:
    """Load an ONNX model from a path, or from serialized bytes (see ``load_bytes``)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_bytes(bytes(source))
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not an ONNX model file")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path}: empty file, not an ONNX model")
    limits.check_proto_size(size, str(path))
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a valid ONNX model (truncated or not protobuf): {_first_line(exc)}") from exc
    return _from_proto(proto, str(path), path.parent)


def load_bytes(data: bytes, *, base_dir: str | os.PathLike | None = None, where: str = "<bytes>") -> ir.Model:
    """Load a serialized model. Its external tensors are read from ``base_dir``, under the same rules
    as a file's (see ``ir.external``); without ``base_dir`` a model with external data is refused."""
    limits.check_proto_size(len(data), where)
    return _from_proto(_parse_bytes(bytes(data), where), where, Path(base_dir) if base_dir is not None else None)


def _from_proto(proto: onnx.ModelProto, where: str, base_dir: Path | None) -> ir.Model:
    _check_proto(proto, where)
    limits.check_model_proto(proto, where)
    external.check_model(proto, base_dir, where)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx_ir raises assorted errors on malformed graphs
        raise ModelLoadError(f"{where}: malformed ONNX graph: {_first_line(exc)}") from exc
    if base_dir is not None:
        _settle_external(model, Path(os.path.realpath(base_dir)))
    _sort(model, where)
    shapes.remember_declared(model)
    try:
        # onnx_ir accepts some fields it cannot write back (unknown data types, ...); everything
        # downstream (checker, inference, ONNX Runtime) needs the model serialized, so find out now.
        ir.serde.serialize_model(model)
    except Exception as exc:
        raise ModelLoadError(f"{where}: malformed ONNX model: {_root_cause(exc)}") from exc
    return model


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {_first_line(exc)}"


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


def _external_tensors(model: ir.Model):
    """(holder, key, tensor) for every external tensor: initializers of every graph, and tensor
    attributes of every node (subgraphs and functions included)."""
    graphs = [*model.graphs(), *(g for f in model.functions.values() for g in _function_subgraphs(f))]
    for graph in graphs:
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                yield value, None, value.const_value
    nodes = [*ir.traversal.RecursiveGraphIterator(model.graph)]
    for function in model.functions.values():
        nodes += ir.traversal.RecursiveGraphIterator(function)
    for node in nodes:
        for attribute in node.attributes.values():
            if attribute.is_ref():
                continue
            if attribute.type == ir.AttributeType.TENSOR and isinstance(attribute.value, ir.ExternalTensor):
                yield node, attribute.name, attribute.value
            elif attribute.type == ir.AttributeType.TENSORS and any(isinstance(t, ir.ExternalTensor) for t in attribute.value):
                yield node, attribute.name, None


def _function_subgraphs(function):
    for node in ir.traversal.RecursiveGraphIterator(function):
        for attribute in node.attributes.values():
            if attribute.type == ir.AttributeType.GRAPH:
                yield attribute.value
            elif attribute.type == ir.AttributeType.GRAPHS:
                yield from attribute.value


def _settle_external(model: ir.Model, folder: Path) -> None:
    """Give every external tensor the model's folder, so it reads from there whatever the working
    directory; tensors outside the main graph's initializers (``Constant`` values, subgraph weights) are
    read into memory now, because ONNX Runtime and the checker see only serialized models and would
    resolve them against the working directory."""
    for holder, key, tensor in list(_external_tensors(model)):
        for each in [tensor] if tensor is not None else holder.attributes[key].value:
            if isinstance(each, ir.ExternalTensor):
                each.base_dir = str(folder)
        if isinstance(holder, ir.Value) and holder.name in model.graph.initializers and model.graph.initializers[holder.name] is holder:
            continue
        _to_memory(holder, key)


def _to_memory(holder, key) -> None:
    if isinstance(holder, ir.Value):
        holder.const_value = _memory_tensor(holder.const_value)
        return
    attribute = holder.attributes[key]
    if attribute.type == ir.AttributeType.TENSOR:
        holder.attributes[key] = ir.AttrTensor(key, _memory_tensor(attribute.value))
    else:
        holder.attributes[key] = ir.AttrTensors(key, [_memory_tensor(t) for t in attribute.value])


def _memory_tensor(tensor):
    if not isinstance(tensor, ir.ExternalTensor):
        return tensor
    return ir.external_data.convert_tensors_from_external([tensor])[0]


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
    """Save atomically. ``external=None`` chooses external data when the weights need it.

    Every byte goes inside ``path``'s folder: the model, and with external data one file
    ``<model file name>.data`` beside it (named after the model, never after a tensor). Tensors the
    model still reads from other files (its input's external data) are copied, never referenced;
    existing files are replaced by renaming, so a symlink in the output folder is replaced, not
    written through."""
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
    data_name = f"{path.name}.data"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.fchmod(fd, default_file_mode())  # mkstemp makes it 0600; the output should follow the umask
    os.close(fd)
    fd, tmp_data_name = tempfile.mkstemp(prefix=f".{data_name}.", suffix=".tmp", dir=folder)
    os.fchmod(fd, default_file_mode())  # onnx_ir keeps the mode of the file it replaces
    os.close(fd)
    tmp_data = folder / Path(tmp_data_name).name
    # onnx_ir re-writes external initializers into the new data file but keeps other external
    # tensors as references; read those (all of them without external data) into memory for the save.
    restore = [(holder, key, _value_of(holder, key)) for holder, key, _ in _external_tensors(model)
               if not (external and isinstance(holder, ir.Value))]
    try:
        for holder, key, _ in restore:
            _to_memory(holder, key)
        if external:
            # onnx_ir writes the data file under the name we give, relative to the model; write it
            # under a temporary name and rename it together with the model.
            ir.save(model, tmp, external_data=tmp_data.name, size_threshold_bytes=1024)
            _repoint_external_locations(tmp, tmp_data.name, data_name, path)
            os.replace(tmp_data, folder / data_name)
        else:
            proto = ir.serde.serialize_model(model)
            _check_saved_locations(proto, set(), path)
            onnx.save(proto, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ModelSaveError(f"{path}: cannot write model: {exc.strerror or exc}") from exc
    finally:
        for holder, key, value in restore:
            _set_value(holder, key, value)
        for leftover in (Path(tmp), tmp_data):
            if leftover.exists():
                leftover.unlink()
    return path


def _value_of(holder, key):
    return holder.const_value if isinstance(holder, ir.Value) else holder.attributes[key]


def _set_value(holder, key, value) -> None:
    if isinstance(holder, ir.Value):
        holder.const_value = value
    else:
        holder.attributes[key] = value


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


def _repoint_external_locations(model_path: str, old: str, new: str, final: Path) -> None:
    proto = onnx.load(model_path, load_external_data=False)
    for tensor, _ in external.external_tensors(proto, str(final)):
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    _check_saved_locations(proto, {new}, final)
    onnx.save(proto, model_path)


def _check_saved_locations(proto: onnx.ModelProto, allowed: set[str], final: Path) -> None:
    """The saved model may reference only its own data file (a guard: ``save`` copies the rest)."""
    for tensor, label in external.external_tensors(proto, str(final)):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if location not in allowed:
            raise ModelSaveError(f"{final}: {label} would reference external data '{location}' outside the saved model's own file")


def to_proto(model: ir.Model) -> onnx.ModelProto:
    return ir.serde.serialize_model(model)


def copy_model(model: ir.Model) -> ir.Model:
    """A deep copy (through protobuf; external tensors stay references to their files)."""
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))
