"""What MetaSchedule's default rules make of the int8 lowering's layers, per target.

The design spaces (no tuning, nothing measured) of the hand-written QDQ model's first convolution,
after the lowering, must use the dot-product intrinsics TVM ships: VNNI on x86 with AVX-512 VNNI
(uint8 x int8), sdot on ARM with +dotprod and NEON's int8 dot product otherwise (int8 x int8).
"""

from __future__ import annotations

import re

import onnx_ir as ir
import pytest
from test_int8_lowering import qdq_model

pytestmark = [pytest.mark.tvm, pytest.mark.slow]  # importing tvm.s_tir.tensor_intrin takes 30-110 s here

TARGETS = {
    "x86-vnni": ({"kind": "llvm", "mcpu": "cascadelake", "num-cores": 2}, False, "dot_16x4_vnni"),
    "arm-a55": ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55", "mattr": ["+neon", "+dotprod"], "num-cores": 4}, True, "dot_4x4_i8i8s32_sdot"),
    "arm-a72": ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 4}, True, "dot_4x4_i8i8s32_neon"),
}


def design_spaces(target_dict, signed, layout="NHWC", blocks=None):
    """{conv task name: (tune context, its design spaces)} for the lowered hand-written QDQ model."""
    from backends import tvm_build  # noqa: PLC0415
    from backends.int8_lowering import lower_to_integer  # noqa: PLC0415
    from backends.tuning import _fused  # noqa: PLC0415

    tvm = tvm_build.import_tvm()
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    module = tvm_build.import_onnx(tvm, ir.serde.deserialize_model(qdq_model()), {"x": (1, 8, 8, 8)})
    module, _ = lower_to_integer(tvm, module, [], signed_activations=signed, layout=layout, weight_blocks=blocks)
    target = tvm.target.Target(target_dict)
    spaces = {}
    for task in ms.relax_integration.extract_tasks(_fused(tvm, module, target), target):
        if "conv2d" in task.task_name:
            context = ms.TuneContext(mod=task.dispatched[0], target=target, space_generator="post-order-apply", task_name=task.task_name)
            spaces[task.task_name] = (context, context.space_generator.generate_design_space(context.mod))
    return spaces


def tensorized(target_dict, signed, layout="NHWC", blocks=None):
    """{task name: intrinsics some design space tensorizes with} for the lowered model's conv tasks."""
    found = {}
    for name, (_, spaces) in design_spaces(target_dict, signed, layout, blocks).items():
        traces = "".join(str(s.trace) for s in spaces)
        found[name] = set(re.findall(r'intrin="([^"]+)"', traces)) | set(re.findall(r'ann_val="(dot_[^"]+)"', traces))
    return found


@pytest.mark.parametrize("name", TARGETS)
def test_the_dense_int8_convolution_is_tensorized_with_the_targets_dot_product(name):
    target, signed, intrinsic = TARGETS[name]
    found = tensorized(target, signed)
    dense = [task for task in found if "conv2d_nhwc" in task or ("conv2d" in task and "depthwise" not in task and found[task])]
    assert any(intrinsic in found[task] for task in dense), found


def test_nchw_convolutions_are_not_tensorized():
    target, signed, _ = TARGETS["x86-vnni"]
    assert not any(tensorized(target, signed, layout="NCHW").values())


def test_packed_x86_convolutions_tensorize_with_vnni_and_build():
    """With 16 x 4 weight blocks the VNNI sketches must also survive the postprocessors and LLVM:
    TVM 0.27's own ``dot_16x4_vnni`` fails LLVM's verification (``backends.x86_intrinsics``)."""
    import tvm  # noqa: PLC0415

    from backends import x86_intrinsics  # noqa: PLC0415

    x86_intrinsics.register()
    target, signed, intrinsic = TARGETS["x86-vnni"]
    spaces = design_spaces(target, signed, blocks=(16, 4))
    packed = [name for name in spaces if "packed" in name]
    assert packed, list(spaces)
    context, sketches = spaces[packed[0]]
    built = 0
    for sketch in sketches:
        if intrinsic not in str(sketch.trace):
            continue
        schedule = sketch.copy()
        assert all(postproc.apply(schedule) for postproc in context.space_generator.postprocs)
        assert "vpdpbusd" in tvm.compile(schedule.mod, target=tvm.target.Target(target)).mod.inspect_source("asm")
        built += 1
    assert built
