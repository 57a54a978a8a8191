"""ResNet-18/50, MobileNetV2 and VGG-16 (with BatchNormalization), laid out like torchvision's.

Rules:
- Topology, channel counts and strides follow torchvision (ResNet-50 is v1.5: the stride sits on the
  3x3 conv; VGG-16 is ``vgg16_bn``: conv with bias, then BN). Initializer names follow torchvision's
  ``state_dict``; MobileNetV2 uses ``features.<i>.<j>`` like the original.
- Input ``[batch, 3, S, S]``, output logits ``[batch, 1000]`` (no Softmax), S a multiple of 32.
- VGG's ``AdaptiveAvgPool2d((7, 7))`` exports as an ``AveragePool`` when the S/32 feature map is a
  multiple of 7 (224 -> no pool at all); for other sizes the classifier reads the feature map as it is
  (``512 * (S/32)^2`` inputs), which keeps small test models small.
"""

from __future__ import annotations

from models.cnn_layers import (
    Feature,
    image_input,
    add,
    average_pool,
    conv_bn,
    flatten,
    global_pool_flatten,
    linear,
    max_pool,
    relu,
)
from models.graph_builder import GraphBuilder

NUM_CLASSES = 1000
# A trained network's last BN in a residual branch has small gammas; this keeps the stream bounded.
RESIDUAL_GAMMA = 0.5


def resnet18(b: GraphBuilder, image_size: int) -> Feature:
    return _resnet(b, block=_basic_block, layers=(2, 2, 2, 2), expansion=1)


def resnet50(b: GraphBuilder, image_size: int) -> Feature:
    return _resnet(b, block=_bottleneck, layers=(3, 4, 6, 3), expansion=4)


def _resnet(b: GraphBuilder, *, block, layers: tuple[int, ...], expansion: int) -> Feature:
    x = conv_bn(b, image_input(), 64, 7, "conv1", stride=2, bn_scope="bn1")
    x = max_pool(b, x, 3, 2, 1, "maxpool")
    for stage, (blocks, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for index in range(blocks):
            stride = 2 if stage > 1 and index == 0 else 1
            x = block(b, x, width, stride, expansion, f"layer{stage}.{index}")
    x = global_pool_flatten(b, x, "avgpool")
    return linear(b, x, NUM_CLASSES, "fc")


def _basic_block(b: GraphBuilder, x: Feature, width: int, stride: int, expansion: int, scope: str) -> Feature:
    y = conv_bn(b, x, width, 3, f"{scope}.conv1", stride=stride, bn_scope=f"{scope}.bn1")
    y = conv_bn(b, y, width, 3, f"{scope}.conv2", act=None, gamma_scale=RESIDUAL_GAMMA, bn_scope=f"{scope}.bn2")
    return relu(b, add(b, _shortcut(b, x, width * expansion, stride, scope), y, f"{scope}.add"), f"{scope}.relu")


def _bottleneck(b: GraphBuilder, x: Feature, width: int, stride: int, expansion: int, scope: str) -> Feature:
    y = conv_bn(b, x, width, 1, f"{scope}.conv1", bn_scope=f"{scope}.bn1")
    y = conv_bn(b, y, width, 3, f"{scope}.conv2", stride=stride, bn_scope=f"{scope}.bn2")
    y = conv_bn(
        b, y, width * expansion, 1, f"{scope}.conv3", act=None, gamma_scale=RESIDUAL_GAMMA, bn_scope=f"{scope}.bn3"
    )
    return relu(b, add(b, _shortcut(b, x, width * expansion, stride, scope), y, f"{scope}.add"), f"{scope}.relu")


def _shortcut(b: GraphBuilder, x: Feature, channels: int, stride: int, scope: str) -> Feature:
    if stride == 1 and x.channels == channels:
        return x
    return conv_bn(
        b, x, channels, 1, f"{scope}.downsample.0", stride=stride, act=None, bn_scope=f"{scope}.downsample.1"
    )


# (expand ratio t, output channels c, repeats n, first stride s), from the MobileNetV2 paper.
MOBILENETV2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def mobilenetv2(b: GraphBuilder, image_size: int) -> Feature:
    x = conv_bn(b, image_input(), 32, 3, "features.0.0", stride=2, act="relu6", bn_scope="features.0.1")
    index = 1
    for expand, channels, repeats, first_stride in MOBILENETV2_SETTINGS:
        for repeat in range(repeats):
            x = _inverted_residual(b, x, channels, first_stride if repeat == 0 else 1, expand, f"features.{index}")
            index += 1
    x = conv_bn(b, x, 1280, 1, f"features.{index}.0", act="relu6", bn_scope=f"features.{index}.1")
    x = global_pool_flatten(b, x, "avgpool")
    return linear(b, x, NUM_CLASSES, "classifier.1")


def _inverted_residual(b: GraphBuilder, x: Feature, channels: int, stride: int, expand: int, scope: str) -> Feature:
    hidden = x.channels * expand
    y, layer = x, 0
    if expand != 1:
        y = conv_bn(b, y, hidden, 1, f"{scope}.conv.{layer}.0", act="relu6", bn_scope=f"{scope}.conv.{layer}.1")
        layer += 1
    y = conv_bn(
        b, y, hidden, 3, f"{scope}.conv.{layer}.0", stride=stride, groups=hidden, act="relu6",
        bn_scope=f"{scope}.conv.{layer}.1",
    )
    use_residual = stride == 1 and x.channels == channels
    y = conv_bn(
        b, y, channels, 1, f"{scope}.conv.{layer + 1}", act=None,
        gamma_scale=RESIDUAL_GAMMA if use_residual else 1.0, bn_scope=f"{scope}.conv.{layer + 2}",
    )
    return add(b, x, y, f"{scope}.add") if use_residual else y


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(b: GraphBuilder, image_size: int) -> Feature:
    x, index = image_input(), 0
    for item in VGG16_CONFIG:
        if item == "M":
            x = max_pool(b, x, 2, 2, 0, f"features.{index}")
            index += 1
        else:
            x = conv_bn(b, x, item, 3, f"features.{index}", conv_bias=True, bn_scope=f"features.{index + 1}")
            index += 3  # conv, bn, relu
    side = image_size // 32
    if side % 7 == 0 and side > 7:
        x = average_pool(b, x, side // 7, "avgpool")
        side = 7
    x = flatten(b, x, side * side, "flatten")
    x = relu(b, linear(b, x, 4096, "classifier.0"), "classifier.1")
    x = relu(b, linear(b, x, 4096, "classifier.3"), "classifier.4")
    return linear(b, x, NUM_CLASSES, "classifier.6")
