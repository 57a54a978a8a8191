"""The accelerator target: configuration, integer semantics, partitioning, codegen, C simulation, cycles."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from backends import compile_model, list_targets, parse_target
from backends.accel.codegen import write_project
from backends.accel.compiler import compile_layers
from backends.accel.config import config_from_options
from backends.accel.cycles import gemm_cycles
from backends.accel.partition import partition
from backends.accel.report import accelerator_markdown
from backends.accel.semantics import IntLayer, reference_layer, requant_params, requantize
from backends.accel.simulate import Simulator, build_simulator, build_testbench, syntax_check
from ir.errors import UsageError

needs_compiler = pytest.mark.skipif(not (shutil.which("g++") and shutil.which("gcc")), reason="needs g++ and gcc")
CONFIG = config_from_options({})


# ---------------------------------------------------------------- configuration
def test_presets_parse_into_configs_and_are_listed():
    assert config_from_options(parse_target("accel").options).text.startswith("accel -block=16x16 -clock=200")
    small = config_from_options(parse_target("accel-small").options)
    assert (small.block_in, small.block_out, small.clock_mhz, small.bus_bytes) == (8, 8, 150, 8)
    large = config_from_options(parse_target("accel-large").options)
    assert (large.block_in, large.block_out) == (32, 32)
    assert {"accel", "accel-small", "accel-large"} <= {row.name for row in list_targets()}


def test_flags_override_a_preset():
    config = config_from_options(parse_target("accel -block=32x8 -clock=300 -bus=8").options)
    assert (config.block_in, config.block_out, config.clock_mhz, config.bus_bytes) == (32, 8, 300, 8)


@pytest.mark.parametrize("text, words", [
    ("accel -block=12x16", "power of two"),
    ("accel -block=16", "INxOUT"),
    ("accel -block=64x64 -wgt-buf=4", "-wgt-buf is too small"),
    ("accel -block=64x64 -acc-buf=0", "out of range"),
    ("accel -speed=3", "unknown flag '-speed=3'"),
    ("accel -clock=fast", "not an integer"),
])  # fmt: skip
def test_bad_configurations_are_one_line_usage_errors(text, words):
    with pytest.raises(UsageError) as info:
        parse_target(text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_resources_count_macs_and_buffer_bits():
    resources = CONFIG.resources()
    assert resources["mac_units"] == 256
    assert resources["buffer_bits"] == (32 + 64 + 128) * 1024 * 8
    assert resources["bram18_estimate"] == 15 + 29 + 57  # ceil(bits / 18432) per buffer


# ---------------------------------------------------------------- integer semantics
def test_requant_multiplier_is_normalized_fixed_point():
    m0, shift = requant_params(np.array([0.5, 0.75, 3e-3]))
    assert (m0[0], shift[0]) == (2**30, 31)
    assert (m0[1], shift[1]) == (3 * 2**29, 31)
    assert 2**30 <= m0[2] < 2**31 and abs(m0[2] * 2.0 ** -shift[2] - 3e-3) < 3e-3 * 2**-30


def _layer(weight, bias, kind="rows", **kw):
    n = weight.shape[0]
    defaults = dict(name="l", op="Gemm", kind=kind, weight=weight.astype(np.int8), bias=np.asarray(bias, np.int32), x_zero=0,
                    y_zero=0, lo=-128, hi=127, x_scale=1.0, w_scale=np.full(n, 0.5, np.float32), y_scale=1.0,
                    in_shape=(1, weight.shape[1]), out_shape=(1, n), x_unsigned=False, y_unsigned=False)
    defaults.update(kw)
    return IntLayer(**defaults)


def test_fixed_point_rounds_half_up_where_float_rounds_half_even():
    layer = _layer(np.ones((1, 1)), [0])
    acc = np.array([[3, 5, -3, 4]], np.int64)  # times 0.5: 1.5, 2.5, -1.5, 2
    assert requantize(layer, acc, "fixed").tolist() == [[2, 3, -1, 2]]
    assert requantize(layer, acc, "float").tolist() == [[2, 2, -2, 2]]


def test_reference_subtracts_zero_point_adds_bias_and_clamps():
    weight = np.array([[1, 2], [-3, 4]])
    layer = _layer(weight, [10, -10], x_zero=5, y_zero=-2, lo=-2, w_scale=np.ones(2, np.float32), in_shape=(1, 2),
                   out_shape=(1, 2))
    x = np.array([[7, 5]], np.int8)  # x - zx = [2, 0]: acc = [10 + 2, -10 - 6] = [12, -16]
    assert reference_layer(layer, x).tolist() == [[10, -2]]  # -16 - 2 clamps at lo = zy (ReLU)


# ---------------------------------------------------------------- partitioning
def _small_qdq_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * 0.3, "wd"),
        numpy_helper.from_array(rng.standard_normal((16, 8, 1, 1)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32) * 0.3, "wf"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wd"], ["d1"], name="dw", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["d1", "w2"], ["c2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    from passes.manager import PassManager
    import onnx_ir as ir

    result = PassManager("quantize{samples=2}").run(ir.serde.deserialize_model(model))
    return ir.serde.serialize_model(result.model)


@pytest.fixture(scope="module")
def small_qdq() -> onnx.ModelProto:
    return _small_qdq_model()


def test_partition_offloads_int8_convs_and_says_why_the_rest_stays(small_qdq):
    part = partition(small_qdq, CONFIG)
    assert [layer.name for layer in part.layers] == ["conv1", "conv2"]
    assert part.layers[0].activation == "Relu" and part.layers[0].strides == (2, 2)
    reasons = {op.node: op.reason for op in part.ops if op.side == "cpu"}
    assert "depthwise convolution stays on the CPU" in reasons["dw"]
    assert "stays float" in reasons["fc"]
    assert {op.side for op in part.ops if op.node in ("conv1", "relu1", "conv2")} == {"accel"}
    assert len(part.ops) == len(small_qdq.graph.node)
    macs = {"conv1": 8 * 8 * 8 * 27, "dw": 8 * 8 * 8 * 9, "conv2": 8 * 8 * 16 * 8, "fc": 160}
    assert part.total_macs == sum(macs.values())
    assert part.offloaded_mac_share == pytest.approx((macs["conv1"] + macs["conv2"]) / sum(macs.values()))


def test_depthwise_is_offloaded_when_the_config_enables_it(small_qdq):
    part = partition(small_qdq, config_from_options({"depthwise": True}))
    assert [layer.name for layer in part.layers] == ["conv1", "dw", "conv2"]


# ---------------------------------------------------------------- codegen and C simulation
def _random_layers(rng):
    conv = _layer(rng.integers(-127, 128, (21, 5, 3, 3)), rng.integers(-5000, 5000, 21), kind="conv", op="Conv",
                  x_zero=-7, y_zero=3, lo=3, w_scale=rng.uniform(0.001, 0.01, 21).astype(np.float32), x_scale=0.05,
                  y_scale=0.04, in_shape=(1, 5, 9, 11), out_shape=(1, 21, 4, 6), strides=(2, 2), pads=(1, 2, 0, 1),
                  dilations=(1, 1), x_unsigned=True, y_unsigned=True)
    dilated = _layer(rng.integers(-127, 128, (16, 4, 3, 3)), np.zeros(16), kind="conv", op="Conv", x_zero=0, y_zero=0,
                     w_scale=np.full(16, 0.004, np.float32), in_shape=(1, 4, 8, 8), out_shape=(1, 16, 4, 4),
                     dilations=(2, 2), pads=(0, 0, 0, 0))
    depthwise = _layer(rng.integers(-127, 128, (6, 1, 3, 3)), rng.integers(-500, 500, 6), kind="conv", op="Conv",
                       group=6, x_zero=2, w_scale=np.full(6, 0.01, np.float32), in_shape=(1, 6, 7, 7),
                       out_shape=(1, 6, 7, 7), pads=(1, 1, 1, 1))
    rows = _layer(rng.integers(-127, 128, (37, 50)), rng.integers(-3000, 3000, 37), x_zero=4, y_zero=-5, hi=90,
                  w_scale=rng.uniform(0.001, 0.003, 37).astype(np.float32), x_scale=0.1, y_scale=0.2, in_shape=(3, 5, 50),
                  out_shape=(3, 5, 37), op="MatMul")
    return [conv, dilated, depthwise, rows]


@needs_compiler
def test_generated_project_compiles_and_simulates_bit_exactly(tmp_path):
    rng = np.random.default_rng(1)
    layers = _random_layers(rng)
    config = config_from_options({"block": "8x16", "inp-buf": 1, "wgt-buf": 2, "acc-buf": 2})  # small: many tiles
    program = compile_layers(layers, config)
    inputs = [rng.integers(-128, 128, layer.in_shape).astype(np.int8) for layer in layers]
    vectors = {i: (x, reference_layer(layer, x)) for i, (layer, x) in enumerate(zip(layers, inputs))}
    write_project(program, tmp_path, vectors)
    syntax_check(tmp_path)
    sim = Simulator(tmp_path, build_simulator(tmp_path))
    for i, layer in enumerate(layers):
        assert np.array_equal(sim.run_layer(i, inputs[i], layer.out_shape), vectors[i][1]), layer.name
        assert len(program.layer_gemms(i)) == layer.group
    done = subprocess.run([str(build_testbench(tmp_path)), ".", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.count("0 differ") == len(layers)
    assert "#pragma HLS PIPELINE" in (tmp_path / "accel_core.cpp").read_text()
    assert "Vitis HLS" in (tmp_path / "README.md").read_text()


@needs_compiler
def test_backend_reports_bit_exact_and_agrees_with_onnx_runtime(small_qdq, tmp_path):
    result = compile_model(small_qdq, "accel-small", tmp_path, name="small")
    acc = result.details
    assert acc["bit_exact"] is True and acc["testbench_passed"] is True
    assert acc["ort_within_one_step"] >= 0.999
    assert acc["cycles"] == sum(row["cycles"] for row in acc["layers"]) > 0
    assert 0 < acc["offloaded_mac_share"] < 1
    assert result.check.max_abs_error < 0.05  # whole model: simulator + ONNX Runtime glue vs ONNX Runtime
    assert (tmp_path / "small_hls" / "run_hls.tcl").exists()
    text = accelerator_markdown(acc)
    assert "equals the integer reference bit for bit" in text and "not a measurement" in text
    assert "depthwise convolution stays on the CPU" in text


# ---------------------------------------------------------------- cycle model
def test_cycle_model_on_a_hand_computed_gemm():
    layer = _layer(np.ones((16, 16)), np.zeros(16), in_shape=(32, 16), out_shape=(32, 16))
    program = compile_layers([layer], CONFIG, tiling=lambda m, kb, nb: (32, 1, 1))
    cycles = gemm_cycles(program.gemms[0].insns, CONFIG)
    # load input 32 + 512/16, load weights 32 + 256/16, one fold 32 + 2*16 + 16 - 2, store 32 + 512/16
    assert (cycles.load, cycles.compute, cycles.store) == (64 + 48, 78, 64)
    assert cycles.total == 64 + 48 + 78 + 64  # nothing to overlap with a single tile
    assert cycles.bound == "memory"


def test_double_buffering_overlaps_loads_with_compute():
    config = config_from_options({"bus": 64})  # loads (132 cycles a tile) are shorter than a GEMM (302)
    layer = _layer(np.ones((16, 64)), np.zeros(16), in_shape=(256, 64), out_shape=(256, 16))
    program = compile_layers([layer], config, tiling=lambda m, kb, nb: (256, 1, 1))
    cycles = gemm_cycles(program.gemms[0].insns, config)
    assert cycles.tiles == 4 and cycles.compute == 4 * (256 + 46)
    # overlapped: only the first tile's loads and the last store are not hidden behind the GEMMs
    assert cycles.total == (32 + 64) + (32 + 4) + cycles.compute + (32 + 64)
    assert cycles.bound == "compute"


@needs_compiler
@pytest.mark.tvm
def test_byoc_takes_the_same_layers_and_tvm_host_build_matches_onnx_runtime(small_qdq, tmp_path):
    pytest.importorskip("tvm")
    acc = compile_model(small_qdq, "accel", tmp_path, name="small").details
    byoc = acc["byoc"]
    assert byoc["ran"] and byoc["functions"] == 2 and byoc["agrees_with_onnx_partition"]
    assert byoc["max_abs_error_vs_ort"] < 0.05 and byoc["top1_agreement"] == 1.0


def test_a_float_model_is_a_one_line_error_that_says_to_quantize(tiny_model, tmp_path):
    from ir.errors import BackendError

    with pytest.raises(BackendError, match="run the quantize pass first"):
        compile_model(tiny_model, "accel", tmp_path)
