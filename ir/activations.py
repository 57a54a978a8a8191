"""Intermediate activations on calibration data, streamed one feed at a time.

Data-aware passes (pruning importance and reconstruction, quantization observers, low-rank fitting)
need the values flowing between layers. ``capture`` exposes the requested values as extra graph
outputs of a copy of the model, builds one ONNX Runtime session, and yields the arrays for one feed
at a time, so memory stays bounded by one batch whatever the size of the calibration set. The
caller's model is not modified.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from ir import runtime
from ir.errors import UsageError


def session_with_outputs(model: ir.Model, names: Sequence[str]):
    """An ONNX Runtime session whose outputs are exactly ``names`` (values of the main graph)."""
    values = {v.name: v for node in model.graph for v in node.outputs}
    values.update({v.name: v for v in model.graph.inputs})
    values.update(model.graph.initializers)
    missing = [name for name in names if name not in values]
    if missing:
        raise UsageError(f"no value named {', '.join(repr(m) for m in missing[:3])} in the model")
    proto = ir.serde.serialize_model(model)
    del proto.graph.output[:]
    for name in names:
        dtype = values[name].dtype
        elem = dtype.value if dtype is not None else onnx.TensorProto.FLOAT
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return runtime.session(proto)


def capture(model: ir.Model, names: Sequence[str], feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """For each feed, the arrays of the named values."""
    names = list(dict.fromkeys(names))
    sess = session_with_outputs(model, names)
    for feed in feeds:
        yield dict(zip(names, sess.run(names, dict(feed))))
