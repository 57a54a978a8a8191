"""Specification of the int8 lowering: QDQ Conv/MatMul/Gemm computed in integers by TVM.

The subject is a QDQ model written here layer by layer (uint8 activations with non-zero zero points,
per-channel int8 weights, int32 biases, padding, a depthwise convolution, a MatMul and a Gemm left
with a float output), so every rule of ``backends.integer_semantics`` is exercised; its numpy
reference must agree bit for bit. A ResNet-18 quantized by the ``quantize`` pass must then compute
all its convolutions in integers and stay within one quantization step of ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from backends import integer_semantics as sem

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(7)
S_X, Z_X = np.float32(0.05), 120  # input: uint8 with a zero point far from 0, so padding matters
S_1, Z_1 = np.float32(0.04), 10  # after conv1 + Relu (Relu raises the low end to the zero point)
S_2, Z_2 = np.float32(0.03), 128  # after the depthwise conv
S_3, Z_3 = np.float32(0.02), 100  # after the MatMul


def _weights(shape, axis):
    values = RNG.integers(-127, 128, size=shape).astype(np.int8)
    scales = (RNG.uniform(0.5, 1.5, size=shape[axis]) * 4e-3).astype(np.float32)
    return values, scales


W1, SW1 = _weights((16, 8, 3, 3), 0)
B1 = RNG.integers(-2000, 2000, size=16).astype(np.int32)
W2, SW2 = _weights((16, 1, 3, 3), 0)
B2 = RNG.integers(-500, 500, size=16).astype(np.int32)
W3, SW3 = _weights((256, 12), 1)
B3 = RNG.integers(-3000, 3000, size=12).astype(np.int32)
W4, SW4 = _weights((5, 256), 0)


def qdq_model() -> onnx.ModelProto:
    """x -> Q -> [Conv 3x3 pad 1 + Relu] -> y1 -> [depthwise Conv 3x3 stride 2] -> y2
    -> Flatten -> [MatMul + bias] -> y3; Flatten(y2) -> [Gemm transB, float output] -> y4."""
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def dq(name, values, scale, zero, axis=None):
        kw = {} if axis is None else {"axis": axis}
        nodes.append(helper.make_node("DequantizeLinear", [const(name + "_q", values), const(name + "_s", scale), const(name + "_z", zero)], [name], **kw))
        return name

    def q_dq(src, name, scale, zero):
        s, z = const(name + "_s", np.float32(scale)), const(name + "_z", np.uint8(zero))
        nodes.append(helper.make_node("QuantizeLinear", [src, s, z], [name]))
        nodes.append(helper.make_node("DequantizeLinear", [name, s, z], [name + "_dq"]))
        return name + "_dq"

    x = q_dq("x", "xq", S_X, Z_X)
    w1 = dq("w1", W1, SW1, np.zeros(16, np.int8), axis=0)
    b1 = dq("b1", B1, S_X * SW1, np.zeros(16, np.int32), axis=0)
    nodes += [helper.make_node("Conv", [x, w1, b1], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"])]
    y1 = q_dq("r1", "y1", S_1, Z_1)
    w2 = dq("w2", W2, SW2, np.zeros(16, np.int8), axis=0)
    b2 = dq("b2", B2, S_1 * SW2, np.zeros(16, np.int32), axis=0)
    nodes.append(helper.make_node("Conv", [y1, w2, b2], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=16))
    y2 = q_dq("c2", "y2", S_2, Z_2)
    nodes.append(helper.make_node("Flatten", [y2], ["f"]))
    f = q_dq("f", "fq", S_2, Z_2)
    w3 = dq("w3", W3, SW3, np.zeros(12, np.int8), axis=1)
    b3 = dq("b3", B3, S_2 * SW3, np.zeros(12, np.int32), axis=0)
    nodes += [helper.make_node("MatMul", [f, w3], ["m3"]), helper.make_node("Add", ["m3", b3], ["a3"])]
    q_dq("a3", "y3", S_3, Z_3)
    w4 = dq("w4", W4, SW4, np.zeros(5, np.int8), axis=0)
    nodes.append(helper.make_node("Gemm", [f, w4], ["y4"], transB=1))
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info(n, t, shape) for n, t, shape in (
            ("y1", TensorProto.UINT8, [1, 16, 8, 8]), ("y2", TensorProto.UINT8, [1, 16, 4, 4]),
            ("y3", TensorProto.UINT8, [1, 12]), ("y4", TensorProto.FLOAT, [1, 5]))],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def integer_reference(x: np.ndarray) -> list[np.ndarray]:
    """The four outputs computed by ``integer_semantics`` in numpy."""
    x_q = np.clip(np.rint(x / S_X) + Z_X, 0, 255).astype(np.uint8)
    acc1 = sem.conv_accumulate(x_q, Z_X, W1, B1, pads=(1, 1, 1, 1))
    y1 = sem.requantize(acc1, sem.multiplier(S_X, SW1, S_1).reshape(1, -1, 1, 1), Z_1, *sem.activation_range("uint8", Z_1, S_1, "relu"), "uint8")
    acc2 = sem.conv_accumulate(y1, Z_1, W2, B2, strides=(2, 2), pads=(1, 1, 1, 1), groups=16)
    y2 = sem.requantize(acc2, sem.multiplier(S_1, SW2, S_2).reshape(1, -1, 1, 1), Z_2, 0, 255, "uint8")
    flat = y2.reshape(1, -1)
    y3 = sem.requantize(sem.matmul_accumulate(flat, Z_2, W3, B3), sem.multiplier(S_2, SW3, S_3), Z_3, 0, 255, "uint8")
    y4 = sem.matmul_accumulate(flat, Z_2, W4.T, None).astype(np.float32) * sem.multiplier(S_2, SW4, 1.0)
    return [y1, y2, y3, y4]


@pytest.fixture(scope="module", params=[("NHWC", False, None), ("NHWC", False, (16, 4)), ("NHWC", True, None), ("NCHW", False, None)],
                ids=["nhwc-u8", "nhwc-u8-packed", "nhwc-s8", "nchw-u8"])
def lowered(request, tmp_path_factory):
    """(summary, library outputs, inputs) of the hand-written model compiled with the lowering, for
    each layout of the integer convolutions (NHWC with x86's 16 x 4 packed weights too) and uint8
    or int8 (ARM's sdot) activation arithmetic."""
    layout, signed, blocks = request.param
    from backends import tvm_build  # noqa: PLC0415

    tvm = tvm_build.import_tvm()
    model = ir.serde.deserialize_model(qdq_model())
    module = tvm_build.import_onnx(tvm, model, {"x": (1, 8, 8, 8)})
    from backends.int8_lowering import lower_to_integer  # noqa: PLC0415

    module, summary = lower_to_integer(tvm, module, [], signed_activations=signed, layout=layout, weight_blocks=blocks)
    library = tmp_path_factory.mktemp("int8") / "qdq.so"
    tvm.compile(module, target=tvm.target.Target({"kind": "llvm"})).export_library(str(library))
    inputs = [np.random.default_rng(seed).standard_normal((1, 8, 8, 8)).astype(np.float32) * 3 for seed in range(3)]
    outputs = [tvm_build.run_library(tvm, library, [x]) for x in inputs]
    return summary, outputs, inputs


def test_every_conv_matmul_and_gemm_computes_in_integers(lowered):
    summary, _, _ = lowered
    assert (summary.integer_ops, summary.float_ops) == (4, 0)
    assert summary.by_op == {"conv2d int": 2, "matmul int": 2}


def test_library_is_bit_exact_with_the_numpy_integer_reference(lowered):
    _, outputs, inputs = lowered
    for x, got in zip(inputs, outputs):
        for expected, actual in zip(integer_reference(x), got):
            assert actual.dtype == expected.dtype
            np.testing.assert_array_equal(actual, expected)


def test_library_is_within_one_step_of_onnx_runtime_on_999_permille(lowered):
    from ir import runtime  # noqa: PLC0415

    _, outputs, inputs = lowered
    session = runtime.session(qdq_model(), optimize=True)  # what ONNX Runtime really runs: QLinearConv...
    for x, got in zip(inputs, outputs):
        reference = runtime.run(session, {"x": x})
        for name in ("y1", "y2", "y3"):
            step_errors = np.abs(reference[name].astype(np.int32) - got[["y1", "y2", "y3"].index(name)].astype(np.int32))
            assert step_errors.max() <= 1 and np.mean(step_errors == 0) >= 0.999, name


@pytest.mark.parametrize(("channels", "outputs", "strides", "dilation"), [(3, 20, (2, 2), (1, 1)), (8, 16, (1, 2), (2, 1))])
def test_packed_convolution_equals_the_integer_reference_for_any_channel_count(channels, outputs, strides, dilation):
    """Input channels not a multiple of 4 and outputs not a multiple of 16 are zero-padded blocks."""
    from backends import tvm_build  # noqa: PLC0415
    from backends.int8_lowering import pack_weight, packed_conv2d  # noqa: PLC0415

    tvm = tvm_build.import_tvm()
    relax = tvm.relax
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(1, 9, 11, channels)).astype(np.uint8)  # NHWC, already padded
    w = rng.integers(-128, 128, size=(outputs, channels, 3, 2)).astype(np.int8)
    padded = np.pad(x, ((0, 0), (0, 0), (0, 0), (0, -channels % 4)))  # the lowering pads channels with any value
    builder = relax.BlockBuilder()
    var = relax.Var("x", relax.TensorType(padded.shape, "uint8"))
    with builder.function("main", [var]):
        with builder.dataflow():
            out = builder.emit_output(builder.emit_te(packed_conv2d, var, relax.const(pack_weight(w, 16, 4)), outputs, list(strides), list(dilation)))
        builder.emit_func_output(out)
    machine = relax.VirtualMachine(tvm.compile(builder.get(), target=tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    got = machine["main"](tvm.runtime.tensor(padded)).numpy()
    expected = sem.conv_accumulate(x.transpose(0, 3, 1, 2), 0, w, None, strides=strides, dilations=dilation)
    np.testing.assert_array_equal(got, expected.transpose(0, 2, 3, 1))


def test_a_float_model_is_left_alone():
    from backends import tvm_build  # noqa: PLC0415
    from backends.int8_lowering import lower_to_integer  # noqa: PLC0415
    from test_backends import conv_relu_gemm  # noqa: PLC0415 - the shared tiny float model

    tvm = tvm_build.import_tvm()
    module = tvm_build.import_onnx(tvm, ir.serde.deserialize_model(conv_relu_gemm()), {"x": (1, 3, 8, 8)})
    _, summary = lower_to_integer(tvm, module, [])
    assert summary.integer_ops == 0 and summary.float_ops == 2


def test_fixed_point_requantization_differs_from_the_float_rule_by_at_most_one_step_rarely():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**20), 2**20, size=200_000).astype(np.int32)
    scale = (rng.uniform(0.2, 1.0, size=acc.size) * 2.0**-10).astype(np.float32)
    floating = sem.requantize(acc, scale, 0, -128, 127, "int8").astype(np.int32)
    fixed = sem.requantize_fixed_point(acc, scale, 0, -128, 127, "int8").astype(np.int32)
    differ = floating != fixed
    assert np.abs(floating - fixed).max() <= 1
    assert differ.mean() < 1e-3  # ties (half up vs half even) and float32 rounding of the product
