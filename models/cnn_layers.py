"""Convolution layers with eval-mode BatchNormalization, written as a PyTorch export would write them.

Rules for the random weights:
- Conv weights are He-normal: ``std = sqrt(2 / fan_in)`` with ``fan_in = in_channels / groups * k * k``;
  conv biases (VGG only) are PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
- BatchNormalization: gamma ~ U(0.8, 1.2) times ``gamma_scale`` (the last BN of a residual branch uses
  a small ``gamma_scale``, as in trained ResNets, so the residual stream grows slowly), beta ~
  N(0, 0.05). Running statistics are placeholders here (mean 0, var 1); ``bn_calibration`` replaces
  them with statistics measured on data, as training would have.
- ReLU6 is ``Clip(x, 0, 6)`` with min/max initializers, as PyTorch exports it.
- Linear layers are ``Gemm(transB=1)`` with PyTorch's default U(-1/sqrt(in), 1/sqrt(in)) weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

from models.graph_builder import GraphBuilder

Activation = Literal["relu", "relu6", None]


@dataclasses.dataclass(frozen=True)
class Feature:
    """A value in the graph under construction: its name and its channel (or feature) count."""

    name: str
    channels: int


def image_input(channels: int = 3) -> Feature:
    return Feature("input", channels)


def conv_bn(
    b: GraphBuilder,
    x: Feature,
    out_channels: int,
    kernel: int,
    scope: str,
    *,
    stride: int = 1,
    groups: int = 1,
    act: Activation = "relu",
    conv_bias: bool = False,
    gamma_scale: float = 1.0,
    bn_scope: str | None = None,
) -> Feature:
    """Conv (padding k//2) -> BatchNormalization -> optional activation."""
    fan_in = x.channels // groups * kernel * kernel
    weight_shape = (out_channels, x.channels // groups, kernel, kernel)
    inputs = [x.name, b.normal(f"{scope}.weight", weight_shape, math.sqrt(2.0 / fan_in))]
    if conv_bias:
        inputs.append(b.uniform(f"{scope}.bias", (out_channels,), -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
    pad = kernel // 2
    y = b.node(
        "Conv", inputs, scope,
        kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, group=groups, dilations=[1, 1],
    )
    y = batch_norm(b, Feature(y, out_channels), scope=bn_scope or f"{scope}_bn", gamma_scale=gamma_scale)
    return activation(b, y, act, scope)


def batch_norm(b: GraphBuilder, x: Feature, *, scope: str, gamma_scale: float = 1.0) -> Feature:
    channels = x.channels
    inputs = [
        x.name,
        b.uniform(f"{scope}.weight", (channels,), 0.8 * gamma_scale, 1.2 * gamma_scale),
        b.normal(f"{scope}.bias", (channels,), 0.05),
        b.constant(f"{scope}.running_mean", np.zeros(channels, dtype=np.float32)),
        b.constant(f"{scope}.running_var", np.ones(channels, dtype=np.float32)),
    ]
    return Feature(b.node("BatchNormalization", inputs, scope, epsilon=1e-5, momentum=0.9), channels)


def activation(b: GraphBuilder, x: Feature, act: Activation, scope: str) -> Feature:
    if act is None:
        return x
    if act == "relu":
        return Feature(b.node("Relu", [x.name], scope), x.channels)
    if act == "relu6":
        low = b.constant(f"{scope}.clip_min", np.array(0.0, dtype=np.float32))
        high = b.constant(f"{scope}.clip_max", np.array(6.0, dtype=np.float32))
        return Feature(b.node("Clip", [x.name, low, high], scope), x.channels)
    raise ValueError(f"unknown activation: {act}")


def add(b: GraphBuilder, x: Feature, y: Feature, scope: str) -> Feature:
    return Feature(b.node("Add", [x.name, y.name], scope), x.channels)


def relu(b: GraphBuilder, x: Feature, scope: str) -> Feature:
    return activation(b, x, "relu", scope)


def max_pool(b: GraphBuilder, x: Feature, kernel: int, stride: int, pad: int, scope: str) -> Feature:
    y = b.node("MaxPool", [x.name], scope, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    return Feature(y, x.channels)


def average_pool(b: GraphBuilder, x: Feature, kernel: int, scope: str) -> Feature:
    y = b.node("AveragePool", [x.name], scope, kernel_shape=[kernel, kernel], strides=[kernel, kernel])
    return Feature(y, x.channels)


def global_pool_flatten(b: GraphBuilder, x: Feature, scope: str) -> Feature:
    pooled = b.node("GlobalAveragePool", [x.name], scope)
    return Feature(b.node("Flatten", [pooled], scope, axis=1), x.channels)


def flatten(b: GraphBuilder, x: Feature, spatial: int, scope: str) -> Feature:
    """Flattens ``[N, C, H, W]`` (``spatial = H * W``) to ``[N, C * H * W]``, channel-major."""
    return Feature(b.node("Flatten", [x.name], scope, axis=1), x.channels * spatial)


def linear(b: GraphBuilder, x: Feature, out_features: int, scope: str) -> Feature:
    bound = 1.0 / math.sqrt(x.channels)
    weight = b.uniform(f"{scope}.weight", (out_features, x.channels), -bound, bound)
    bias = b.uniform(f"{scope}.bias", (out_features,), -bound, bound)
    return Feature(b.node("Gemm", [x.name, weight, bias], scope, alpha=1.0, beta=1.0, transB=1), out_features)
