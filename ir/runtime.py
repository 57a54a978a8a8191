"""Running models with ONNX Runtime, the numerical reference, and generating inputs for them.

Rules:
- Sessions run on the CPU provider with all graph optimizations disabled, so what is measured is the
  model as written, not what ONNX Runtime's own fusions make of it.
- Generated inputs are deterministic for a seed: floats are standard normal, integers small and
  non-negative, booleans random. Symbolic dimensions are filled from ``fill_dims`` or set to 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir

from ir.errors import InvalidModelError


def session(model: ir.Model | onnx.ModelProto | bytes, *, optimize: bool = False, threads: int = 0, spin: bool = True):
    """An ONNX Runtime CPU session (imported here: commands that never run a model skip its import cost).

    ``spin=False`` keeps idle intra-op threads from spinning: when several sessions are timed in turn,
    a spinning idle session takes CPU from the one being timed."""
    import onnxruntime as ort

    if isinstance(model, ir.Model):
        model = _proto_with_inline_weights(model)
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types without a common base
        raise InvalidModelError(f"ONNX Runtime cannot load the model: {_one_line(exc)}") from exc


def _proto_with_inline_weights(model: ir.Model) -> onnx.ModelProto:
    """Serialize for a session: ONNX Runtime resolves external data of a model given as bytes against
    the working directory, so external weights are read into the proto (models over 2 GB cannot be
    serialized at all; ONNX Runtime must load those from their own file)."""
    from onnx.external_data_helper import load_external_data_for_tensor

    base_dirs = {
        value.name: value.const_value.base_dir
        for value in model.graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    }
    proto = ir.serde.serialize_model(model)
    if not base_dirs:
        return proto
    from ir.io import EXTERNAL_THRESHOLD, tensor_bytes

    if tensor_bytes(model) >= EXTERNAL_THRESHOLD:
        raise InvalidModelError("the model's weights exceed 1 GiB; run it in ONNX Runtime from its saved file")
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            load_external_data_for_tensor(tensor, base_dirs[tensor.name])
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return proto


def run(model_or_session, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = model_or_session if hasattr(model_or_session, "get_outputs") else session(model_or_session)
    names = [o.name for o in sess.get_outputs()]
    try:
        outputs = sess.run(names, dict(feeds))
    except Exception as exc:
        raise InvalidModelError(f"ONNX Runtime failed to run the model: {_one_line(exc)}") from exc
    return dict(zip(names, outputs))


def input_specs(model: ir.Model) -> dict[str, tuple[np.dtype, list[int | str | None]]]:
    """Graph inputs that are not initializers: name -> (numpy dtype, dims with symbols as str)."""
    specs = {}
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        dims: list[int | str | None] = []
        if value.shape is not None:
            for dim in value.shape:
                if isinstance(dim, int):
                    dims.append(dim if dim >= 0 else None)
                else:
                    dims.append(getattr(dim, "value", None))
        specs[value.name] = (dtype, dims)
    return specs


def generate_inputs(model: ir.Model, *, seed: int = 0, fill_dims: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (dtype, dims) in input_specs(model).items():
        shape = [d if isinstance(d, int) else (fill_dims or {}).get(d, 1) if isinstance(d, str) else 1 for d in dims]
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[name] = rng.integers(0, 4, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InvalidModelError(f"input '{name}': cannot generate data of type {dtype}; pass calibration data")
    return feeds


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]
