"""Convolution layers with eval-mode BatchNormalization, written as a PyTorch export would write them.

Rules for the random weights (so that a 50-layer network stays in a sane numeric range):
- Conv weights are He-normal: ``std = sqrt(2 / fan_in)`` with ``fan_in = in_channels / groups * k * k``.
- Each ``Feature`` carries an estimate of its second moment ``m2 = E[x^2]``. A He conv maps ``m2``
  to an output variance of ``2 * m2``; the BatchNormalization after it gets running variances of
  that size times U(0.7, 1.3) and running means of N(0, 0.1) standard deviations, i.e. plausible
  statistics of the data the network actually sees, so BN output is roughly ``gamma * N(0, 1)``.
- gamma ~ U(0.8, 1.2) times ``gamma_scale`` (residual branches use a small ``gamma_scale``, as trained
  ResNets do, so the residual stream grows slowly), beta ~ N(0, 0.05).
- ReLU halves ``m2``; ReLU6 is ``Clip(x, 0, 6)`` with min/max initializers, as PyTorch exports it.
- Linear layers are ``Gemm(transB=1)`` with the PyTorch default U(-1/sqrt(in), 1/sqrt(in)) weights.
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
    """A feature map in the graph under construction: value name, channel count, estimated E[x^2]."""

    name: str
    channels: int
    m2: float


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
    weight = b.normal(f"{scope}.weight", (out_channels, x.channels // groups, kernel, kernel), math.sqrt(2.0 / fan_in))
    inputs = [x.name, weight]
    if conv_bias:
        inputs.append(b.uniform(f"{scope}.bias", (out_channels,), -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
    pad = kernel // 2
    y = b.node(
        "Conv", inputs, scope,
        kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, group=groups, dilations=[1, 1],
    )
    y = batch_norm(b, y, out_channels, variance=2.0 * x.m2, scope=bn_scope or f"{scope}_bn", gamma_scale=gamma_scale)
    return activation(b, Feature(y, out_channels, m2=gamma_scale**2), act, scope)


def batch_norm(b: GraphBuilder, x: str, channels: int, *, variance: float, scope: str, gamma_scale: float = 1.0) -> str:
    gamma = b.uniform(f"{scope}.weight", (channels,), 0.8 * gamma_scale, 1.2 * gamma_scale)
    beta = b.normal(f"{scope}.bias", (channels,), 0.05)
    mean = b.normal(f"{scope}.running_mean", (channels,), 0.1 * math.sqrt(variance))
    var = b.uniform(f"{scope}.running_var", (channels,), 0.7 * variance, 1.3 * variance)
    return b.node("BatchNormalization", [x, gamma, beta, mean, var], scope, epsilon=1e-5, momentum=0.9)


def activation(b: GraphBuilder, x: Feature, act: Activation, scope: str) -> Feature:
    if act is None:
        return x
    if act == "relu":
        return Feature(b.node("Relu", [x.name], scope), x.channels, x.m2 / 2)
    if act == "relu6":
        low = b.constant(f"{scope}.clip_min", np.array(0.0, dtype=np.float32))
        high = b.constant(f"{scope}.clip_max", np.array(6.0, dtype=np.float32))
        return Feature(b.node("Clip", [x.name, low, high], scope), x.channels, x.m2 / 2)
    raise ValueError(f"unknown activation: {act}")


def add(b: GraphBuilder, x: Feature, y: Feature, scope: str) -> Feature:
    return Feature(b.node("Add", [x.name, y.name], scope), x.channels, x.m2 + y.m2)


def relu(b: GraphBuilder, x: Feature, scope: str) -> Feature:
    return activation(b, x, "relu", scope)


def max_pool(b: GraphBuilder, x: Feature, kernel: int, stride: int, pad: int, scope: str) -> Feature:
    y = b.node("MaxPool", [x.name], scope, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    return Feature(y, x.channels, x.m2)


def average_pool(b: GraphBuilder, x: Feature, kernel: int, scope: str) -> Feature:
    y = b.node("AveragePool", [x.name], scope, kernel_shape=[kernel, kernel], strides=[kernel, kernel])
    return Feature(y, x.channels, x.m2)


def global_pool_flatten(b: GraphBuilder, x: Feature, scope: str) -> Feature:
    pooled = b.node("GlobalAveragePool", [x.name], scope)
    return Feature(b.node("Flatten", [pooled], scope, axis=1), x.channels, x.m2)


def flatten(b: GraphBuilder, x: Feature, features: int, scope: str) -> Feature:
    return Feature(b.node("Flatten", [x.name], scope, axis=1), features, x.m2)


def linear(b: GraphBuilder, x: Feature, out_features: int, scope: str) -> Feature:
    bound = 1.0 / math.sqrt(x.channels)
    weight = b.uniform(f"{scope}.weight", (out_features, x.channels), -bound, bound)
    bias = b.uniform(f"{scope}.bias", (out_features,), -bound, bound)
    y = b.node("Gemm", [x.name, weight, bias], scope, alpha=1.0, beta=1.0, transB=1)
    # U(-a, a) has variance a^2 / 3, so the output variance is m2 / 3.
    return Feature(y, out_features, x.m2 / 3)
