"""Gives every BatchNormalization running statistics measured on data, as training would have.

Why: with random weights, BN statistics that do not match the activations let errors compound with
depth (a random ResNet-50 with guessed statistics ends with activations near 100). Training sets the
running statistics to the statistics of the data the layer sees, so this module does the same.

Rules:
- The data is ``CALIBRATION_IMAGES`` standard-normal images (enough of them that the last feature
  map still gives ``MIN_POSITIONS`` samples per channel), drawn from the builder's generator, so the
  result is deterministic for a seed.
- Statistics come from one ONNX Runtime run of a *training-mode* copy of the graph: each BN is
  replaced by ``MeanVarianceNormalization`` over (N, H, W) followed by gamma and beta, i.e. BN with
  batch statistics. That copy holds only the nodes that feed a BN; each BN input gets in-graph
  ``ReduceMean`` outputs for E[x] and E[x^2], so only per-channel vectors leave the session.
- The running statistics written are the measured ones with the jitter of a running average:
  running_mean = mean + N(0, 0.05) * std, running_var = var * U(0.9, 1.1).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from models.graph_builder import IR_VERSION, OPSET, GraphBuilder, add_initializers

MIN_POSITIONS = 49
MAX_CALIBRATION_IMAGES = 16


def calibrate_batch_norms(b: GraphBuilder, channels: int, image_size: int) -> None:
    """Measures each BN's input statistics on random images and writes them as running statistics."""
    bn_nodes = [node for node in b.nodes if node.op_type == "BatchNormalization"]
    if not bn_nodes:
        return
    last_side = image_size // 32
    images = min(MAX_CALIBRATION_IMAGES, max(1, math.ceil(MIN_POSITIONS / last_side**2)))
    data = b.draw_normal((images, channels, image_size, image_size), 1.0)
    graph = _training_mode_graph(b, bn_nodes, channels, image_size)
    session = _session(graph)
    results = session.run(None, {"input": data})
    for node, mean, square in zip(bn_nodes, results[0::2], results[1::2]):
        var = np.maximum(square.astype(np.float64) - mean.astype(np.float64) ** 2, 1e-6)
        running_mean = mean + b.draw_normal(len(mean), 0.05) * np.sqrt(var)
        running_var = var * b.draw_uniform(len(var), 0.9, 1.1)
        b.replace_constant(node.input[3], running_mean.astype(np.float32))
        b.replace_constant(node.input[4], running_var.astype(np.float32))


def _training_mode_graph(
    b: GraphBuilder, bn_nodes: list[onnx.NodeProto], channels: int, image_size: int
) -> onnx.GraphProto:
    last_bn_output = bn_nodes[-1].output[0]
    nodes: list[onnx.NodeProto] = []
    extra: dict[str, np.ndarray] = {}
    outputs: list[onnx.ValueInfoProto] = []
    for node in b.nodes:
        if node.op_type != "BatchNormalization":
            nodes.append(node)
            continue
        x, gamma, beta = node.input[:3]
        nodes += _statistics_nodes(node.name, x)
        outputs += [
            helper.make_tensor_value_info(f"{node.name}/calibration_{stat}", TensorProto.FLOAT, None)
            for stat in ("mean", "square")
        ]
        gamma_c, beta_c = f"{node.name}/calibration_gamma", f"{node.name}/calibration_beta"
        extra[gamma_c] = b.initializers[gamma].reshape(-1, 1, 1)
        extra[beta_c] = b.initializers[beta].reshape(-1, 1, 1)
        normalized = f"{node.name}/calibration_normalized"
        scaled = f"{node.name}/calibration_scaled"
        nodes += [
            helper.make_node("MeanVarianceNormalization", [x], [normalized], axes=[0, 2, 3]),
            helper.make_node("Mul", [normalized, gamma_c], [scaled]),
            helper.make_node("Add", [scaled, beta_c], [node.output[0]]),
        ]
        if node.output[0] == last_bn_output:
            break
    used = {name for node in nodes for name in node.input}
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, image_size, image_size])
    graph = helper.make_graph(nodes, "bn_calibration", [image], outputs)
    add_initializers(graph, b.initializers, [name for name in b.initializers if name in used])
    add_initializers(graph, extra, extra)
    return graph


def _statistics_nodes(scope: str, x: str) -> list[onnx.NodeProto]:
    square = f"{scope}/calibration_x2"
    return [
        helper.make_node("ReduceMean", [x], [f"{scope}/calibration_mean"], axes=[0, 2, 3], keepdims=0),
        helper.make_node("Mul", [x, x], [square]),
        helper.make_node("ReduceMean", [square], [f"{scope}/calibration_square"], axes=[0, 2, 3], keepdims=0),
    ]


def _session(graph: onnx.GraphProto) -> ort.InferenceSession:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
