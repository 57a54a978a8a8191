"""x86 VNNI dot product for MetaSchedule, with the operand types that TVM 0.27's LLVM declares.

TVM 0.27 registers ``dot_16x4_vnni`` (MetaSchedule's default x86 rules tensorize uint8 x int8
reductions with it on AVX-512 VNNI targets) as ``llvm.x86.avx512.vpdpbusd.512`` on three
``int32x16`` operands. The LLVM inside the wheel declares that intrinsic as (``<16 x i32>``,
``<64 x i8>``, ``<64 x i8>``), so every tensorized candidate fails LLVM's module verification and
MetaSchedule keeps only schedules that did not tensorize (scalar int8 loops, slower than float).

``register()`` replaces the implementation under the same name (the rules refer to it by name): the
same description (C[16] += A[4] . B[16, 4], uint8 x int8 -> int32), with the activations broadcast
and both operands passed as ``int8x64``. Call it before tasks are extracted.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.s_tir.tensor_intrin import x86
from tvm.script import tirx as T

NAME = x86.VNNI_DOT_16x4_INTRIN  # "dot_16x4_vnni"


@T.prim_func(s_tir=True)
def _dot_16x4_vnni(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        A_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        A_i8x64 = T.reinterpret(T.broadcast(A_i32, 16), dtype="int8x64")
        B_i8x64 = B.vload([0, 0], dtype="int8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"),
            A_i8x64,
            B_i8x64,
            dtype="int32x16",
        )


_registered = False


def register() -> None:
    """Register the corrected ``dot_16x4_vnni`` (once per process)."""
    global _registered
    if not _registered:
        TensorIntrin.register(NAME, x86.dot_product_16x4_u8i8i32_desc, _dot_16x4_vnni, override=True)
        _registered = True
