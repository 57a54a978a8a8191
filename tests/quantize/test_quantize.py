"""Static int8 QDQ quantization: streaming observers, the quantize pass, and what ONNX Runtime makes of it."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from ir.errors import UsageError
from models import builders
from passes.base import create
from passes.calibration import Calibration
from passes.manager import PassContext, PassManager
from passes.quantize.observers import HistogramObserver

CONV_OPSET12 = """
<ir_version: 7, opset_import: ["" : 12]>
net (float[1,3,16,16] x) => (float[1,8,16,16] y) {
    w1 = Constant <value = float[8,3,3,3] {WEIGHTS1}> ()
    b1 = Constant <value = float[8] {0.1, -0.2, 0.3, 0.0, 0.05, -0.1, 0.2, 0.0}> ()
    w2 = Constant <value = float[8,8,1,1] {WEIGHTS2}> ()
    c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
    r1 = Relu(c1)
    c2 = Conv (r1, w2)
    y = Relu(c2)
}
"""


def conv_model() -> ir.Model:
    rng = np.random.default_rng(0)
    text = CONV_OPSET12.replace("{WEIGHTS1}", "{" + ",".join(f"{v:.4f}" for v in rng.normal(0, 0.3, 216)) + "}")
    text = text.replace("{WEIGHTS2}", "{" + ",".join(f"{v:.4f}" for v in rng.normal(0, 0.3, 64)) + "}")
    return ir.serde.deserialize_model(onnx.parser.parse_model(text))


def feeds_for(shape, n=8, seed=1):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def run_quantize(model, feeds, pipeline="quantize"):
    context = PassContext(calibration=Calibration.from_iterable(feeds))
    return PassManager(pipeline, verify="off", strict=True, context=context).run(model)


def outputs(model, feed):
    proto = ir.serde.serialize_model(model).SerializeToString()
    return ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def sqnr(a, b):
    return 10 * np.log10(np.sum(a.astype(np.float64) ** 2) / np.sum((a - b).astype(np.float64) ** 2))


# -- observers ----------------------------------------------------------------------------------------
def test_histogram_keeps_every_value_within_bounded_bins_across_growing_batches():
    observer = HistogramObserver(bins=256)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(5000) * scale for scale in (0.1, 1.0, 10.0, 100.0)]
    for batch in batches:
        observer.update(batch)
    everything = np.concatenate(batches)
    assert observer.counts.size == 256
    assert observer.counts.sum() == everything.size
    assert observer.min == everything.min() and observer.max == everything.max()
    # each value sits in the bin its index says, after all the merges
    index = np.floor(everything / observer.width).astype(int) - observer.first
    assert np.array_equal(np.bincount(index, minlength=256), observer.counts)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_ranges_contain_zero_and_stay_within_the_data(method):
    observer = HistogramObserver()
    data = np.abs(np.random.default_rng(0).standard_normal(20000)) + 0.5  # strictly positive
    observer.update(data)
    lo, hi = observer.observed_range(method)
    assert lo == 0.0 and 0.0 < hi <= data.max()


def test_clipping_methods_cut_rare_outliers():
    observer = HistogramObserver()
    data = np.random.default_rng(0).standard_normal(100000)
    data[:3] = 60.0
    observer.update(data)
    assert observer.observed_range("minmax")[1] == 60.0
    for method in ("percentile", "entropy"):
        assert observer.observed_range(method)[1] < 20.0


def test_entropy_keeps_the_spike_of_a_saturated_relu6():
    # KL divergence alone would move the 7% of values sitting at 6 down to a low threshold for free
    observer = HistogramObserver()
    data = np.clip(np.random.default_rng(0).standard_normal(100000) * 4, 0, 6)
    observer.update(data)
    assert observer.observed_range("entropy")[1] > 5.9


def test_mse_range_clips_a_heavy_tail_where_that_lowers_the_error():
    observer = HistogramObserver()
    observer.update(np.random.default_rng(0).laplace(size=200000))
    lo, hi = observer.observed_range("mse")
    assert 0.3 * observer.max < hi < observer.max and observer.min < lo < 0.3 * observer.min


# -- the quantize pass ----------------------------------------------------------------------------------
def test_opset12_model_becomes_valid_per_channel_qdq_that_ort_runs_close_to_float():
    model = conv_model()
    reference = outputs(conv_model(), feeds_for([1, 3, 16, 16])[0])
    result = run_quantize(model, feeds_for([1, 3, 16, 16]))
    quantized = result.model
    onnx.checker.check_model(ir.serde.serialize_model(quantized), full_check=True)
    assert quantized.opset_imports[""] >= 13
    ops = [n.op_type for n in quantized.graph]
    assert ops.count("QuantizeLinear") == 3  # x, r1 (after the first Relu) and c2 (y is a graph output)
    assert "Constant" not in ops  # the float weights are gone
    weight_dqs = [n for n in quantized.graph if n.op_type == "DequantizeLinear" and n.inputs[0].is_initializer() and n.inputs[0].dtype == ir.DataType.INT8]
    assert len(weight_dqs) == 2 and all(n.attributes.get_int("axis") == 0 for n in weight_dqs)
    assert sqnr(reference, outputs(quantized, feeds_for([1, 3, 16, 16])[0])) > 25
    record = result.records[0]
    assert any("opset raised from 12 to 13" in note for note in record.notes)
    assert record.stats["layers quantized"] == 2


def test_ort_fuses_the_qdq_convolutions_into_integer_kernels(tmp_path):
    quantized = run_quantize(conv_model(), feeds_for([1, 3, 16, 16])).model
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(ir.serde.serialize_model(quantized).SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 2
    assert ops.count("Relu") == 1 and "Conv" not in ops  # only the Relu producing the graph output stays


def ort_optimized_ops(model: ir.Model, tmp_path) -> list[str]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(ir.serde.serialize_model(model).SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def test_ort_runs_the_whole_mobilenetv2_builder_in_integer_kernels(tmp_path):
    # Conv -> Clip(0, 6) -> Conv chains, residual Adds, GlobalAveragePool and the Gemm head: after
    # ONNX Runtime's graph optimization nothing float remains but Flatten (what ORT's own
    # quantize_static gives on this builder: 52 QLinearConv, 10 QLinearAdd, QLinearGlobalAveragePool, QGemm).
    model = builders.build("mobilenetv2", image_size=32)
    feeds = [{"input": f["x"]} for f in feeds_for([1, 3, 32, 32], n=4)]
    quantized = run_quantize(model, feeds, "fold,quantize").model
    scales = [n.inputs[1] for n in quantized.graph if n.op_type == "QuantizeLinear"]
    assert scales and all(len(v.shape) == 0 for v in scales)  # ORT fuses only with scalar scales
    ops = ort_optimized_ops(quantized, tmp_path)
    assert ops.count("QLinearConv") == 52 and ops.count("QLinearAdd") == 10
    assert ops.count("QLinearGlobalAveragePool") == 1 and ops.count("QGemm") == 1
    assert not {"Conv", "FusedConv", "Clip", "Add", "Gemm", "GlobalAveragePool"} & set(ops)


SEQUENCE_HEAD = """
<ir_version: 8, opset_import: ["" : 13]>
net (float[1,4,8] x) => (float[1,4,6] y) {
    w = Constant <value = float[8,8] {WEIGHTS1}> ()
    v = Constant <value = float[8,6] {WEIGHTS2}> ()
    h = MatMul (x, w)
    r = Add (h, x)
    logits = MatMul (r, v)
    y = Softmax <axis = -1> (logits)
}
"""


def test_sequence_arithmetic_and_logits_before_a_float_softmax_stay_float():
    rng = np.random.default_rng(0)
    text = SEQUENCE_HEAD.replace("{WEIGHTS1}", "{" + ",".join(f"{v:.4f}" for v in rng.normal(0, 0.3, 64)) + "}")
    text = text.replace("{WEIGHTS2}", "{" + ",".join(f"{v:.4f}" for v in rng.normal(0, 0.3, 48)) + "}")
    model = ir.serde.deserialize_model(onnx.parser.parse_model(text))
    result = run_quantize(model, feeds_for([1, 4, 8]))
    quantized = result.model
    onnx.checker.check_model(ir.serde.serialize_model(quantized), full_check=True)
    add = next(n for n in quantized.graph if n.op_type == "Add")
    assert all(v.producer() is None or v.producer().op_type != "DequantizeLinear" for v in add.inputs[:1])
    softmax = next(n for n in quantized.graph if n.op_type == "Softmax")
    assert softmax.inputs[0].producer().op_type == "MatMul"  # the logits are not rounded to 8 bits
    assert any("Add: not on a 4-D feature map" in note for note in result.records[0].notes)


def test_op_lists_in_a_pipeline_string_use_plus():
    model = conv_model()
    result = run_quantize(model, feeds_for([1, 3, 16, 16]), "quantize{ops=Conv+Gemm,exclude=Relu+Softmax}")
    assert result.records[0].stats["layers quantized"] == 2


def test_builder_cnn_keeps_fidelity_and_lists_float_ops():
    model = builders.build("resnet18", image_size=32)
    feeds = [{"input": f["x"]} for f in feeds_for([1, 3, 32, 32], n=8)]
    reference = outputs(builders.build("resnet18", image_size=32), feeds[0])
    result = run_quantize(model, feeds, "fold,quantize{calibrate=percentile,activations=int8}")
    record = [r for r in result.records if r.name == "quantize"][0]
    assert sqnr(reference, outputs(result.model, feeds[0])) > 15
    assert any(note.startswith("left in float: MaxPool") for note in record.notes)
    assert any("sqnr_db" in note for note in record.notes)


def test_excluded_layer_stays_float_and_is_reported():
    model = conv_model()
    first_conv = [n for n in model.graph if n.op_type == "Conv"][0]
    first_conv.name = "stem"
    result = run_quantize(model, feeds_for([1, 3, 16, 16]), "quantize{exclude=stem}")
    stem = [n for n in result.model.graph if n.name == "stem"][0]
    assert stem.inputs[1].producer() is None or stem.inputs[1].producer().op_type != "DequantizeLinear"
    assert any("excluded by the user" in note for note in result.records[0].notes)


def test_bias_correction_and_fidelity_budget_run_and_report():
    feeds = feeds_for([1, 3, 16, 16])
    corrected = run_quantize(conv_model(), feeds, "quantize{bias_correction=true}").records[0]
    assert corrected.stats["biases corrected"] == 2
    budget = run_quantize(conv_model(), feeds, "quantize{fidelity_budget=60}").records[0]
    # 60 dB is out of reach for int8: every layer ends up float, and the notes say which and why
    assert budget.stats["layers kept float for the budget"] == 2
    assert sum("kept float" in note for note in budget.notes) == 2


def test_both_sensitivity_rankings_keep_layers_float_until_the_budget_is_met():
    feeds = feeds_for([1, 3, 16, 16])
    for ranking in ("drop", "isolated"):
        record = run_quantize(conv_model(), feeds, f"quantize{{fidelity_budget=60,sensitivity={ranking}}}").records[0]
        assert record.stats["layers kept float for the budget"] == 2
    quantizer_model = conv_model()
    from passes.quantize import qdq, sensitivity
    from passes.quantize.quantize import QuantizeOptions, quantizer_for

    qdq.raise_opset(quantizer_model, 13)
    quantizer = quantizer_for(quantizer_model, QuantizeOptions())
    quantizer.calibrate(feeds)
    drops = sensitivity.layer_drops(quantizer, feeds[:2])
    # one score in dB per layer, finite: the noise each layer adds on top of its inputs'
    assert set(drops) == {layer.index for layer in quantizer.layers}
    assert all(0 < score < 100 for score in drops.values())


@pytest.mark.parametrize("options", [{"calibrate": "kl"}, {"percentile": 50}, {"ops": "Conv,Softplus"}, {"samples": 0}])
def test_bad_options_fail_at_construction(options):
    with pytest.raises(UsageError):
        create("quantize", options)
