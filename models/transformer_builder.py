"""A small post-LN Transformer encoder, written as ``torch.onnx.export`` (opset 17) writes one.

Rules:
- Input ``[batch, SEQ_LEN, D_MODEL]`` float embeddings, output the same shape; the image size does not
  apply. ``LAYERS`` layers of ``x = LN(x + MHA(x)); x = LN(x + MLP(x))`` (``norm_first=False``).
- Attention is spelled out: ``MatMul`` + ``Add`` projections, ``Reshape`` to ``[0, S, H, Dh]`` (0 copies
  the batch dimension, so a symbolic batch works), ``Transpose``, ``MatMul`` scores, ``Mul`` by
  ``1/sqrt(Dh)``, ``Softmax(axis=-1)``, ``MatMul`` with V, ``Transpose`` and ``Reshape`` back.
- The MLP's GELU is the exact erf form ``x * 0.5 * (1 + Erf(x / sqrt(2)))``: the ``Gelu`` op needs
  opset 20, and this is the pattern a GELU-fusion pass looks for.
- Projection weights are stored ``[in, out]`` (the MatMul operand) and drawn N(0, 1/in); LayerNorm
  gamma ~ U(0.8, 1.2), beta ~ N(0, 0.05); biases N(0, 0.02).
"""

from __future__ import annotations

import math

import numpy as np

from models.graph_builder import GraphBuilder

LAYERS = 2
D_MODEL = 128
HEADS = 4
FF_DIM = 512
SEQ_LEN = 32


def transformer_encoder(b: GraphBuilder) -> str:
    x = "input"
    for layer in range(LAYERS):
        scope = f"layers.{layer}"
        attended = _self_attention(b, x, f"{scope}.self_attn")
        x = _layer_norm(b, b.node("Add", [x, attended], f"{scope}.add1"), f"{scope}.norm1")
        x = _layer_norm(b, b.node("Add", [x, _mlp(b, x, scope)], f"{scope}.add2"), f"{scope}.norm2")
    return x


def _dense(b: GraphBuilder, x: str, in_features: int, out_features: int, scope: str) -> str:
    weight = b.normal(f"{scope}.weight", (in_features, out_features), 1.0 / math.sqrt(in_features))
    bias = b.normal(f"{scope}.bias", (out_features,), 0.02)
    return b.node("Add", [b.node("MatMul", [x, weight], scope), bias], scope)


def _layer_norm(b: GraphBuilder, x: str, scope: str) -> str:
    gamma = b.uniform(f"{scope}.weight", (D_MODEL,), 0.8, 1.2)
    beta = b.normal(f"{scope}.bias", (D_MODEL,), 0.05)
    return b.node("LayerNormalization", [x, gamma, beta], scope, axis=-1, epsilon=1e-5)


def _self_attention(b: GraphBuilder, x: str, scope: str) -> str:
    head_dim = D_MODEL // HEADS
    split_shape = b.constant(f"{scope}.split_shape", np.array([0, SEQ_LEN, HEADS, head_dim], dtype=np.int64))
    merge_shape = b.constant(f"{scope}.merge_shape", np.array([0, SEQ_LEN, D_MODEL], dtype=np.int64))

    def heads(name: str, perm: list[int]) -> str:
        projected = _dense(b, x, D_MODEL, D_MODEL, f"{scope}.{name}_proj")
        split = b.node("Reshape", [projected, split_shape], f"{scope}.{name}_split")
        return b.node("Transpose", [split], f"{scope}.{name}_heads", perm=perm)

    query = heads("q", [0, 2, 1, 3])  # [B, H, S, Dh]
    key_t = heads("k", [0, 2, 3, 1])  # [B, H, Dh, S]
    value = heads("v", [0, 2, 1, 3])
    scale = b.constant(f"{scope}.scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    scores = b.node("Mul", [b.node("MatMul", [query, key_t], f"{scope}.scores"), scale], f"{scope}.scores")
    weights = b.node("Softmax", [scores], f"{scope}.softmax", axis=-1)
    context = b.node("MatMul", [weights, value], f"{scope}.context")
    merged = b.node("Transpose", [context], f"{scope}.context", perm=[0, 2, 1, 3])
    merged = b.node("Reshape", [merged, merge_shape], f"{scope}.merge")
    return _dense(b, merged, D_MODEL, D_MODEL, f"{scope}.out_proj")


def _mlp(b: GraphBuilder, x: str, scope: str) -> str:
    hidden = _dense(b, x, D_MODEL, FF_DIM, f"{scope}.linear1")
    hidden = _gelu(b, hidden, f"{scope}.gelu")
    return _dense(b, hidden, FF_DIM, D_MODEL, f"{scope}.linear2")


def _gelu(b: GraphBuilder, x: str, scope: str) -> str:
    inv_sqrt2 = b.constant(f"{scope}.inv_sqrt2", np.array(1 / math.sqrt(2), dtype=np.float32))
    one = b.constant(f"{scope}.one", np.array(1.0, dtype=np.float32))
    half = b.constant(f"{scope}.half", np.array(0.5, dtype=np.float32))
    erf = b.node("Erf", [b.node("Mul", [x, inv_sqrt2], f"{scope}.scale")], scope)
    gate = b.node("Add", [erf, one], scope)
    return b.node("Mul", [b.node("Mul", [x, half], f"{scope}.half"), gate], scope)
