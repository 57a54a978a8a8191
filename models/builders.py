"""Deterministic test subjects: classic networks with random weights, built in memory.

Rules:
- ``build(name, batch=..., image_size=..., seed=...)`` returns an ``onnx_ir.Model``; ``build_proto``
  returns the ``onnx.ModelProto``. Same arguments, same bytes: weights come from one
  ``numpy.random.default_rng(seed)`` drawn in graph order.
- Opset 17, IR version 8, input ``input``, output ``output``, weights as initializers, every model
  passes ``onnx.checker.check_model(full_check=True)`` and runs in ONNX Runtime with finite outputs.
- ``batch`` as an int fixes the batch dimension; as a string it becomes that symbolic dimension.
- Image models take ``[batch, 3, S, S]`` with S a positive multiple of 32 and return ``[batch, 1000]``
  logits; ``transformer_encoder`` takes and returns ``[batch, 32, 128]`` and ignores ``image_size``.
- BatchNormalization running statistics are measured on random images (``bn_calibration``), so
  activations stay near unit scale at any depth, as in a trained network's eval-mode export.
- The model records its recipe in ``metadata_props`` (``graphpress.builder``, ``.seed``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import onnx_ir as ir

from ir.errors import UsageError
from models import cnn_builders, transformer_builder
from models.bn_calibration import calibrate_batch_norms
from models.graph_builder import GraphBuilder

IMAGE_BUILDERS: dict[str, Callable[[GraphBuilder, int], object]] = {
    "resnet18": cnn_builders.resnet18,
    "resnet50": cnn_builders.resnet50,
    "mobilenetv2": cnn_builders.mobilenetv2,
    "vgg16": cnn_builders.vgg16,
}
SEQUENCE_BUILDERS = {"transformer_encoder": transformer_builder.transformer_encoder}
BUILDERS: dict[str, Callable] = {**IMAGE_BUILDERS, **SEQUENCE_BUILDERS}


def build(name: str, *, batch: int | str = 1, image_size: int = 224, seed: int = 0) -> ir.Model:
    """Builds the named test subject as an ``onnx_ir.Model``."""
    return ir.serde.deserialize_model(build_proto(name, batch=batch, image_size=image_size, seed=seed))


def build_proto(name: str, *, batch: int | str = 1, image_size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """Builds the named test subject as an ``onnx.ModelProto``."""
    _check_arguments(name, batch, image_size)
    builder = GraphBuilder(seed)
    if name in IMAGE_BUILDERS:
        IMAGE_BUILDERS[name](builder, image_size)
        calibrate_batch_norms(builder, channels=3, image_size=image_size)
        input_shape = [batch, 3, image_size, image_size]
        output_shape = [batch, cnn_builders.NUM_CLASSES]
    else:
        SEQUENCE_BUILDERS[name](builder)
        input_shape = output_shape = [batch, transformer_builder.SEQ_LEN, transformer_builder.D_MODEL]
    # Every builder ends with the node that computes the result.
    builder.rename_last_output("output")
    metadata = {
        "graphpress.builder": name,
        "graphpress.builder.seed": str(seed),
        "graphpress.builder.batch": str(batch),
        "graphpress.builder.image_size": str(image_size) if name in IMAGE_BUILDERS else "n/a",
    }
    return builder.to_model(name, input_shape, output_shape, metadata)


def _check_arguments(name: str, batch: int | str, image_size: int) -> None:
    if name not in BUILDERS:
        raise UsageError(f"unknown model '{name}'; choose one of: {', '.join(BUILDERS)}")
    if isinstance(batch, bool) or not isinstance(batch, (int, str)):
        raise UsageError(f"batch must be a positive int or a dimension name, got {batch!r}")
    if isinstance(batch, int) and batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}")
    if isinstance(batch, str) and not batch.isidentifier():
        raise UsageError(f"symbolic batch must be an identifier like 'N', got {batch!r}")
    if name in IMAGE_BUILDERS and (image_size < 32 or image_size % 32):
        raise UsageError(f"image_size must be a positive multiple of 32, got {image_size}")
