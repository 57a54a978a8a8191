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
    return next(n for n in model.graph if n.outputs and n.outputs[0].name == output)


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
    ("reduce-mean-spatial", "z = ReduceMean <axes = [2, 3]> (ra)", "", "conv", 1),
    ("reduce-max-negative-axes", "z = ReduceMax <axes = [-1, -2]> (ra)", "", "conv", 1),
    ("reduce-sum-axes-input", "z = ReduceSum(ra, ax)", "int64[1] ax = {3}", "conv", 1),
    ("reduce-mean-dropped-axes-behind-c", "m = ReduceMean <axes = [2, 3], keepdims = 0> (ra)\n    z = Unsqueeze(m, ax)",
     "int64[2] ax = {2, 3}", "conv", 1),
    ("reduce-sum-dropped-axes-before-c", "t = Transpose <perm = [0, 2, 3, 1]> (ra)\n    m = ReduceSum <keepdims = 0> (t, ax)\n"
     "    z = Unsqueeze(m, ax2)", "int64[2] ax = {1, 2}, int64[2] ax2 = {2, 3}", "conv", 1),
    ("argmax-spatial", "m = ArgMax <axis = 3> (ra)\n    z = Cast <to = 1> (m)", "", "conv", 1),
    ("argmax-batch-dropped", "m = ArgMax <axis = 0, keepdims = 0> (ra)\n    c = Cast <to = 1> (m)\n    z = Unsqueeze(c, ax)",
     "int64[1] ax = {0}", "conv", 1),
    ("gather-spatial", "g = Gather <axis = 2> (ra, idx)\n    z = Reshape(g, shape)",
     "int64[1,2] idx = {0, 3}, int64[4] shape = {1, 4, 2, 8}", "conv", 1),
    ("gather-batch-rank-2-indices", "g = Gather(ra, idx)\n    z = Squeeze(g, ax)", "int64[1,1] idx = {0}, int64[1] ax = {0}", "conv", 1),
    ("gather-batch-scalar-index", "g = Gather(ra, idx)\n    z = Unsqueeze(g, ax)", "int64 idx = {0}, int64[1] ax = {0}", "conv", 1),
    ("layernorm-spatial", "z = LayerNormalization <axis = 2> (ra, ln_s, ln_b)", "", "conv", 1),
    ("layernorm-negative-axis", "z = LayerNormalization <axis = -1> (ra, ln1_s, ln1_b)", "", "conv", 1),
    ("expand-batch", "z = Expand(ra, shape)", "int64[4] shape = {2, 1, 1, 1}", "conv", 1),
    ("expand-rank", "e = Expand(ra, shape)\n    z = Reshape(e, back)", "int64[5] shape = {3, 1, 1, 1, 1}, int64[4] back = {3, 4, 8, 8}",
     "conv", 1),
    ("softmax-last-axis", "z = Softmax(ra)", "", "conv", 1),
    ("logsoftmax-spatial", "z = LogSoftmax <axis = 2> (ra)", "", "conv", 1),
    ("transpose-reversed-and-back", "t = Transpose(ra)\n    z = Transpose <perm = [3, 2, 0, 1]> (t)", "", "conv", 1),
    ("split-spatial", "p, q = Split <axis = 2> (ra, sizes)\n    z = Add(p, q)", "int64[2] sizes = {4, 4}", "conv", 1),
    ("split-batch-default-axis", "e = Expand(ra, shape)\n    p, q = Split(e, sizes)\n    z = Sub(p, q)",
     "int64[4] shape = {2, 1, 1, 1}, int64[2] sizes = {1, 1}", "conv", 1),
    ("slice-spatial", "z = Slice(ra, st, en, ax)", "int64[1] st = {1}, int64[1] en = {7}, int64[1] ax = {-1}", "conv", 1),
    ("slice-whole-channels-without-axes", "z = Slice(ra, st, en)", "int64[2] st = {0, 0}, int64[2] en = {1, 4}", "conv", 1),
    ("concat-spatial", "z = Concat <axis = 3> (ra, ra)", "", "conv", 1),
    ("instance-norm", "z = InstanceNormalization(ra, in_s, in_b)", "", "conv", 1),
    ("mul-broadcast-scalar", "z = Mul(ra, half)", "float half = {0.5}", "conv", 1),
    ("flatten-into-gemm", "p = MaxPool <kernel_shape = [4, 4], strides = [4, 4]> (ra)\n    z = Flatten(p)", "", "gemm", 4),
    ("global-pool-flatten-into-matmul", "p = GlobalAveragePool(ra)\n    z = Flatten(p)", "", "matmul", 1),
    ("squeeze-into-matmul", "p = GlobalMaxPool(ra)\n    z = Squeeze(p, ax)", "int64[2] ax = {2, 3}", "matmul", 1),
]
CONSUMERS = {  # kind: (line, weight shape for 4 channels of block b, weight axis read)
    "conv": ("y = Conv(z, wy, by)", lambda b: (2, 4, 1, 1), 1),
    "gemm": ("y = Gemm <transB = 1> (z, wy, by)", lambda b: (2, 4 * b), 1),
    "matmul": ("y = MatMul(z, wy)", lambda b: (4 * b, 2), 0),
}
NORM_WEIGHTS = {"ln_s": (8, 8), "ln_b": (8, 8), "ln1_s": (8,), "ln1_b": (8,), "in_s": (4,), "in_b": (4,)}


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
    ("resize-empty-scales-no-sizes", "y = Resize(ra, , sc)", "float[0] sc = {}", "Resize -> 'y' has no constant scale of 1 on the channel axis"),
    ("pad-c-begin", "y = Pad(ra, pads)", "int64[8] pads = {0, 1, 0, 0, 0, 0, 0, 0}", "Pad -> 'y' pads the channel axis"),
    ("pad-c-end", "y = Pad(ra, pads)", "int64[8] pads = {0, 0, 0, 0, 0, 2, 0, 0}", "Pad -> 'y' pads the channel axis"),
    ("pad-axes-input", "y = Pad(ra, pads, , axes)", "int64[2] pads = {1, 1}, int64[1] axes = {2}", "Pad -> 'y' has non-constant pads"),
    ("reduce-over-c", "y = ReduceMean <axes = [1]> (ra)", "", "ReduceMean -> 'y' reduces over the channel axis"),
    ("reduce-over-c-negative", "y = ReduceSum(ra, ax)", "int64[1] ax = {-3}", "ReduceSum -> 'y' reduces over the channel axis"),
    ("reduce-all", "y = ReduceL2(ra)", "", "ReduceL2 -> 'y' reduces over the channel axis"),
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
