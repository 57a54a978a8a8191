"""Specification of ir.cost: parameters, MACs, FLOPs, weight bytes and activation memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import cost

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
OPSET = '<ir_version: 8, opset_import: ["" : 17]>'


def model(text: str, **weights: np.ndarray) -> ir.Model:
    """A model from ONNX text; ``weights`` give initializer values by name (the text declares them)."""
    result = ir.from_onnx_text(f"{OPSET}\n{text}")
    for name, array in weights.items():
        result.graph.initializers[name].const_value = ir.tensor(array.astype(np.float32), name=name)
    return result


def zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def only_node(summary: cost.CostSummary, op_type: str) -> cost.NodeCost:
    (found,) = [c for c in summary.per_node if c.op_type == op_type]
    return found


# --- convolutions ------------------------------------------------------------------------------


def test_conv_macs_params_and_bytes_are_the_hand_computed_numbers():
    conv = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}, float[4] b = {0.0}> {
            y = Conv <pads = [1,1,1,1]> (x, w, b)
        }""",
        w=zeros(4, 3, 3, 3),
        b=zeros(4),
    )
    summary = cost.analyze(conv)
    # 4 output channels * 8*8 positions, each a dot product over 3 channels * 3*3 taps.
    assert summary.macs == 4 * 8 * 8 * (3 * 3 * 3) == 6912
    assert summary.params == 4 * 3 * 3 * 3 + 4 == 112
    assert summary.weight_bytes == 112 * 4
    assert summary.flops == 4 * 8 * 8  # the bias add, one per output element
    assert summary.uncounted_nodes == 0
    node = only_node(summary, "Conv")
    assert (node.params, node.macs, node.output_bytes) == (112, 6912, 4 * 8 * 8 * 4)


def test_conv_strides_and_dilations_enter_through_the_output_shape():
    conv = model(
        """g (float[1,3,10,10] x) => (float[1,8,3,3] y) <float[8,3,3,3] w = {0.0}> {
            y = Conv <strides = [2,2], dilations = [2,2]> (x, w)
        }""",
        w=zeros(8, 3, 3, 3),
    )
    # Dilated kernel spans 5 pixels: (10 - 5) // 2 + 1 = 3 outputs per axis.
    assert cost.analyze(conv).macs == 8 * 3 * 3 * 27 == 1944


@pytest.mark.parametrize(
    ("group", "weight_shape", "expected_macs"),
    [
        (4, (8, 2, 3, 3), 8 * 6 * 6 * (2 * 9)),  # 4 groups of 2 input channels
        (8, (8, 1, 3, 3), 8 * 6 * 6 * 9),  # depthwise
    ],
)
def test_grouped_conv_reads_only_its_group_of_input_channels(group, weight_shape, expected_macs):
    dims = ",".join(map(str, weight_shape))
    conv = model(
        f"""g (float[1,8,6,6] x) => (float[1,8,6,6] y) <float[{dims}] w = {{0.0}}> {{
            y = Conv <pads = [1,1,1,1], group = {group}> (x, w)
        }}""",
        w=zeros(*weight_shape),
    )
    summary = cost.analyze(conv)
    assert summary.macs == expected_macs
    assert summary.params == int(np.prod(weight_shape))


@pytest.mark.parametrize(("group", "weight_shape"), [(1, (4, 2, 3, 3)), (2, (4, 1, 3, 3))])
def test_conv_transpose_scatters_each_input_element_over_its_group_outputs(group, weight_shape):
    dims = ",".join(map(str, weight_shape))
    conv = model(
        f"""g (float[1,4,5,5] x) => (float[1,2,11,11] y) <float[{dims}] w = {{0.0}}> {{
            y = ConvTranspose <strides = [2,2], group = {group}> (x, w)
        }}""",
        w=zeros(*weight_shape),
    )
    # 4 input channels * 5*5 positions, each multiplied into (M/group) * 3*3 outputs.
    assert cost.analyze(conv).macs == 4 * 25 * weight_shape[1] * 9


# --- matrix products ---------------------------------------------------------------------------


def test_gemm_counts_m_k_n_and_its_bias():
    gemm = model(
        """g (float[2,16] a) => (float[2,8] y) <float[8,16] w = {0.0}, float[8] c = {0.0}> {
            y = Gemm <transB = 1> (a, w, c)
        }""",
        w=zeros(8, 16),
        c=zeros(8),
    )
    summary = cost.analyze(gemm)
    assert summary.macs == 2 * 16 * 8
    assert summary.params == 8 * 16 + 8
    assert summary.flops == 2 * 8


def test_gemm_transposed_a():
    gemm = model(
        """g (float[16,2] a) => (float[2,8] y) <float[16,8] w = {0.0}> {
            y = Gemm <transA = 1> (a, w)
        }""",
        w=zeros(16, 8),
    )
    assert cost.analyze(gemm).macs == 2 * 16 * 8


def test_matmul_broadcasts_batch_dimensions():
    matmul = model(
        """g (float[2,1,4,5] a, float[3,5,6] b) => (float[2,3,4,6] y) {
            y = MatMul (a, b)
        }"""
    )
    summary = cost.analyze(matmul)
    # Batch 2x3 (broadcast), each a 4x5 @ 5x6 product.
    assert summary.macs == 2 * 3 * 4 * 5 * 6 == 720
    assert summary.params == 0  # both operands are activations


def test_matmul_with_a_vector_operand():
    matmul = model(
        """g (float[5] a) => (float[6] y) <float[5,6] w = {0.0}> {
            y = MatMul (a, w)
        }""",
        w=zeros(5, 6),
    )
    summary = cost.analyze(matmul)
    assert (summary.macs, summary.params) == (30, 30)


def test_shared_weight_counts_once_in_the_total_and_in_each_reader():
    shared = model(
        """g (float[1,4] a, float[1,4] b) => (float[1,3] y, float[1,3] z) <float[4,3] w = {0.0}> {
            y = MatMul (a, w)
            z = MatMul (b, w)
        }""",
        w=zeros(4, 3),
    )
    summary = cost.analyze(shared)
    assert summary.params == 12
    assert [c.params for c in summary.per_node] == [12, 12]


# --- other arithmetic --------------------------------------------------------------------------


def test_pooling_counts_kernel_ops_per_output_and_elementwise_one_per_element():
    pooled = model(
        """g (float[1,2,4,4] x) => (float[1,2,2,2] y, float[1,2,1,1] z) {
            y = MaxPool <kernel_shape = [2,2], strides = [2,2]> (x)
            r = Relu (x)
            z = GlobalAveragePool (r)
        }"""
    )
    summary = cost.analyze(pooled)
    assert only_node(summary, "MaxPool").flops == 8 * 4
    assert only_node(summary, "Relu").flops == 32
    assert only_node(summary, "GlobalAveragePool").flops == 32  # one per input element
    assert summary.macs == 0
    assert summary.flops == 32 + 32 + 32


def test_data_movement_costs_nothing_and_int64_shapes_are_not_parameters():
    reshape = model(
        """g (float[2,6] x) => (float[3,4] y) <int64[2] shape = {3, 4}> {
            y = Reshape (x, shape)
        }"""
    )
    summary = cost.analyze(reshape)
    assert (summary.params, summary.macs, summary.flops, summary.uncounted_nodes) == (0, 0, 0, 0)


# --- weights computed from constants -----------------------------------------------------------


def test_weights_decoded_in_the_graph_count_at_their_stored_size():
    quantized = ir.from_onnx_text(
        f"""{OPSET}
        g (float[1,3,8,8] x) => (float[1,4,8,8] y) <int8[4,3,3,3] wq = {{0}}, float[4] scale = {{0.1, 0.1, 0.1, 0.1}}> {{
            w = DequantizeLinear <axis = 0> (wq, scale)
            y = Conv <pads = [1,1,1,1]> (x, w)
        }}"""
    )
    quantized.graph.initializers["wq"].const_value = ir.tensor(np.ones((4, 3, 3, 3), np.int8), name="wq")
    summary = cost.analyze(quantized)
    assert summary.params == 108 and summary.weight_bytes == 108 * 4  # what the Conv reads: float
    assert summary.stored_weight_bytes == 108 + 4 * 4  # what the file holds: int8 plus the scales


def test_stored_size_of_plain_float_weights_is_their_size():
    conv = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
            y = Conv <pads = [1,1,1,1]> (x, w)
        }""",
        w=zeros(4, 3, 3, 3),
    )
    summary = cost.analyze(conv)
    assert summary.stored_weight_bytes == summary.weight_bytes == 108 * 4


def test_constant_of_shape_and_constant_node_outputs_are_weights():
    computed = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <int64[4] wshape = {4, 3, 3, 3}> {
            w = ConstantOfShape <value = float[1] {0.5}> (wshape)
            c = Conv <pads = [1,1,1,1]> (x, w)
            bias = Constant <value = float[4,1,1] {1.0, 2.0, 3.0, 4.0}> ()
            y = Add (c, bias)
        }"""
    )
    summary = cost.analyze(computed)
    assert summary.params == 108 + 4
    assert summary.weight_bytes == (108 + 4) * 4
    assert summary.stored_weight_bytes == 4 * 8 + 4 * 4  # the int64 shape and the Constant's floats
    assert only_node(summary, "ConstantOfShape").constant
    assert only_node(summary, "ConstantOfShape").params == 0  # counted where it is read
    assert only_node(summary, "Conv").params == 108
    assert only_node(summary, "Add").params == 4
    assert summary.macs == 4 * 64 * 27


# --- unknown shapes, custom ops, subgraphs -----------------------------------------------------


def test_unknown_shapes_leave_the_node_uncounted():
    dynamic = model(
        """g (float[N,3,8,8] x) => (float[N,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
            c = Conv <pads = [1,1,1,1]> (x, w)
            y = Relu (c)
        }""",
        w=zeros(4, 3, 3, 3),
    )
    summary = cost.analyze(dynamic)
    assert only_node(summary, "Conv").macs is None
    assert only_node(summary, "Relu").flops is None
    assert summary.uncounted_nodes == 2
    assert summary.macs == 0
    assert summary.params == 108  # weights do not need the activation shapes


def test_custom_ops_are_uncounted_and_keyed_by_domain():
    custom = ir.from_onnx_text(
        """<ir_version: 8, opset_import: ["" : 17, "acme" : 1]>
        g (float[2,3] x) => (float[2,3] y) {
            t = acme.Frobnicate (x)
            y = Relu (t)
        }"""
    )
    summary = cost.analyze(custom)
    assert summary.op_histogram == {"Relu": 1, "acme::Frobnicate": 1}
    assert only_node(summary, "acme::Frobnicate").macs is None
    assert summary.uncounted_nodes == 1


def test_subgraph_nodes_and_weights_are_counted_but_the_if_node_cost_is_not():
    branching = model(
        """g (bool cond, float[2] x) => (float[2] y) <float[2] bias = {0.0, 0.0}> {
            y = If (cond) <
                then_branch = then_g () => (float[2] a) { r = Relu (x)  a = Add (r, bias) },
                else_branch = else_g () => (float[2] b) { t = Neg (x)  b = Abs (t) }
            >
        }""",
        bias=zeros(2),
    )
    summary = cost.analyze(branching)
    assert summary.op_histogram == {"Abs": 1, "Add": 1, "If": 1, "Neg": 1, "Relu": 1}
    assert summary.nodes == 5
    assert [c.op_type for c in summary.per_node] == ["If"]
    assert summary.params == 2  # the bias, read only inside the then-branch
    assert summary.uncounted_nodes == 1


# --- activation memory -------------------------------------------------------------------------


def test_activation_peak_of_a_chain_is_two_live_tensors():
    chain = model(
        """g (float[1,1000] x) => (float[1,1000] y) {
            a = Relu (x)
            b = Neg (a)
            y = Sigmoid (b)
        }"""
    )
    summary = cost.analyze(chain)
    # Each step holds its input and its output (4000 bytes each); the input is freed afterwards.
    assert summary.activation_peak_bytes == 2 * 4000
    assert summary.activation_total_bytes == 4 * 4000


def test_activation_peak_keeps_values_alive_until_their_last_reader():
    branches = model(
        """g (float[1,1000] x) => (float[1,1000] y) {
            a = Relu (x)
            b = Neg (x)
            c = Add (a, b)
            y = Mul (c, x)
        }"""
    )
    summary = cost.analyze(branches)
    # At Add: x (read again by Mul), a, b and c are live together.
    assert summary.activation_peak_bytes == 4 * 4000
    assert summary.activation_total_bytes == 5 * 4000


def test_unread_outputs_are_freed_at_once_and_graph_outputs_kept():
    wasteful = model(
        """g (float[1,1000] x) => (float[1,1000] y, float[1,1000] a) {
            a = Relu (x)
            unused = Neg (x)
            y = Sigmoid (x)
        }"""
    )
    summary = cost.analyze(wasteful)
    # Neg: x + a (graph output, kept) + unused = 3 live; Sigmoid: x + a + y = 3 live.
    assert summary.activation_peak_bytes == 3 * 4000


def test_out_of_order_nodes_are_walked_in_topological_order():
    branches = model(
        """g (float[1,1000] x) => (float[1,1000] y) <float[1,1000] a, float[1,1000] b, float[1,1000] c> {
            a = Relu (x)
            b = Neg (x)
            c = Add (a, b)
            y = Mul (c, x)
        }"""
    )
    for node in list(branches.graph)[:2]:  # Relu and Neg go last: [Add, Mul, Relu, Neg]
        branches.graph.remove(node)
        branches.graph.append(node)
    assert [n.op_type for n in cost.execution_order(branches.graph)] == ["Relu", "Neg", "Add", "Mul"]
    # ONNX shape inference needs ordered nodes, so the shapes come from the declared value_info here.
    summary = cost.analyze(branches, infer_shapes=False)
    assert summary.activation_peak_bytes == 4 * 4000


# --- real model, summary shape -----------------------------------------------------------------


def test_light_resnet50_matches_the_published_resnet50_numbers():
    """Hand reasoning, from the architecture (ResNet-50 v1.5, stride in the 3x3 conv, 224x224):

    conv1 7x7 3->64 at 112x112: 118,013,952 MACs; the 16 bottlenecks (1x1, 3x3, 1x1, plus the
    projection in the first block of each stage) add 3,969,122,304; the 2048x1000 classifier 2,048,000:
    4,089,184,256 MACs (the "4.1 GMACs" quoted for torchvision's resnet50). Weights: conv 23,454,912 +
    fc 2,049,000, and the 53 BatchNorms hold 26,560 channels with 4 tensors each (scale, bias, mean,
    var; torchvision counts only scale and bias, 25,557,032): 25,610,152 parameters. Activation peak:
    inside the first res2 block the block input, the projection conv output and its BatchNorm output
    (256x56x56 floats, 3,211,264 bytes each) are live together: 9,633,792 bytes.
    """
    resnet = ir.load(LIGHT / "light_resnet50.onnx")  # conv weights come from ConstantOfShape nodes
    summary = cost.analyze(resnet)
    assert summary.macs == 4_089_184_256
    assert summary.params == 25_610_152
    assert abs(summary.macs / 4.1e9 - 1) < 0.02
    assert abs(summary.params / 25.5e6 - 1) < 0.02
    assert summary.weight_bytes == 4 * 25_610_152
    assert summary.activation_peak_bytes == 3 * 256 * 56 * 56 * 4
    assert summary.uncounted_nodes == 0
    assert summary.op_histogram["Conv"] == 53
    assert summary.nodes == 415


def test_to_dict_is_json_serializable_and_analysis_changes_no_structure():
    conv = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
            y = Conv <pads = [1,1,1,1]> (x, w)
        }""",
        w=zeros(4, 3, 3, 3),
    )
    nodes_before = [(n.op_type, n.name) for n in conv.graph]
    data = json.loads(json.dumps(cost.analyze(conv).to_dict()))
    assert data["macs"] == 6912
    assert data["per_node"][0]["op_type"] == "Conv"
    assert "per_node" not in cost.analyze(conv).to_dict(per_node=False)
    assert [(n.op_type, n.name) for n in conv.graph] == nodes_before
    assert list(conv.graph.initializers) == ["w"]
