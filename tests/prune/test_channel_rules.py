"""The channel analysis' rules one op at a time, on small hand-written models.

Each model is ``x -> Conv a (4 channels) -> Relu -> [the op under test] -> a consumer layer``. When the
op keeps the channels, the group of ``a`` is prunable, its consumer is the layer after the op, and
pruning channels 1 and 2 gives exactly the original model with the consumer's weights that read
channels 1 and 2 zeroed by hand (numpy, here, not the analysis' layouts), via ONNX Runtime. When the
op cannot be followed, the group of ``a`` is unprunable with the reason the op's rule gives.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import channel_groups, io, runtime
from ir.channel_groups import describe_groups, weight_array
from passes.prune.apply import remove_channels

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'
CONV_A = "a = Conv <pads = [1,1,1,1]> (x, wa, ba)\n    ra = Relu(a)\n"


def build(body: str, weights: dict[str, tuple[int, ...]], constants: str = "", inputs: str = "float[1,3,8,8] x",
          opsets: str = "") -> ir.Model:
    """A model from ONNX text: random float initializers for ``weights``; output shapes left to inference."""
    text = HEADER.replace('17]', '17' + opsets + ']') + f"g ({inputs}) => (float y) {'<' + constants + '>' if constants else ''} {{\n    {body}\n}}"
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name))
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")  # unknown: shape inference fills it in
    return ir.serde.deserialize_model(proto)


def node(model: ir.Model, output: str) -> ir.Node:
    return next(n for n in model.graph if any(v.name == output for v in n.outputs))


def group_row(model: ir.Model, output: str) -> dict:
    """The ``describe_groups`` row of the group whose channels the named value carries (first segment)."""
    analysis = channel_groups.analyze(model)
    value = next(v for v in analysis.layouts if v.name == output)
    root = analysis.root(analysis.layouts[value].segments[0].space)
    return next(row for row in describe_groups(model) if row["id"] == root)


def assert_pruning_matches_zeroed_consumers(model: ir.Model, removed: dict[str, list[int]],
                                            zeroed: list[tuple[str, int, int, list[int]]]) -> ir.Model:
    """Prune ``removed`` channels of the groups carried by the named values; the result must compute
    what the original computes with the weight entries ``(consumer output, input index, axis,
    indices)`` set to zero. Returns the pruned model."""
    analysis = channel_groups.analyze(model)
    keep = {}
    for name, channels in removed.items():
        group = group_row(model, name)
        keep[group["id"]] = np.array([c for c in range(group["channels"]) if c not in channels])
    reference = io.copy_model(model)
    for output, index, axis, indices in zeroed:
        value = node(reference, output).inputs[index]
        array = weight_array(value).copy()
        where = [slice(None)] * array.ndim
        where[axis] = indices
        array[tuple(where)] = 0.0
        value.const_value = ir.tensor(array, name=value.name)
    feeds = runtime.generate_inputs(model, seed=1)
    assert remove_channels(model, analysis, keep) == sum(len(c) for c in removed.values())
    onnx.checker.check_model(io.to_proto(model), full_check=True)
    expected, got = runtime.run(reference, feeds)["y"], runtime.run(model, feeds)["y"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    return model


# -- ops the channels pass through -------------------------------------------------------------------
# (id, body from ra to z, constants, consumer kind, z's channel block): the consumer reads z.
KEEPS = [
    ("resize-scale-1", "z = Resize(ra, , sc)", "float[4] sc = {1.0, 1.0, 2.0, 2.0}", "conv", 1),
    ("pad-spatial", "z = Pad(ra, pads)", "int64[8] pads = {0, 0, 1, 2, 0, 0, 2, 1}", "conv", 1),
    ("pad-spatial-with-value", "z = Pad(ra, pads, cv)", "int64[8] pads = {0, 0, 1, 0, 0, 0, 0, 1}, float cv = {0.5}", "conv", 1),
    ("reduce-mean-spatial", "z = ReduceMean <axes = [2, 3]> (ra)", "", "conv", 1),
    ("reduce-max-negative-axes", "z = ReduceMax <axes = [-1, -2]> (ra)", "", "conv", 1),
    ("reduce-sum-axes-input", "z = ReduceSum(ra, ax)", "int64[1] ax = {3}", "conv", 1),
    ("reduce-mean-dropped-axes-behind-c", "m = ReduceMean <axes = [2, 3], keepdims = 0> (ra)\n    z = Unsqueeze(m, ax)",
     "int64[2] ax = {2, 3}", "conv", 1),
    ("reduce-sum-dropped-axes-before-c", "t = Transpose <perm = [0, 2, 3, 1]> (ra)\n    m = ReduceSum <keepdims = 0> (t, ax)\n"
     "    z = Unsqueeze(m, ax2)", "int64[2] ax = {1, 2}, int64[2] ax2 = {2, 3}", "conv", 1),
    ("argmax-spatial", "m = ArgMax <axis = 3> (ra)\n    z = Cast <to = 1> (m)", "", "conv", 1),
    ("reduce-kept-axis-before-c", "t = Transpose <perm = [0, 2, 3, 1]> (ra)\n    m = ReduceMean <axes = [1]> (t)\n"
     "    z = Transpose <perm = [0, 3, 1, 2]> (m)", "", "conv", 1),
    ("argmax-batch-dropped", "m = ArgMax <keepdims = 0> (ra)\n    c = Cast <to = 1> (m)\n    z = Unsqueeze(c, ax)",
     "int64[1] ax = {0}", "conv", 1),
    ("gather-spatial", "g = Gather <axis = 2> (ra, idx)\n    z = Reshape(g, shape)",
     "int64[1,2] idx = {0, 3}, int64[4] shape = {1, 4, 2, 8}", "conv", 1),
    ("gather-batch-rank-2-indices", "g = Gather(ra, idx)\n    z = Squeeze(g, ax)", "int64[1,1] idx = {0}, int64[1] ax = {0}", "conv", 1),
    ("gather-batch-scalar-index", "g = Gather(ra, idx)\n    z = Unsqueeze(g, ax)", "int64 idx = {0}, int64[1] ax = {0}", "conv", 1),
    ("layernorm-spatial", "z = LayerNormalization <axis = 2> (ra, ln_s, ln_b)", "", "conv", 1),
    ("layernorm-negative-axis", "z = LayerNormalization <axis = -2> (ra, ln_s, ln_b)", "", "conv", 1),
    ("layernorm-default-axis", "z = LayerNormalization(ra, ln1_s, ln1_b)", "", "conv", 1),
    ("layernorm-default-axis-behind-c", "t = Transpose <perm = [0, 2, 1, 3]> (ra)\n    n = LayerNormalization(t, ln1_s, ln1_b)\n"
     "    z = Transpose <perm = [0, 2, 1, 3]> (n)", "", "conv", 1),
    ("expand-batch", "z = Expand(ra, shape)", "int64[4] shape = {2, 1, 1, 1}", "conv", 1),
    ("expand-rank", "e = Expand(ra, shape)\n    z = Reshape(e, back)", "int64[5] shape = {3, 1, 1, 1, 1}, int64[4] back = {3, 4, 8, 8}",
     "conv", 1),
    ("softmax-last-axis", "z = Softmax(ra)", "", "conv", 1),
    ("softmax-default-axis-behind-c", "t = Transpose <perm = [0, 2, 1, 3]> (ra)\n    n = Softmax(t)\n    z = Transpose <perm = [0, 2, 1, 3]> (n)", "",
     "conv", 1),
    ("logsoftmax-spatial", "z = LogSoftmax <axis = 2> (ra)", "", "conv", 1),
    ("transpose-reversed-and-back", "t = Transpose(ra)\n    z = Transpose <perm = [3, 2, 0, 1]> (t)", "", "conv", 1),
    ("split-spatial", "p, q = Split <axis = 2> (ra, sizes)\n    z = Add(p, q)", "int64[2] sizes = {4, 4}", "conv", 1),
    ("split-batch-default-axis", "e = Expand(ra, shape)\n    p, q = Split(e, sizes)\n    z = Sub(p, q)",
     "int64[4] shape = {2, 1, 1, 1}, int64[2] sizes = {1, 1}", "conv", 1),
    ("slice-spatial", "z = Slice(ra, st, en, ax)", "int64[1] st = {1}, int64[1] en = {7}, int64[1] ax = {-1}", "conv", 1),
    ("slice-spatial-with-steps", "z = Slice(ra, st, en, ax, sp)", "int64[2] st = {0, 1}, int64[2] en = {4, 7}, int64[2] ax = {1, 3}, int64[2] sp = {1, 2}",
     "conv", 1),
    ("slice-whole-channels-without-axes", "z = Slice(ra, st, en)", "int64[2] st = {0, 0}, int64[2] en = {1, 4}", "conv", 1),
    ("concat-spatial", "z = Concat <axis = 3> (ra, ra)", "", "conv", 1),
    ("concat-one-input", "z = Concat <axis = 3> (ra)", "", "conv", 1),
    ("instance-norm", "z = InstanceNormalization(ra, in_s, in_b)", "", "conv", 1),
    ("mul-broadcast-scalar", "z = Mul(ra, half)", "float half = {0.5}", "conv", 1),
    ("sum-broadcast-then-per-channel", "z = Sum(ra, half, k4)", "float half = {0.5}", "conv", 1),
    ("reshape-drops-the-batch", "r = Reshape(ra, s3)\n    z = Unsqueeze(r, ax)", "int64[3] s3 = {-1, 8, 8}, int64[1] ax = {0}", "conv", 1),
    ("flatten-then-bias", "p = MaxPool <kernel_shape = [4, 4], strides = [4, 4]> (ra)\n    f = Flatten(p)\n    z = Add(f, k16)", "",
     "gemm", 4),
    ("flatten-into-gemm", "p = MaxPool <kernel_shape = [4, 4], strides = [4, 4]> (ra)\n    z = Flatten(p)", "", "gemm", 4),
    ("global-pool-flatten-into-matmul", "p = GlobalAveragePool(ra)\n    z = Flatten(p)", "", "matmul", 1),
    ("squeeze-into-matmul", "p = GlobalMaxPool(ra)\n    z = Squeeze(p, ax)", "int64[2] ax = {2, 3}", "matmul", 1),
]
CONSUMERS = {  # kind: (line, weight shape for 4 channels of block b, weight axis read)
    "conv": ("y = Conv(z, wy, by)", lambda b: (2, 4, 1, 1), 1),
    "gemm": ("y = Gemm <transB = 1> (z, wy, by)", lambda b: (2, 4 * b), 1),
    "matmul": ("y = MatMul(z, wy)", lambda b: (4 * b, 2), 0),
}
NORM_WEIGHTS = {"ln_s": (8, 8), "ln_b": (8, 8), "ln1_s": (8,), "ln1_b": (8,), "in_s": (4,), "in_b": (4,), "k4": (4, 1, 1), "k16": (16,)}


def keeps_model(body: str, constants: str, kind: str, block: int) -> ir.Model:
    line, shape, _ = CONSUMERS[kind]
    weights = {"wa": (4, 3, 3, 3), "ba": (4,), "wy": shape(block), "by": (2,)}
    weights.update({k: v for k, v in NORM_WEIGHTS.items() if k in body})
    return build(CONV_A + "    " + body + "\n    " + line, weights, constants)


@pytest.mark.parametrize(("body", "constants", "kind", "block"), [c[1:] for c in KEEPS], ids=[c[0] for c in KEEPS])
def test_ops_that_keep_the_channels_leave_the_producer_prunable(body, constants, kind, block):
    model = keeps_model(body, constants, kind, block)
    row = group_row(model, "a")
    consumer = node(model, "y")
    assert (row["channels"], row["prunable"], row["reasons"]) == (4, True, [])
    assert (row["producers"], row["consumers"]) == (["Conv -> 'a'"], [f"{consumer.op_type} -> 'y'"])
    axis = CONSUMERS[kind][2]
    indices = [c * block + e for c in (1, 2) for e in range(block)]
    assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, axis, indices)])
    assert weight_array(node(model, "y").inputs[1]).shape[axis] == 2 * block


# (id, body from ra, constants, the reason the group of a gets); the op's output is the graph output.
REFUSES = [
    ("resize-scale-on-c", "y = Resize(ra, , sc)", "float[4] sc = {1.0, 2.0, 1.0, 1.0}",
     "Resize -> 'y' has no constant scale of 1 on the channel axis"),
    ("resize-roi-only", "y = Resize(ra, roi)", "float[0] roi = {}", "Resize -> 'y' has no constant scale of 1 on the channel axis"),
    ("squeeze-computed-axes", "s = Shape(x)\n    ax = Slice(s, zero, one)\n    y = Squeeze(ra, ax)", "int64[1] zero = {0}, int64[1] one = {1}",
     "Squeeze -> 'y' has unknown shapes"),
    ("resize-empty-scales-no-sizes", "y = Resize(ra, , sc)", "float[0] sc = {}", "Resize -> 'y' has no constant scale of 1 on the channel axis"),
    ("pad-c-begin", "y = Pad(ra, pads)", "int64[8] pads = {0, 1, 0, 0, 0, 0, 0, 0}", "Pad -> 'y' pads the channel axis"),
    ("pad-c-end", "y = Pad(ra, pads)", "int64[8] pads = {0, 0, 0, 0, 0, 2, 0, 0}", "Pad -> 'y' pads the channel axis"),
    ("pad-axes-input", "y = Pad(ra, pads, , axes)", "int64[2] pads = {1, 1}, int64[1] axes = {2}", "Pad -> 'y' has non-constant pads"),
    ("reduce-over-c", "y = ReduceMean <axes = [1]> (ra)", "", "ReduceMean -> 'y' reduces over the channel axis"),
    ("reduce-over-c-negative", "y = ReduceSum(ra, ax)", "int64[1] ax = {-3}", "ReduceSum -> 'y' reduces over the channel axis"),
    ("reduce-all", "y = ReduceL2(ra)", "", "ReduceL2 -> 'y' reduces over the channel axis"),
    ("reduce-computed-axes", "s = Shape(x)\n    ax = Slice(s, three, four)\n    y = ReduceSum(ra, ax)", "int64[1] three = {3}, int64[1] four = {4}",
     "ReduceSum -> 'y' reduces over the channel axis"),
    ("pad-computed", "s = Shape(x)\n    p = Concat <axis = 0> (s, s)\n    y = Pad(ra, p)", "", "Pad -> 'y' has non-constant pads"),
    ("gather-computed-indices", "s = Shape(x)\n    n = Slice(s, three, four)\n    i = Range(zero, n, one)\n    y = Gather <axis = 2> (ra, i)",
     "int64[1] three = {3}, int64[1] four = {4}, int64 zero = {0}, int64 one = {1}", "Gather -> 'y' gathers along the channel axis"),
    ("expand-computed-shape", "s = Shape(x)\n    y = Expand(ra, s)", "", "Expand -> 'y' has unknown shapes"),
    ("argmax-over-c", "y = ArgMax <axis = 1> (ra)", "", "ArgMax -> 'y' reduces over the channel axis"),
    ("argmin-over-c-negative", "y = ArgMin <axis = -3> (ra)", "", "ArgMin -> 'y' reduces over the channel axis"),
    ("softmax-over-c", "y = Softmax <axis = 1> (ra)", "", "Softmax -> 'y' normalizes over the channel axis"),
    ("layernorm-over-c", "y = LayerNormalization <axis = 1> (ra, ln_s, ln_b)", "", "LayerNormalization -> 'y' normalizes over the channel axis"),
    ("lrn", "y = LRN <size = 3> (ra)", "", "LRN -> 'y' mixes neighbouring channels"),
    ("gather-on-c", "y = Gather <axis = 1> (ra, idx)", "int64[2] idx = {0, 2}", "Gather -> 'y' gathers along the channel axis"),
    ("gather-on-c-negative", "y = Gather <axis = -3> (ra, idx)", "int64[2] idx = {0, 2}", "Gather -> 'y' gathers along the channel axis"),
    ("shape", "y = Shape(ra)", "", "its shape is read by Shape -> 'y'"),
    ("where", "y = Where(cond, ra, ra)", "bool cond = {1}", "read by Where -> 'y', an op the analysis does not model"),
    ("unmodelled-op", "y = DepthToSpace <blocksize = 2> (ra)", "", "read by DepthToSpace -> 'y', an op the analysis does not model"),
    ("custom-domain", "y = custom.Thing(ra)", "", "read by custom op custom::Thing -> 'y'"),
    ("indices-of-a-gather", "i = Cast <to = 7> (ra)\n    y = Gather(table, i)", "float[4] table = {1.0, 2.0, 3.0, 4.0}",
     "used as a parameter of Gather -> 'y'"),
    ("split-without-sizes", "y, q = Split <axis = 1> (ra)", "",
     "Split -> 'y' splits the channel axis without a constant split input"),
    ("split-inside-c", "y, q = Split <axis = -3> (ra, sizes)", "int64[2] sizes = {1, 3}",
     "Split -> 'y' splits the channel axis inside one layer's channels"),
    ("slice-step-2", "y = Slice(ra, st, en, ax, sp)", "int64[1] st = {0}, int64[1] en = {4}, int64[1] ax = {1}, int64[1] sp = {2}",
     "Slice -> 'y' slices the channel axis inside one layer's channels (or with a step or negative offset)"),
    ("slice-negative-start", "y = Slice(ra, st, en, ax)", "int64[1] st = {-4}, int64[1] en = {4}, int64[1] ax = {1}",
     "Slice -> 'y' slices the channel axis inside one layer's channels (or with a step or negative offset)"),
    ("slice-negative-end", "y = Slice(ra, st, en, ax)", "int64[1] st = {0}, int64[1] en = {-1}, int64[1] ax = {1}",
     "Slice -> 'y' slices the channel axis inside one layer's channels (or with a step or negative offset)"),
    ("slice-inside-c", "y = Slice(ra, st, en, ax)", "int64[1] st = {1}, int64[1] en = {4}, int64[1] ax = {1}",
     "Slice -> 'y' slices the channel axis inside one layer's channels (or with a step or negative offset)"),
    ("slice-computed-axes", "s = Shape(x)\n    ax = Slice(s, one, two)\n    y = Slice(ra, st, en, ax)",
     "int64[1] st = {0}, int64[1] en = {4}, int64[1] one = {1}, int64[1] two = {2}",
     "Slice -> 'y' slices with computed or attribute offsets"),
    ("slice-computed-start", "s = Shape(x)\n    st = Slice(s, zero, one)\n    y = Slice(ra, st, en, ax)",
     "int64[1] zero = {0}, int64[1] en = {4}, int64[1] one = {1}, int64[1] ax = {1}",
     "Slice -> 'y' slices with computed or attribute offsets"),
    ("slice-computed-end", "s = Shape(x)\n    en = Slice(s, zero, one)\n    y = Slice(ra, st, en, ax)",
     "int64[1] zero = {0}, int64[1] st = {0}, int64[1] one = {1}, int64[1] ax = {1}",
     "Slice -> 'y' slices with computed or attribute offsets"),
    ("add-computed-untracked-channels", "p = ReduceMean <axes = [1]> (x)\n    e = Expand(p, shape)\n    y = Add(e, ra)", "int64[4] shape = {1, 4, 8, 8}",
     "Add -> 'y' combines it with untracked channels"),
]


@pytest.mark.parametrize(("body", "constants", "reason"), [c[1:] for c in REFUSES], ids=[c[0] for c in REFUSES])
def test_ops_that_lose_the_channels_make_the_producer_unprunable_and_say_why(body, constants, reason):
    weights = {"wa": (4, 3, 3, 3), "ba": (4,), **{k: v for k, v in NORM_WEIGHTS.items() if k in body}}
    model = build(CONV_A + "    " + body, weights, constants, opsets=', "custom" : 1' if "custom." in body else "")
    row = group_row(model, "a")
    assert (row["channels"], row["prunable"], row["reasons"], row["producers"]) == (4, False, [reason], ["Conv -> 'a'"])


# -- layers: which channels they produce and read ------------------------------------------------------
def rows_by_producer(model: ir.Model) -> dict[str, dict]:
    return {label: row for row in describe_groups(model) for label in row["producers"]}


def actions_of(model: ir.Model, output: str) -> list[tuple[str, int, int, int]]:
    """(kind, input index, axis, channels) of every action on the node producing ``output``."""
    target = node(model, output)
    return [(a.kind, a.index, a.axis, a.layout.channels) for a in channel_groups.analyze(model).actions if a.node is target]


CONV_TRANSPOSE = CONV_A + """    t = ConvTranspose <strides = [2, 2]> (ra, wt, bt)
    rt = Relu(t)
    y = Conv(rt, wy, by)"""


def test_conv_transpose_produces_its_weights_axis_1_and_reads_axis_0():
    model = build(CONV_TRANSPOSE, {"wa": (4, 3, 3, 3), "ba": (4,), "wt": (4, 5, 2, 2), "bt": (5,), "wy": (2, 5, 1, 1), "by": (2,)})
    rows = rows_by_producer(model)
    assert rows["Conv -> 'a'"]["consumers"] == ["ConvTranspose -> 't'"] and rows["Conv -> 'a'"]["prunable"]
    assert (rows["ConvTranspose -> 't'"]["channels"], rows["ConvTranspose -> 't'"]["consumers"]) == (5, ["Conv -> 'y'"])
    assert actions_of(model, "t") == [("input", 1, 0, 4), ("output", 1, 1, 5)]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1], "t": [0, 3]}, [("t", 1, 0, [1]), ("y", 1, 1, [0, 3])])
    t = node(pruned, "t")
    assert weight_array(t.inputs[1]).shape == (3, 3, 2, 2) and weight_array(t.inputs[2]).shape == (3,)


def test_grouped_conv_transpose_is_unprunable_on_both_sides():
    model = build(CONV_TRANSPOSE.replace("strides = [2, 2]", "strides = [2, 2], group = 2"),
                  {"wa": (4, 3, 3, 3), "ba": (4,), "wt": (4, 3, 2, 2), "bt": (6,), "wy": (2, 6, 1, 1), "by": (2,)})
    reason = "ConvTranspose -> 't': grouped or non-constant weight"
    assert group_row(model, "a")["reasons"] == [reason]
    out = group_row(model, "t")  # 6 channels, read off the output shape
    assert (out["channels"], out["prunable"], out["reasons"], out["producers"], out["consumers"]) == (6, False, [reason], [], ["Conv -> 'y'"])


def test_layers_reading_the_channels_on_another_axis_refuse_them():
    for layer, weight in (("ConvTranspose", (8, 5, 1, 1)), ("Conv", (5, 8, 1, 1))):
        body = CONV_A + f"    p = Transpose <perm = [0, 2, 1, 3]> (ra)\n    t = {layer}(p, wt)\n    y = Relu(t)"
        model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wt": weight})
        assert group_row(model, "a")["reasons"] == [f"{layer} -> 't' reads the channels on another axis"]
        assert rows_by_producer(model)[f"{layer} -> 't'"]["channels"] == 5


def test_a_conv_weight_fed_at_run_time_blocks_its_input_and_output_channels():
    body = CONV_A + "    c = Conv(ra, w)\n    rc = Relu(c)\n    y = Conv(rc, wy)"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wy": (2, 5, 1, 1)}, inputs="float[1,3,8,8] x, float[5,4,1,1] w")
    assert group_row(model, "a")["reasons"] == ["Conv -> 'c' has a non-constant weight or unknown shapes"]
    out = group_row(model, "c")
    assert (out["channels"], out["reasons"], out["producers"], out["consumers"]) == (
        5, ["Conv -> 'c': non-constant weight or unknown shape"], [], ["Conv -> 'y'"])
    analysis = channel_groups.analyze(model)
    assert analysis.origins == ["input x", "input w", "Conv -> 'a'", "Conv -> 'c'", "Conv -> 'y'"]
    assert analysis.sizes == [3, 4, 4, 5, 2]
    assert analysis.reasons[1] == ["graph input 'w'", "used as a weight of Conv -> 'c'", "Conv -> 'c' has a non-constant weight or unknown shapes"]
    assert analysis.group_of(3).channels == 5 and analysis.group_of(3).reasons == out["reasons"]
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wy": (2, 5, 1, 1)}, inputs="float[1,3,8,8] x, float[N,4,1,1] w")
    assert group_row(model, "a")["reasons"] == ["Conv -> 'c' has a non-constant weight or unknown shapes"]
    assert not any(v.name == "c" for v in channel_groups.analyze(model).layouts)  # how many channels: unknown


def test_grouped_conv_couples_channels_and_blocks_both_sides():
    body = CONV_A + "    g = Conv <group = 2> (ra, wg)\n    rg = Relu(g)\n    y = Conv(rg, wy)"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wg": (6, 2, 1, 1), "wy": (2, 6, 1, 1)})
    assert group_row(model, "a")["reasons"] == ["grouped Conv -> 'g' (group=2) couples channels group-wise"]
    out = group_row(model, "g")
    assert (out["channels"], out["reasons"], out["producers"]) == (6, ["Conv -> 'g': grouped convolution (group=2) couples channels group-wise"], [])


@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_conv_follows_its_input_weight_bias_and_group(bias):
    body = CONV_A + f"    d = Conv <group = 4, pads = [1,1,1,1]> (ra, wd{', bd' if bias else ''})\n    rd = Relu(d)\n    y = Conv(rd, wy, by)"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wd": (4, 1, 3, 3), "bd": (4,), "wy": (2, 4, 1, 1), "by": (2,)})
    row = group_row(model, "a")
    assert (row["prunable"], row["followers"], row["consumers"]) == (True, ["Conv -> 'd'"], ["Conv -> 'y'"])
    assert actions_of(model, "d") == [("constant", 1, 0, 4), *([("constant", 2, 0, 4)] if bias else []), ("group", 1, 0, 4)]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, 1, [1, 2])])
    d = node(pruned, "d")
    assert d.attributes.get_int("group") == 2 and weight_array(d.inputs[1]).shape == (2, 1, 3, 3)


GEMMS = """a = Conv <pads = [1,1,1,1]> (x, wa, ba)
    p = GlobalAveragePool(a)
    f = Flatten(p)
    g = Gemm(f, wg, bg)
    rg = Relu(g)
    y = Gemm <transB = 1> (rg, wy, by)"""
GEMM_WEIGHTS = {"wa": (4, 3, 3, 3), "ba": (4,), "wg": (4, 5), "bg": (5,), "wy": (2, 5), "by": (2,)}


def test_gemm_reads_weight_rows_and_produces_columns_unless_transposed():
    model = build(GEMMS, GEMM_WEIGHTS)
    assert actions_of(model, "g") == [("input", 1, 0, 4), ("output", 1, 1, 5)]
    assert actions_of(model, "y")[0] == ("input", 1, 1, 5)
    assert rows_by_producer(model)["Gemm -> 'g'"]["consumers"] == ["Gemm -> 'y'"]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2], "g": [0, 3]}, [("g", 1, 0, [1, 2]), ("y", 1, 1, [0, 3])])
    assert weight_array(node(pruned, "g").inputs[1]).shape == (2, 3) and weight_array(node(pruned, "g").inputs[2]).shape == (3,)


def test_gemm_with_a_transposed_input_a_run_time_bias_or_channels_on_axis_0_is_refused():
    model = build(GEMMS.replace("Gemm(f, wg, bg)", "Gemm <transA = 1> (t, wg, bg)").replace("f = Flatten(p)", "f = Flatten(p)\n    t = Transpose(f)"),
                  GEMM_WEIGHTS)
    assert group_row(model, "a")["reasons"] == ["Gemm -> 'g' has a non-constant weight or transposed input"]
    assert group_row(model, "g")["reasons"] == ["Gemm -> 'g': non-constant weight"] and group_row(model, "g")["channels"] == 5
    model = build(GEMMS.replace("Gemm(f, wg, bg)", "Gemm(t, w1, bg)").replace("f = Flatten(p)", "f = Flatten(p)\n    t = Transpose(f)"),
                  {**GEMM_WEIGHTS, "w1": (1, 5)})
    assert group_row(model, "a")["reasons"] == ["Gemm -> 'g' reads the channels on another axis"]
    model = build(GEMMS, {k: v for k, v in GEMM_WEIGHTS.items() if k != "bg"}, inputs="float[1,3,8,8] x, float[5] bg")
    assert group_row(model, "a")["prunable"]
    out = group_row(model, "g")
    assert (out["channels"], out["reasons"], out["producers"]) == (5, ["Gemm -> 'g': non-constant bias"], [])
    assert channel_groups.analyze(model).origins == ["input x", "Conv -> 'a'", "Gemm -> 'g'", "Gemm -> 'y'"]  # bg: rank 1
    model = build(GEMMS.replace("Gemm(f, wg, bg)", "Gemm(f, f2, bg)").replace("f = Flatten(p)", "f = Flatten(p)\n    f2 = Transpose(f)"),
                  GEMM_WEIGHTS)
    assert group_row(model, "a")["reasons"] == ["used as an operand of Gemm -> 'g'", "Gemm -> 'g' has a non-constant weight or transposed input"]


MATMULS = CONV_A + """    r = Reshape(ra, flat)
    t = Transpose <perm = [0, 2, 1]> (r)
    m = MatMul(t, wm)
    rm = Relu(m)
    y = MatMul(rm, wy)"""


def test_matmul_with_a_constant_weight_reads_rows_and_produces_columns_on_the_last_axis():
    model = build(MATMULS, {"wa": (4, 3, 3, 3), "ba": (4,), "wm": (4, 6), "wy": (6, 2)}, "int64[3] flat = {1, 4, 64}")
    row = group_row(model, "a")
    assert (row["prunable"], row["consumers"], row["followers"]) == (True, ["MatMul -> 'm'"], ["Reshape -> 'r'"])
    assert actions_of(model, "m") == [("input", 1, 0, 4), ("output", 1, 1, 6)]
    assert channel_groups.analyze(model).layouts[node(model, "m").outputs[0]].axis == 2
    assert channel_groups.analyze(model).origins == ["input x", "Conv -> 'a'", "MatMul -> 'm'", "MatMul -> 'y'"]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2], "m": [0, 5]}, [("m", 1, 0, [1, 2]), ("y", 1, 0, [0, 5])])
    assert weight_array(node(pruned, "r").inputs[1]).tolist() == [1, 2, 64]


def test_matmul_reading_channels_on_a_row_axis_or_with_a_3d_weight_refuses_them():
    model = build(CONV_A + "    r = Reshape(ra, flat)\n    y = MatMul(r, wm)", {"wa": (4, 3, 3, 3), "ba": (4,), "wm": (64, 6)}, "int64[3] flat = {1, 4, 64}")
    assert group_row(model, "a")["reasons"] == ["MatMul -> 'y' reads it on a batch or row axis"]
    assert rows_by_producer(model)["MatMul -> 'y'"]["channels"] == 6
    model = build(CONV_A + "    y = MatMul(ra, wm)", {"wa": (4, 3, 3, 3), "ba": (4,), "wm": (1, 8, 8)})
    assert group_row(model, "a")["reasons"] == ["contracted by MatMul -> 'y' of two activations (attention)"]


SQUARE_INPUT = "\n    "  # a case ending in a blank line runs on 4 x 4 images (both operands' C on a matrix axis)
BATCHED = CONV_A + "    b = Conv <pads = [1,1,1,1]> (x, wb, bb)\n    rb = Relu(b)\n    {}\n    y = Conv(m, wy, by)"
BATCHED_WEIGHTS = {"wa": (4, 3, 3, 3), "ba": (4,), "wb": (4, 3, 3, 3), "bb": (4,), "wy": (2, 4, 1, 1), "by": (2,)}


def test_matmul_of_two_activations_with_channels_on_a_batch_axis_merges_them():
    model = build(BATCHED.format("m = MatMul(ra, rb)"), BATCHED_WEIGHTS)
    row = group_row(model, "a")
    assert (row["prunable"], row["producers"], row["consumers"]) == (True, ["Conv -> 'a'", "Conv -> 'b'"], ["Conv -> 'y'"])
    assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, 1, [1, 2])])


@pytest.mark.parametrize("matmul", [
    "t = Transpose <perm = [1, 0, 2, 3]> (rb)\n    m = MatMul(ra, t)",  # channels on axes 1 and 0
    "g = Gather(rb, zero)\n    m = MatMul(ra, g)",  # ranks 4 and 3
    "t = Transpose <perm = [0, 2, 3, 1]> (ra)\n    u = Transpose <perm = [0, 2, 1, 3]> (rb)\n    m0 = MatMul(t, u)\n    m = Transpose <perm = [0, 3, 1, 2]> (m0)",
    "p = ReduceMean <axes = [1]> (x)\n    e = Expand(p, shape)\n    m = MatMul(ra, e)",  # an untracked operand
    "g = Gather(ra, zero)\n    t = Transpose <perm = [1, 0, 2, 3]> (rb)\n    m = MatMul(g, t)",  # ranks 3 and 4, C on axis 0 of both
    "r = Reshape(rb, flat)\n    m0 = MatMul(ra, r)\n    m = Slice(m0, zero1, eight, three)",  # b's C is the contracted row axis
    "t = Transpose <perm = [0, 2, 3, 1]> (ra)\n    u = Transpose <perm = [0, 2, 3, 1]> (rb)\n    m0 = MatMul(t, u)\n    m = Transpose <perm = [0, 3, 1, 2]> (m0)" + SQUARE_INPUT,
    "t = Transpose <perm = [0, 2, 1, 3]> (ra)\n    u = Transpose <perm = [0, 2, 1, 3]> (rb)\n    m0 = MatMul(t, u)\n    m = Transpose <perm = [0, 2, 1, 3]> (m0)" + SQUARE_INPUT,
    "c = Concat <axis = 1> (ra, rb)\n    m0 = MatMul(c, rw)\n    m = Slice(m0, zero1, four, one)",  # segments 4 + 4 against 8
], ids=["different-axes", "different-ranks", "contracting-c", "untracked-operand", "ranks-3-and-4", "contracted-rows",
        "both-on-the-last-axis", "both-on-the-row-axis", "different-segments"])
def test_matmul_of_two_activations_otherwise_is_attention_and_refused(matmul):
    weights = {**BATCHED_WEIGHTS, "ww": (8, 3, 1, 1)}
    if "flat" in matmul:  # a and b need 8 channels of 8 x 8: b's rows are a's columns
        weights.update({"wa": (8, 3, 3, 3), "ba": (8,), "wb": (8, 3, 3, 3), "bb": (8,)})
    body = BATCHED.format(matmul).replace("rb = Relu(b)", "rb = Relu(b)\n    w = Conv(x, ww)\n    rw = Relu(w)")
    model = build(body, weights, "int64 zero = {0}, int64[4] shape = {1, 4, 8, 8}, int64[3] flat = {1, 8, 64}, int64[1] zero1 = {0}, "
                  "int64[1] four = {4}, int64[1] eight = {8}, int64[1] three = {3}, int64[1] one = {1}",
                  inputs="float[1,3,4,4] x" if matmul.endswith(SQUARE_INPUT) else "float[1,3,8,8] x")
    from ir.constants import static_shape
    channel_groups.analyze(model)
    assert static_shape(next(n for n in model.graph if n.op_type == "MatMul").outputs[0]) is not None  # refused by the rule, not for a missing shape
    label = next(n for n in model.graph if n.op_type == "MatMul")
    assert group_row(model, "a")["reasons"] == [f"contracted by {channel_groups.node_label(label)} of two activations (attention)"]


# -- elementwise, concat, normalization: merges and followers ----------------------------------------
def test_residual_add_merges_the_branches_and_per_channel_constants_follow():
    body = BATCHED.format("s = Add(ra, rb)\n    k = Mul(s, kc)\n    n = Add(k, kn)\n    l = Mul(n, kl)\n    m = Sub(l, kb)")
    weights = {**BATCHED_WEIGHTS, "kc": (4, 1, 1), "kn": (1, 4, 1, 1), "kl": (1, 1, 8), "kb": (8, 1, 4, 1, 1)}
    model = build(body.replace("y = Conv(m, wy, by)", "q = ReduceMean <axes = [0], keepdims = 0> (m)\n    y = Conv(q, wy, by)"), weights)
    row = group_row(model, "a")
    assert (row["prunable"], row["producers"], row["followers"]) == (True, ["Conv -> 'a'", "Conv -> 'b'"], ["Add -> 'n'", "Mul -> 'k'", "Sub -> 'm'"])
    assert actions_of(model, "k") == [("constant", 1, 0, 4)] and actions_of(model, "n") == [("constant", 1, 1, 4)]
    assert actions_of(model, "m") == [("constant", 1, 2, 4)] and actions_of(model, "l") == []
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, 1, [1, 2])])
    assert weight_array(node(pruned, "k").inputs[1]).shape == (2, 1, 1) and weight_array(node(pruned, "m").inputs[1]).shape == (8, 1, 2, 1, 1)


SQUARE = "float[1,3,4,4] x"


@pytest.mark.parametrize(("join", "reason"), [
    ("u = Transpose <perm = [0, 2, 1, 3]> (rb)\n    m = Add(ra, u)", "Add -> 'm' joins channels on different axes"),
    ("u = Transpose <perm = [0, 2, 1, 3]> (rb)\n    m = Concat <axis = 3> (ra, u)", "Concat -> 'm' joins channels on different axes"),
    ("c = Concat <axis = 1> (ra, rb)\n    m = Add(c, rw)", "Add -> 'm' joins differently concatenated channels"),
    ("c = Concat <axis = 1> (ra, rb)\n    w2 = Concat <axis = 1> (rb, ra)\n    m = Concat <axis = 2> (c, rw, w2)",
     "Concat -> 'm' joins differently concatenated channels"),
    ("c = Concat <axis = 1> (ra, rb)\n    m = Concat <axis = 2> (c, rw)", "Concat -> 'm' joins differently concatenated channels"),
    ("p = ReduceMean <axes = [1]> (x)\n    e = Expand(p, shape)\n    m = Concat <axis = 1> (ra, e)", "Concat -> 'm' concatenates it with untracked channels"),
    ("p = ReduceMean <axes = [1]> (x)\n    e = Expand(p, shape)\n    m = Concat <axis = 2> (ra, e)", "Concat -> 'm' concatenates it with untracked channels"),
    ("f = Flatten(ra)\n    m = Concat <axis = 1> (f, f)", "Concat -> 'm' concatenates it with untracked channels"),
    ("f = Flatten(ra)\n    m = Split <axis = 1> (f, sizes)", "Split -> 'm' splits the channel axis without a constant split input"),
    ("s = Conv(ra, w1)\n    m = Add(s, full)", "Add -> 'm' broadcasts the channels"),  # s: one channel
    ("s = Conv(ra, w1)\n    m = Expand(s, shape)", "Expand -> 'm' broadcasts the channels"),
    ("s = Shape(ra)\n    m = Reshape(ra, s)", "Reshape -> 'm' has a computed target shape"),
    ("t = Transpose <perm = [0, 2, 1, 3]> (ra)\n    m = Reshape(t, keep)", "Reshape -> 'm' copies a dimension into the channel axis"),
    ("n = BatchNormalization(ra, s4, b4, mean, var)\n    m = Relu(n)", "BatchNormalization -> 'n' has non-constant parameters"),
    ("n = BatchNormalization(ra, scale, b4, b4, s4)\n    m = Relu(n)", "BatchNormalization -> 'n' has non-constant parameters"),
    ("t = Transpose <perm = [0, 2, 1, 3]> (ra)\n    m = BatchNormalization(t, b4, b4, b4, s4)",
     "BatchNormalization -> 'm' normalizes along axis 1, not the tracked channel axis"),
], ids=["add-axes", "concat-axes", "add-segments", "concat-segments", "concat-two-segmentations", "concat-untracked", "concat-other-axis-untracked",
        "concat-blocks", "split-blocks", "add-broadcast", "expand-broadcast", "reshape-computed", "reshape-copy", "bn-run-time",
        "bn-run-time-scale", "bn-axis"])
def test_joins_that_do_not_line_up_are_refused_with_the_reason(join, reason):
    body = CONV_A + "    b = Conv <pads = [1,1,1,1]> (x, wb, bb)\n    rb = Relu(b)\n    w = Conv(x, ww)\n    rw = Relu(w)\n    " + join + "\n    y = Identity(m)"
    weights = {"wa": (4, 3, 3, 3), "ba": (4,), "wb": (4, 3, 3, 3), "bb": (4,), "ww": (8, 3, 1, 1), "w1": (1, 4, 1, 1),
               "full": (1, 4, 4, 4), "s4": (4,), "b4": (4,)}
    inputs = SQUARE + (", float[4] mean, float[4] var" if "mean" in join else ", float[4] scale" if "scale" in join else "")
    model = build(body, weights, "int64[4] shape = {1, 4, 4, 4}, int64[2] sizes = {32, 32}, int64[3] keep = {4, 0, 4}", inputs=inputs)
    carrier = group_row(model, "s" if "s = Conv" in join else "a")
    # a Shape read of the channels is a reason of its own, before the Reshape's
    assert carrier["reasons"] == (["its shape is read by Shape -> 's'"] if "Shape(" in join else []) + [reason]
    assert not carrier["prunable"]


def test_concat_on_another_axis_merges_the_inputs_channels():
    model = build(BATCHED.format("m = Concat <axis = 3> (ra, rb)"), BATCHED_WEIGHTS)
    row = group_row(model, "a")
    assert (row["prunable"], row["producers"]) == (True, ["Conv -> 'a'", "Conv -> 'b'"])
    assert_pruning_matches_zeroed_consumers(model, {"a": [0, 3]}, [("y", 1, 1, [0, 3])])


def test_batch_normalization_parameters_follow_the_channels():
    body = CONV_A + "    n = BatchNormalization(ra, s4, b4, mu, var)\n    y = Conv(n, wy, by)"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "s4": (4,), "b4": (4,), "mu": (4,), "wy": (2, 4, 1, 1), "by": (2,)},
                  "float[4] var = {0.5, 1.0, 2.0, 4.0}")
    assert group_row(model, "a")["followers"] == ["BatchNormalization -> 'n'"]
    assert actions_of(model, "n") == [("constant", i, 0, 4) for i in (1, 2, 3, 4)]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, 1, [1, 2])])
    assert weight_array(node(pruned, "n").inputs[4]).tolist() == [0.5, 4.0]


# -- constant shapes and offsets that follow the kept counts -------------------------------------------
def test_resize_sizes_entry_follows_the_kept_channels():
    model = build(CONV_A + "    z = Resize(ra, , , sz)\n    y = Conv(z, wy, by)", {"wa": (4, 3, 3, 3), "ba": (4,), "wy": (2, 4, 1, 1), "by": (2,)},
                  "int64[4] sz = {1, 4, 16, 16}")
    assert group_row(model, "a")["followers"] == ["Resize -> 'z'"] and actions_of(model, "z") == [("shape", 3, 1, 4)]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, 1, [1, 2])])
    assert weight_array(node(pruned, "z").inputs[3]).tolist() == [1, 2, 16, 16]


CONCAT_PIECES = CONV_A + """    b = Conv <pads = [1,1,1,1]> (x, wb, bb)
    rb = Relu(b)
    c = Concat <axis = 1> (ra, rb)
    {}
    u = Conv(p, wu)
    v = Conv(q, wv)
    y = Add(u, v)"""


@pytest.mark.parametrize(("pieces", "constants", "rewritten"), [
    ("p, q = Split <axis = 1> (c, sizes)", "int64[2] sizes = {4, 4}", {"p": (1, [3, 2])}),
    ("p = Slice(c, zero, four, one)\n    q = Slice(c, four, eight, one)", "", {"p": (2, [3]), "q": (1, [3])}),
    ("p = Slice(c, zero, four, minus3)\n    q = Slice(c, four, big, minus3)", "", {"p": (2, [3]), "q": (1, [3])}),
    ("p = Slice(c, st, en, axes)\n    q = Slice(c, st2, eight2, axes)", "int64[2] st = {0, 0}, int64[2] en = {9, 4}, int64[2] axes = {-1, 1}, "
     "int64[2] st2 = {0, 4}, int64[2] eight2 = {8, 8}", {"p": (2, [9, 3]), "q": (1, [0, 3])}),
], ids=["split", "slice", "slice-negative-axis-open-end", "slice-two-axes"])
def test_split_sizes_and_slice_offsets_become_kept_counts(pieces, constants, rewritten):
    names = "int64[1] zero = {0}, int64[1] four = {4}, int64[1] eight = {8}, int64[1] big = {9223372036854775807}, int64[1] one = {1}, int64[1] minus3 = {-3}"
    model = build(CONCAT_PIECES.format(pieces),
                  {**{k: v for k, v in BATCHED_WEIGHTS.items() if k[1] in "ab"}, "wu": (2, 4, 1, 1), "wv": (2, 4, 1, 1)},
                  ", ".join(filter(None, [constants, names])))
    assert [group_row(model, n)["prunable"] for n in ("a", "b")] == [True, True]
    assert group_row(model, "a")["consumers"] == ["Conv -> 'u'"] and group_row(model, "b")["consumers"] == ["Conv -> 'v'"]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [1], "b": [0, 3]}, [("u", 1, 1, [1]), ("v", 1, 1, [0, 3])])
    for name, (index, values) in rewritten.items():
        assert weight_array(node(pruned, name).inputs[index]).tolist() == values
    # a piece starting at channel 0 has no start to rewrite: only its end (at the first concat boundary) follows
    p_actions = [(kind, index) for kind, index, _, _ in actions_of(model, "p")]
    assert p_actions == ([("shape", 1), ("shape", 1)] if "Split" in pieces else [("shape", 2)])
    q = node(pruned, "q")
    if q.op_type == "Slice":  # the second piece ends at or past the last channel: its end is left alone
        assert weight_array(q.inputs[2]).tolist() in ([8], [8, 8], [9223372036854775807])


def test_an_initializer_listed_as_a_graph_input_is_a_weight_not_an_input():
    model = build(CONV_A + "    y = Conv(ra, wy)", {"wa": (4, 3, 3, 3), "ba": (4,), "wy": (2, 4, 1, 1)},
                  inputs="float[4,3,3,3] wa, float[1,3,8,8] x")
    analysis = channel_groups.analyze(model)
    assert analysis.origins == ["input x", "Conv -> 'a'", "Conv -> 'y'"]
    assert analysis.layouts[model.graph.inputs[1]] == channel_groups.Layout(1, (channel_groups.Segment(0, 3),))
    assert group_row(model, "a")["prunable"]


def test_a_rank_2_graph_input_starts_a_space_of_its_features():
    model = build("y = Gemm <transB = 1> (x, wy, by)", {"wy": (2, 16), "by": (2,)}, inputs="float[1,16] x")
    analysis = channel_groups.analyze(model)
    assert analysis.origins == ["input x", "Gemm -> 'y'"] and analysis.reasons[0] == ["graph input 'x'"]


@pytest.mark.parametrize(("layer", "weight"), [
    ("ConvTranspose(m, wl)", (1, 5, 2, 2)),
    ("Gemm(f, wl)", (64, 5)),
], ids=["conv-transpose", "gemm"])
def test_a_layer_reading_untracked_channels_still_produces_a_prunable_group(layer, weight):
    body = CONV_A + f"    m = ReduceMean <axes = [1]> (ra)\n    f = Flatten(m)\n    l = {layer}\n    rl = Relu(l)\n    y = {{}}"
    consumer = "Conv(rl, wy)" if layer.startswith("Conv") else "Gemm <transB = 1> (rl, wy)"
    model = build(body.format(consumer), {"wa": (4, 3, 3, 3), "ba": (4,), "wl": weight,
                                          "wy": (2, 5, 1, 1) if layer.startswith("Conv") else (2, 5)})
    row = group_row(model, "l")
    assert (row["channels"], row["prunable"], row["producers"]) == (5, True, [f"{layer.split('(')[0]} -> 'l'"])


def test_an_op_with_a_subgraph_reading_the_channels_refuses_them():
    body = CONV_A + """    y = Loop <body = step (int64 i, bool c, float[1,4,8,8] v) => (bool co, float[1,4,8,8] vo) {
        co = Identity(c)
        vo = Relu(v)
    }> (trips, go, ra)"""
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,)}, "int64 trips = {2}, bool go = {1}")
    assert group_row(model, "a")["reasons"] == ["read by Loop -> 'y', which has subgraphs"]


ATTENTION = """q0 = MatMul(x, wq)
    q1 = Reshape(q0, heads)
    q = Transpose <perm = [0, 2, 1, 3]> (q1)
    k0 = MatMul(x, wk)
    k1 = Reshape(k0, heads)
    k = Transpose <perm = [0, 2, 3, 1]> (k1)
    v0 = MatMul(x, wv)
    v1 = Reshape(v0, heads)
    v = Transpose <perm = [0, 2, 1, 3]> (v1)
    s = MatMul(q, k)
    p = Softmax(s)
    c0 = MatMul(p, v)
    c1 = Transpose <perm = [0, 2, 1, 3]> (c0)
    c = Reshape(c1, merged)
    y = MatMul(c, wo)"""


def test_attention_heads_are_one_group_of_whole_heads():
    model = build(ATTENTION, {"wq": (8, 8), "wk": (8, 8), "wv": (8, 8), "wo": (8, 5)},
                  "int64[4] heads = {1, 6, 2, 4}, int64[3] merged = {1, 6, 8}", inputs="float[1,6,8] x")
    row = group_row(model, "q")
    assert (row["channels"], row["prunable"], row["reasons"]) == (2, True, [])
    assert (row["producers"], row["consumers"]) == (["MatMul -> 'q0'", "MatMul -> 'k0'", "MatMul -> 'v0'"], ["MatMul -> 'y'"])
    assert row["followers"] == ["Reshape -> 'c'", "Reshape -> 'k1'", "Reshape -> 'q1'", "Reshape -> 'v1'"]
    analysis = channel_groups.analyze(model)
    assert analysis.layouts[node(model, "q").outputs[0]].axis == 1 and analysis.layouts[node(model, "c").outputs[0]].block == 4
    assert analysis.layouts[node(model, "q0").outputs[0]] == channel_groups.Layout(2, (channel_groups.Segment(1, 2),), 4)  # heads of 4
    pruned = assert_pruning_matches_zeroed_consumers(model, {"q": [1]}, [("y", 1, 0, [4, 5, 6, 7])])
    assert weight_array(node(pruned, "q0").inputs[1]).shape == (8, 4) and weight_array(node(pruned, "y").inputs[1]).shape == (4, 5)
    assert weight_array(node(pruned, "q1").inputs[1]).tolist() == [1, 6, 1, 4] and weight_array(node(pruned, "c").inputs[1]).tolist() == [1, 6, 4]


@pytest.mark.parametrize(("inputs", "heads", "channels", "reason"), [
    ("float[1,6,8] x", "{1, 6, 1, 8}", 8, None),  # one head of 8: not a split, the 8 features stay channels
    ("float[1,6,8] x", "{1, 6, 8, 1}", 8, None),
    ("float[1,6,8] x", "{1, 6, 4, 2}", 4, None),  # four heads of two features
    ("float[2,3,8] x", "{2, 3, 2, 4}", 2, None),  # two axes before the features
    ("float[1,6,8] x", "{1, 6, -1, 4}", 8, "Reshape -> 'q1' splits the channel axis into 2 x 4 (attention heads"),
    ("float[1,6,8] x", "{1, 6, 2, -1}", 2, None),  # an inferred head size stays right as heads go
    ("float[1,6,8] x", "{1, 3, 4, 4}", 8, "Reshape -> 'q1' mixes the channel axis with other axes"),  # 6 x 8 regrouped as 3 x 16
], ids=["one-head", "unit-heads", "heads-of-two", "two-leading-axes", "computed-heads", "computed-head-size", "mixed-with-the-sequence"])
def test_a_reshape_into_heads_needs_a_constant_head_count_above_one(inputs, heads, channels, reason):
    model = build("q0 = MatMul(x, wq)\n    q1 = Reshape(q0, heads)\n    y = Relu(q1)", {"wq": (8, 8)}, f"int64[4] heads = {heads}",
                  inputs=inputs)
    row = group_row(model, "q0")
    assert row["channels"] == channels
    if reason is None:
        assert row["reasons"] == ["reaches graph output 'y'"]
    else:
        assert row["reasons"][0].startswith(reason)


@pytest.mark.parametrize("other", [
    "c = Concat <axis = 2> (q0, k0)",  # the features are also concatenated with another layer's
    "t = Transpose <perm = [0, 2, 1]> (q0)\n    c = Flatten(t)",  # the features also become blocks of a Flatten
], ids=["concatenated", "flattened"])
def test_features_used_elsewhere_as_whole_channels_are_not_split_into_heads(other):
    body = f"q0 = MatMul(x, wq)\n    k0 = MatMul(x, wk)\n    {other}\n    q1 = Reshape(q0, heads)\n    y = Relu(q1)"
    model = build(body, {"wq": (8, 8), "wk": (8, 8)}, "int64[4] heads = {1, 6, 2, 4}", inputs="float[1,6,8] x")
    row = group_row(model, "q0")
    assert row["channels"] == 8
    assert "Reshape -> 'q1' splits the channel axis into 2 x 4 (attention heads or a channel shuffle) in a way whole heads cannot be tracked" in row["reasons"]


def test_a_reason_on_either_branch_blocks_the_merged_group():
    body = CONV_A + "    b = Conv <pads = [1,1,1,1]> (x, wb, bb)\n    rb = Relu(b)\n    n = LRN <size = 3> (rb)\n    s = Add(ra, rb)\n    y = Conv(s, wy)"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wb": (4, 3, 3, 3), "bb": (4,), "wy": (2, 4, 1, 1)})
    row = group_row(model, "a")
    assert (row["producers"], row["prunable"], row["reasons"]) == (["Conv -> 'a'", "Conv -> 'b'"], False, ["LRN -> 'n' mixes neighbouring channels"])
    assert channel_groups.analyze(model).group_of(2).spaces == [1, 2]  # a's and b's (0 is the input's)


# -- older opsets: Pad pads and Upsample scales where those opsets keep them --------------------------
@pytest.mark.parametrize(("op", "prunable"), [
    ("Pad <pads = [0, 0, 1, 1, 0, 0, 1, 1]> (ra)", True),
    ("Pad <pads = [0, 1, 0, 0, 0, 0, 0, 0]> (ra)", False),
    ("Upsample <mode = \"nearest\"> (ra, sc)", True),
    ("Upsample <mode = \"nearest\"> (ra, sc2)", False),
], ids=["pad-attribute-spatial", "pad-attribute-on-c", "upsample-spatial", "upsample-on-c"])
def test_opset_9_pad_attribute_and_upsample_scales_input(op, prunable):
    body = CONV_A + f"    z = {op}\n    y = Conv(z, wy, by)"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wy": (2, 4, 1, 1), "by": (2,)},
                  "float[4] sc = {1.0, 1.0, 2.0, 2.0}, float[4] sc2 = {1.0, 2.0, 1.0, 1.0}")
    model.opset_imports[""] = 9
    row = group_row(model, "a")
    assert row["prunable"] == prunable
    if prunable:
        assert row["consumers"] == ["Conv -> 'y'"] and row["reasons"] == []
        assert_pruning_matches_zeroed_consumers(model, {"a": [1, 2]}, [("y", 1, 1, [1, 2])])
    else:
        assert row["reasons"] == [f"{op.split()[0]} -> 'z' {'pads the channel axis' if op.startswith('Pad') else 'has no constant scale of 1 on the channel axis'}"]


def test_conv_transpose_with_a_run_time_weight_blocks_both_sides():
    model = build(CONV_TRANSPOSE, {"wa": (4, 3, 3, 3), "ba": (4,), "bt": (5,), "wy": (2, 5, 1, 1), "by": (2,)},
                  inputs="float[1,3,8,8] x, float[4,5,2,2] wt")
    reason = "ConvTranspose -> 't': grouped or non-constant weight"
    assert group_row(model, "a")["reasons"] == [reason]
    assert group_row(model, "t")["reasons"] == [reason] and group_row(model, "t")["channels"] == 5
    model = build(CONV_TRANSPOSE, {"wa": (4, 3, 3, 3), "ba": (4,), "wt": (4, 5, 2, 2), "wy": (2, 5, 1, 1), "by": (2,)},
                  inputs="float[1,3,8,8] x, float[5] bt")
    assert group_row(model, "a")["reasons"] == [reason]
    model = build(CONV_TRANSPOSE, {"wa": (4, 3, 3, 3), "ba": (4,), "bt": (5,), "wy": (2, 5, 1, 1), "by": (2,)},
                  inputs="float[1,3,8,8] x, float[4,N,2,2] wt")
    assert group_row(model, "a")["reasons"] == [reason]
    assert not any(v.name == "t" for v in channel_groups.analyze(model).layouts)  # its channel count is unknown
    model = build(CONV_TRANSPOSE, {"wa": (4, 3, 3, 3), "ba": (4,), "wt": (4, 5, 2, 2), "bt": (5,), "wy": (2, 5, 1, 1), "by": (2,)})
    assert channel_groups.analyze(model).origins == ["input x", "Conv -> 'a'", "ConvTranspose -> 't'", "Conv -> 'y'"]


# -- a value whose shape is not static (a symbolic batch): nothing downstream is guessed ---------------
@pytest.mark.parametrize(("op", "reason"), [
    ("Slice(ra, zero, two, one)", "Slice -> 'y' has an unknown rank"),
    ("Split <axis = 1> (ra, two2)", "Split -> 'y' has an unknown rank"),
    ("Transpose(ra)", "Transpose -> 'y' has an unknown rank"),
    ("Expand(ra, shape)", "Expand -> 'y' has unknown shapes"),
    ("Flatten(ra)", "Flatten -> 'y' has unknown shapes"),
    ("Reshape(ra, shape)", "Reshape -> 'y' has a computed target shape"),
    ("Softmax(ra)", "Softmax -> 'y' normalizes over the channel axis"),
    ("LayerNormalization(ra, s8, b8)", "LayerNormalization -> 'y' normalizes over the channel axis"),
    ("ReduceMean <axes = [2]> (ra)", "ReduceMean -> 'y' reduces over the channel axis"),
    ("Gather <axis = 2> (ra, zero)", "Gather -> 'y' gathers along the channel axis"),
    ("Pad(ra, pads)", "Pad -> 'y' has non-constant pads"),
    ("Add(ra, ra)", "Add -> 'y' has an unknown output shape"),
    ("Concat <axis = 1> (ra, ra)", "Concat -> 'y' has an unknown output shape"),
    ("MatMul(ra, w88)", "contracted by MatMul -> 'y' of two activations (attention)"),
], ids=["slice", "split", "transpose", "expand", "flatten", "reshape", "softmax", "layernorm", "reduce", "gather", "pad", "add",
        "concat", "matmul"])
def test_ops_on_a_value_of_unknown_shape_refuse_it(op, reason):
    body = CONV_A + f"    y = {op}"
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "s8": (8,), "b8": (8,), "w88": (8, 8)},
                  "int64[1] zero = {0}, int64[1] two = {2}, int64[1] one = {1}, int64[2] two2 = {2, 2}, "
                  "int64[4] shape = {1, 4, 8, 8}, int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}", inputs="float[N,3,8,8] x")
    analysis = channel_groups.analyze(model)  # a is tracked (4 channels from its weight), its shape has a symbolic batch
    space = analysis.layouts[node(model, "a").outputs[0]].segments[0].space
    assert analysis.group_of(space).reasons == ["Conv -> 'a': non-constant weight or unknown shape", reason]


def test_a_split_into_three_pieces_offsets_each_by_the_sizes_before_it():
    body = CONV_A + """    b = Conv <pads = [1,1,1,1]> (x, wb, bb)
    c = Conv <pads = [1,1,1,1]> (x, wc, bc)
    k = Concat <axis = 1> (ra, b, c)
    p, q, r = Split <axis = 1> (k, sizes)
    u = Conv(p, wu)
    v = Conv(q, wv)
    w = Conv(r, ww)
    s = Add(u, v)
    y = Add(s, w)"""
    model = build(body, {"wa": (4, 3, 3, 3), "ba": (4,), "wb": (2, 3, 3, 3), "bb": (2,), "wc": (3, 3, 3, 3), "bc": (3,),
                         "wu": (2, 4, 1, 1), "wv": (2, 2, 1, 1), "ww": (2, 3, 1, 1)}, "int64[3] sizes = {4, 2, 3}")
    assert [group_row(model, n)["consumers"] for n in ("a", "b", "c")] == [["Conv -> 'u'"], ["Conv -> 'v'"], ["Conv -> 'w'"]]
    pruned = assert_pruning_matches_zeroed_consumers(model, {"a": [0], "c": [1]}, [("u", 1, 1, [0]), ("w", 1, 1, [1])])
    assert weight_array(node(pruned, "p").inputs[1]).tolist() == [3, 2, 2]

