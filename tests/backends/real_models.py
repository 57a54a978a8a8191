"""Real test subjects for backend tests: builders and PP-OCRv4 models folded at fixed shapes."""

from __future__ import annotations

import onnx_ir as ir
import pytest


def builder_model(name: str) -> ir.Model:
    from models.builders import build  # noqa: PLC0415

    return build(name)


def folded_ppocr(name: str) -> tuple[ir.Model, dict[str, list[int]]]:
    """PP-OCRv4 ``name`` with its default input shape fixed and the fold pipeline applied.

    TVM's importer rejects the raw classifier (a Reshape fed by Shape/Gather/Concat); folding with
    fixed shapes turns those into constants (FACTS.md).
    """
    pytest.importorskip("rapidocr_onnxruntime", reason="needs the real-models extra (rapidocr-onnxruntime)")
    from ir import io  # noqa: PLC0415
    from ir.shapes import fix_input_shapes  # noqa: PLC0415
    from models.zoo import default_input_shapes, model_path  # noqa: PLC0415
    from passes.manager import PassContext, PassManager  # noqa: PLC0415

    shapes = default_input_shapes(name)
    model = io.load(model_path(name))
    fix_input_shapes(model, shapes)
    folded = PassManager("fold", verify="off", context=PassContext(input_shapes=shapes)).run(model).model
    return folded, shapes
