"""ONNX Runtime's ``com.microsoft::MatMulNBits`` form of a block-wise int4 MatMul weight.

Rules:
- ``Y = A @ dequantize(B)^T`` with B's codes packed along K: input ``B`` is uint8
  ``[N, ceil(K / block_size), block_size / 2]``, two 4-bit codes a byte, the lower K index in the
  low nibble; ``scales`` is float ``[N * n_blocks]`` (n-major). A code ``c`` decodes to
  ``(c - zero_point) * scale``.
- The levels are the symmetric ones the DequantizeLinear form stores (-7..7, zero point 0), stored
  as ``level + 8`` and decoded by the default zero point 8 (no ``zero_points`` input): the same
  integers and scales, only stored differently.
- K not a multiple of ``block_size``: the last block is padded with level 0 (code 8, value 0); the
  ``K`` attribute keeps the true size, so A is not padded.
- Only MatMul with a constant 2-D float32 weight, 4-bit block levels; ``unsupported`` says why any
  other layer keeps the DequantizeLinear form.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

DOMAIN = "com.microsoft"
ZERO_POINT = 8


def unsupported(node: ir.Node, bits: int, per_channel_levels: bool) -> str | None:
    """Why the layer cannot become MatMulNBits, None when it can."""
    if node.op_type != "MatMul":
        return f"{node.op_type} (MatMulNBits replaces MatMul only)"
    if bits != 4 or per_channel_levels:
        return f"bits={bits}{' twn' if per_channel_levels and bits == 2 else ''} (MatMulNBits form is 4-bit block levels only)"
    if node.inputs[0] is None or node.inputs[0].dtype not in (None, ir.DataType.FLOAT):
        return "input A is not float32"
    return None


def pack(q: np.ndarray, scales: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(B uint8 [N, n_blocks, block_size/2], scales float32 [N * n_blocks]) from levels [N, K] in
    -8..7 and scales [N, n_blocks]."""
    n, k = q.shape
    blocks = -(-k // block_size)
    assert scales.shape == (n, blocks), (scales.shape, (n, blocks))
    codes = np.full((n, blocks * block_size), ZERO_POINT, np.uint8)
    codes[:, :k] = (q.astype(np.int16) + ZERO_POINT).astype(np.uint8)
    packed = (codes[:, 0::2] & 0x0F) | ((codes[:, 1::2] & 0x0F) << 4)
    return packed.reshape(n, blocks, block_size // 2).astype(np.uint8), scales.astype(np.float32).reshape(-1)


def unpack(packed: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """The float weight [K, N] a MatMulNBits node computes with (for tests and checks)."""
    n, blocks, half = packed.shape
    codes = np.empty((n, blocks * half * 2), np.int16)
    flat = packed.reshape(n, -1)
    codes[:, 0::2], codes[:, 1::2] = flat & 0x0F, flat >> 4
    block_scales = np.repeat(scales.reshape(n, blocks), half * 2, axis=1)
    return ((codes - ZERO_POINT) * block_scales)[:, :k].T.astype(np.float32)


def replace(writer, node: ir.Node, q: np.ndarray, scales: np.ndarray, block_size: int, base: str) -> None:
    """Replace the MatMul ``node`` (weight levels ``q`` [N, K], ``scales`` [N, n_blocks]) by one
    MatMulNBits node computing the same product."""
    n, k = q.shape
    packed, flat_scales = pack(q, scales, block_size)
    b = writer.constant(f"{base}_nbits", packed)
    s = writer.constant(f"{base}_nbits_scale", flat_scales)
    old = node.outputs[0]
    new = ir.node("MatMulNBits", [node.inputs[0], b, s], domain=DOMAIN, name=writer.fresh(f"{base}_MatMulNBits"),
                  attributes={"K": k, "N": n, "bits": 4, "block_size": block_size})
    new.metadata_props["graphpress.rule"] = writer.tag
    new.outputs[0].dtype = ir.DataType.FLOAT  # T1, as A
    if old.shape is not None:
        new.outputs[0].shape = old.shape
    ir.convenience.replace_nodes_and_values(writer.graph, node, [node], [new], [old], [new.outputs[0]])
    writer.graph.opset_imports.setdefault(DOMAIN, 1)
