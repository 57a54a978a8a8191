"""eliminate-noop removes nodes that pass their input through, and nothing else."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from conftest import (
    apply_pass,
    assert_same_outputs,
    assert_same_outputs_in_both_branches,
    branch_model_text,
    model_text,
    op_types,
    then_branch,
)
from passes.base import create


def apply(text: str):
    return apply_pass("eliminate-noop", text)


def assert_equivalent(before: ir.Model, after: ir.Model) -> None:
    assert_same_outputs(before, after, max_abs=1e-6)


# Each case: (body, expected op types after, extra model arguments). The no-op sits between x and Relu.
REMOVED = {
    "identity": ("t = Identity(x)\n y = Relu(t)", {}),
    "dropout inference": ("t = Dropout(x)\n y = Relu(t)", {}),
    "dropout training false": ("t = Dropout(x, r, f)\n y = Relu(t)", {"inits": "float r = {0.5}, bool f = {0}"}),
    "dropout ratio zero in training": ("t = Dropout(x, r, tr)\n y = Relu(t)", {"inits": "float r = {0.0}, bool tr = {1}"}),
    "dropout opset 9": ("t = Dropout <ratio = 0.3> (x)\n y = Relu(t)", {"opset": 9}),
    "reshape same shape": ("t = Reshape(x, s)\n y = Relu(t)", {"inits": "int64[2] s = {2, 3}"}),
    "reshape copy and infer": ("t = Reshape(x, s)\n y = Relu(t)", {"inits": "int64[2] s = {0, -1}"}),
    "reshape symbolic copy": (
        "t = Reshape(x, s)\n y = Relu(t)",
        {"inputs": "float[N,3] x", "outputs": "float[N,3] y", "inits": "int64[2] s = {0, 3}"},
    ),
    "transpose identity": ("t = Transpose <perm = [0, 1]> (x)\n y = Relu(t)", {}),
    "transpose of unit dims": (
        "t = Transpose <perm = [2, 1, 0]> (x)\n y = Relu(t)",
        {"inputs": "float[1,5,1] x", "outputs": "float[1,5,1] y"},
    ),
    "cast same type": ("t = Cast <to = 1> (x)\n y = Relu(t)", {}),
    "castlike same type": ("t = CastLike(x, x)\n y = Relu(t)", {}),
    "pad zeros": ("t = Pad(x, p)\n y = Relu(t)", {"inits": "int64[4] p = {0, 0, 0, 0}"}),
    "pad zeros opset 10": ("t = Pad <pads = [0, 0, 0, 0]> (x)\n y = Relu(t)", {"opset": 10}),
    "slice whole": ("t = Slice(x, s, e)\n y = Relu(t)", {"inits": "int64[2] s = {0, -100}, int64[2] e = {2, 9223372036854775807}"}),
    "slice whole opset 9": ("t = Slice <starts = [0], ends = [1000], axes = [1]> (x)\n y = Relu(t)", {"opset": 9}),
    "expand to own shape": ("t = Expand(x, s)\n y = Relu(t)", {"inits": "int64[2] s = {1, 3}"}),
    "flatten matrix": ("t = Flatten <axis = 1> (x)\n y = Relu(t)", {}),
    "squeeze nothing": ("t = Squeeze(x)\n y = Relu(t)", {}),
    "concat of one": ("t = Concat <axis = 0> (x)\n y = Relu(t)", {}),
    "split into one": ("t = Split <axis = 0> (x)\n y = Relu(t)", {}),
    "add zero": ("t = Add(x, z)\n y = Relu(t)", {"inits": "float[3] z = {0, 0, 0}"}),
    "zero plus": ("t = Add(z, x)\n y = Relu(t)", {"inits": "float z = {0}"}),
    "sub zero": ("t = Sub(x, z)\n y = Relu(t)", {"inits": "float z = {0}"}),
    "mul one": ("t = Mul(o, x)\n y = Relu(t)", {"inits": "float[2,1] o = {1, 1}"}),
    "div one": ("t = Div(x, o)\n y = Relu(t)", {"inits": "float o = {1}"}),
}


@pytest.mark.parametrize("case", REMOVED)
def test_noop_is_removed(case):
    body, args = REMOVED[case]
    before, result, noop = apply(model_text(body, **args))
    assert result.modified
    assert op_types(result.model) == ["Relu"]
    assert sum(noop.stats.values()) == 1
    assert_equivalent(before, result.model)


KEPT = {
    "dropout mask used": (
        "t, m = Dropout(x)\n y = Relu(t)",
        {"outputs": "float[2,3] y, bool[2,3] m"},
    ),
    "dropout training": ("t = Dropout(x, r, tr)\n y = Relu(t)", {"inits": "float r = {0.5}, bool tr = {1}"}),
    "dropout opset 6 training": ("t = Dropout <is_test = 0> (x)\n y = Relu(t)", {"opset": 6}),
    "reshape other shape": ("t = Reshape(x, s)\n y = Relu(t)", {"outputs": "float[3,2] y", "inits": "int64[2] s = {3, 2}"}),
    "reshape symbolic infer": (
        "t = Reshape(x, s)\n y = Relu(t)",
        {"inputs": "float[N,M] x", "outputs": "float[A,B] y", "inits": "int64[2] s = {-1, 3}"},
    ),
    "reshape shape from input": (
        "t = Reshape(x, s)\n y = Relu(t)",
        {"inputs": "float[2,3] x, int64[2] s", "outputs": "float[A,B] y"},
    ),
    "transpose swap": ("t = Transpose <perm = [1, 0]> (x)\n y = Relu(t)", {"outputs": "float[3,2] y"}),
    "transpose default": ("t = Transpose(x)\n y = Relu(t)", {"outputs": "float[3,2] y"}),
    "cast other type": ("t = Cast <to = 10> (x)\n y = Relu(t)", {"outputs": "float16[2,3] y"}),
    "pad nonzero": ("t = Pad(x, p)\n y = Relu(t)", {"outputs": "float[2,4] y", "inits": "int64[4] p = {0, 1, 0, 0}"}),
    "slice part": ("t = Slice(x, s, e)\n y = Relu(t)", {"outputs": "float[1,3] y", "inits": "int64[1] s = {0}, int64[1] e = {1}"}),
    "slice reversed": (
        "t = Slice(x, s, e, a, st)\n y = Relu(t)",
        {"outputs": "float[2,3] y", "inits": "int64[1] s = {-1}, int64[1] e = {-100}, int64[1] a = {1}, int64[1] st = {-1}"},
    ),
    "expand larger": ("t = Expand(x, s)\n y = Relu(t)", {"outputs": "float[4,2,3] y", "inits": "int64[3] s = {4, 1, 1}"}),
    "flatten 3d": ("t = Flatten <axis = 1> (x)\n y = Relu(t)", {"inputs": "float[2,3,4] x", "outputs": "float[2,12] y"}),
    "concat of two": ("t = Concat <axis = 0> (x, x)\n y = Relu(t)", {"outputs": "float[4,3] y"}),
    "add zero broadcasting up": ("t = Add(x, z)\n y = Relu(t)", {"outputs": "float[2,2,3] y", "inits": "float[2,1,1] z = {0, 0}"}),
    "add nonzero": ("t = Add(x, z)\n y = Relu(t)", {"inits": "float z = {0.5}"}),
    "zero minus": ("t = Sub(z, x)\n y = Relu(t)", {"inits": "float z = {0}"}),
    "one divided by": ("t = Div(o, x)\n y = Relu(t)", {"inits": "float o = {1}"}),
    "add of overridable zero": ("t = Add(x, z)\n y = Relu(t)", {"inputs": "float[2,3] x, float z", "inits": "float z = {0}"}),
}


@pytest.mark.parametrize("case", KEPT)
def test_non_noop_is_kept(case):
    body, args = KEPT[case]
    before, result, _ = apply(model_text(body, **args))
    assert not result.modified
    assert op_types(result.model) == op_types(before)


def test_graph_output_keeps_its_name():
    before, result, _ = apply(model_text("t = Relu(x)\n y = Identity(t)"))
    assert op_types(result.model) == ["Relu"]
    assert [v.name for v in result.model.graph.outputs] == ["y"]
    assert result.model.graph.outputs[0].producer().op_type == "Relu"
    assert_equivalent(before, result.model)


def test_identity_between_graph_input_and_output_stays():
    _, result, _ = apply(model_text("y = Identity(x)"))
    assert not result.modified
    assert op_types(result.model) == ["Identity"]


def test_identity_between_two_graph_outputs_stays():
    text = model_text("t = Relu(x)\n y = Identity(t)", outputs="float[2,3] t, float[2,3] y")
    _, result, _ = apply(text)
    assert not result.modified


def test_other_consumers_of_the_input_are_kept():
    before, result, _ = apply(model_text("t = Relu(x)\n u = Identity(t)\n y = Add(t, u)"))
    assert op_types(result.model) == ["Relu", "Add"]
    add = list(result.model.graph)[1]
    assert add.inputs[0] is add.inputs[1]
    assert_equivalent(before, result.model)


def test_chain_of_noops_goes_in_one_run():
    body = "a = Identity(x)\n b = Cast <to = 1> (a)\n c = Transpose <perm = [0, 1]> (b)\n y = Identity(c)"
    before, result, _ = apply(model_text(body))
    # The last Identity connects the graph input to the graph output: it must stay.
    assert op_types(result.model) == ["Identity"]
    assert result.model.graph.outputs[0].name == "y"
    assert_equivalent(before, result.model)


def test_custom_domain_node_is_left_alone_and_noted():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.acme" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
        t = com.acme.Identity(x)
        y = Relu(t)
    }
    """
    model = ir.from_onnx_text(text)
    noop = create("eliminate-noop")
    assert not noop(model).modified
    assert any("com.acme" in note and "custom op" in note for note in noop.notes)


def test_noop_inside_if_branch_is_removed():
    text = branch_model_text("r = Relu(x)  t = Identity(r)")
    before, result, _ = apply(text)
    model = result.model
    assert result.modified
    branch = then_branch(model)
    assert [n.op_type for n in branch] == ["Relu"]
    assert branch.outputs[0].name == "t"
    assert_same_outputs_in_both_branches(before, model)


def test_noop_inside_model_local_function_is_removed():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
        y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 17]>
    f (a) => (b) {
        t = Identity(a)
        b = Relu(t)
    }
    """
    before, result, _ = apply(text)
    assert result.modified
    model = result.model
    function = next(iter(model.functions.values()))
    assert [n.op_type for n in function] == ["Relu"]
    assert_equivalent(before, model)


def test_nothing_to_do_reports_unmodified():
    _, result, noop = apply(model_text("y = Relu(x)"))
    assert not result.modified
    assert not noop.stats


# The same rules on the last node, whose output is a graph output: view ops are then judged by their own
# rule (the inferred-shape shortcut does not apply to a declared shape). The no-op reads t = Relu(x).
REMOVED_AT_OUTPUT = {
    "reshape same shape": ("y = Reshape(t, s)", {"inits": "int64[2] s = {2, 3}"}),
    "reshape one -1": ("y = Reshape(t, s)", {"inits": "int64[2] s = {2, -1}"}),
    "flatten default axis": ("y = Flatten(t)", {}),
    "flatten axis -1": ("y = Flatten <axis = -1> (t)", {}),
    "expand to own shape": ("y = Expand(t, s)", {"inits": "int64[2] s = {1, 3}"}),
    "slice whole on axis -1": ("y = Slice(t, s, e, a)", {"inits": "int64[1] s = {0}, int64[1] e = {3}, int64[1] a = {-1}"}),
    "dropout opset 7": ("y = Dropout(t)", {"opset": 7}),
    "dropout opset 6 is_test": ("y = Dropout <is_test = 1> (t)", {"opset": 6}),
    "pad zeros opset 11": ("y = Pad(t, p)", {"opset": 11, "inits": "int64[4] p = {0, 0, 0, 0}"}),
}


@pytest.mark.parametrize("case", REMOVED_AT_OUTPUT)
def test_noop_writing_a_graph_output_is_removed(case):
    body, args = REMOVED_AT_OUTPUT[case]
    before, result, noop = apply(model_text("t = Relu(x)\n " + body, **args))
    assert result.modified and op_types(result.model) == ["Relu"]
    assert [v.name for v in result.model.graph.outputs] == ["y"]
    if args.get("opset", 17) >= 7:  # ONNX Runtime has no Dropout-6 to compare with
        assert_equivalent(before, result.model)


KEPT_AT_OUTPUT = {
    "flatten axis 0": ("y = Flatten <axis = 0> (t)", {"outputs": "float[1,6] y"}),
    "flatten axis 2": ("y = Flatten <axis = 2> (t)", {"outputs": "float[6,1] y"}),
    "reshape adding a unit dim": ("y = Reshape(t, s)", {"outputs": "float[2,3,1] y", "inits": "int64[3] s = {2, 3, 1}"}),
    "reshape two unmatched": ("y = Reshape(t, s)", {"outputs": "float[3,2] y", "inits": "int64[2] s = {3, -1}"}),
    "transpose moving a unit dim": ("y = Transpose <perm = [1, 0, 2]> (t)", {"inputs": "float[1,5,1] x", "outputs": "float[5,1,1] y"}),
    "transpose of a square matrix": ("y = Transpose <perm = [1, 0]> (t)", {"inputs": "float[2,2] x", "outputs": "float[2,2] y"}),
    "transpose of unknown dims": ("y = Transpose <perm = [1, 0]> (t)", {"inputs": "float[N,M] x", "outputs": "float[M,N] y"}),
    "castlike other type": ("y = CastLike(t, h)", {"inputs": "float[2,3] x, float16[1] h", "outputs": "float16[2,3] y"}),
    "slice step 2": ("y = Slice(t, s, e, a, st)", {"outputs": "float[2,2] y",
                                                   "inits": "int64[1] s = {0}, int64[1] e = {3}, int64[1] a = {1}, int64[1] st = {2}"}),
    "slice starts from an input": ("y = Slice(t, s, e)", {"inputs": "float[2,3] x, int64[1] s", "outputs": "float[A,B] y",
                                                          "inits": "int64[1] e = {2}"}),
    "dropout opset 6 default": ("y = Dropout(t)", {"opset": 6}),
    "dropout training opset 12": ("y = Dropout(t, r, tr)", {"opset": 12, "inits": "float r = {0.5}, bool tr = {1}"}),
    "add zero of higher rank": ("y = Add(t, z)", {"outputs": "float[1,2,3] y", "inits": "float[1,1,1] z = {0}"}),
    "add zero broadcasting a unit dim up": ("y = Add(t, z)", {"inputs": "float[1,3] x", "outputs": "float[2,3] y",
                                                             "inits": "float[2,3] z = {0, 0, 0, 0, 0, 0}"}),
}


@pytest.mark.parametrize("case", KEPT_AT_OUTPUT)
def test_non_noop_writing_a_graph_output_is_kept(case):
    body, args = KEPT_AT_OUTPUT[case]
    before, result, _ = apply(model_text("t = Relu(x)\n " + body, **args))
    assert not result.modified
    assert op_types(result.model) == op_types(before)


def test_every_removed_noop_is_counted():
    _, result, noop = apply(model_text("a = Identity(x)\n b = Identity(a)\n y = Relu(b)"))
    assert op_types(result.model) == ["Relu"] and noop.stats["Identity removed"] == 2
