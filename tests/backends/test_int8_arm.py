"""Specification of int8 on aarch64: the lowered QDQ model cross-compiled for arm-a72 (NEON) and
arm-a55 (+dotprod), run under qemu-aarch64-static, gives bit for bit the integers the host library
computes (the aarch64 build computes int8 x int8, the host uint8 x int8: the same numbers).

Needs tools/setup_arm.sh; skips, saying what is missing, without. No latency is taken from qemu.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from test_int8_lowering import qdq_model

from backends import compile_model
from backends.arm_toolchain import find_toolchain, run_under_qemu
from ir import runtime

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def host_outputs(tmp_path_factory):
    from backends.tvm_build import import_tvm, run_library  # noqa: PLC0415

    model = ir.serde.deserialize_model(qdq_model())
    result = compile_model(model, "llvm", tmp_path_factory.mktemp("host"), name="qdq")
    assert result.integer.integer_ops == 4
    return run_library(import_tvm(), result.library, list(runtime.generate_inputs(model, seed=0).values()))


@pytest.mark.parametrize("target", ["arm-a72", "arm-a55"])
def test_int8_library_under_qemu_is_bit_exact_with_the_host(target, host_outputs, tmp_path):
    toolchain = find_toolchain()
    if not toolchain.can_run:
        pytest.skip(f"aarch64 emulation unavailable (run tools/setup_arm.sh): missing {'; '.join(toolchain.missing)}")
    model = ir.serde.deserialize_model(qdq_model())
    result = compile_model(model, target, tmp_path, name="qdq")
    assert (result.integer.integer_ops, result.integer.float_ops) == (4, 0)
    assert result.check.rule == "int8" and result.check.passed, result.notes
    outputs = run_under_qemu(toolchain, tmp_path, result.library, list(runtime.generate_inputs(model, seed=0).values()))
    for host, emulated in zip(host_outputs, outputs):
        assert emulated.dtype == host.dtype
        np.testing.assert_array_equal(emulated, host)
