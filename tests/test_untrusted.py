"""Untrusted models: external data stays inside the model's folder, resources stay bounded, every entry
point refuses the same way (library, optimize, inspect, diff), and nothing is written on failure."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ir import io, limits, runtime
from ir.errors import InvalidModelError, ModelLoadError
from ir.external import ExternalDataError
from passes.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 16


def _matmul_model(weight: TensorProto, nodes=None, extra_inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes or [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight, *extra_inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _external(name="w", **entries) -> TensorProto:
    tensor = numpy_helper.from_array(WEIGHT, name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=str(value))
    return tensor


def _write(folder: Path, proto: onnx.ModelProto, data: bytes | None = WEIGHT.tobytes()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        (folder / "w.bin").write_bytes(data)
    path = folder / "model.onnx"
    onnx.save(proto, str(path))
    return path


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return code, captured.err


def _refused_everywhere(capsys, tmp_path, path: Path, fragment: str) -> None:
    """The library and the three commands refuse the model with the same one-line message; nothing is written."""
    with pytest.raises(InvalidModelError) as info:
        io.load(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    good = _write(tmp_path / "good", _matmul_model(numpy_helper.from_array(WEIGHT, "w")), data=None)
    out = tmp_path / "out"
    for argv in (["optimize", path, "-o", out], ["inspect", path], ["diff", good, path]):
        code, err = _cli(capsys, *argv)
        assert code == 1, argv
        assert err.strip() == f"error: {message}", argv
        assert "internal error" not in err and "Traceback" not in err
    assert not out.exists()


# --- external data, on load ------------------------------------------------------------------------


def test_external_data_inside_the_folder_loads(tmp_path):
    path = _write(tmp_path / "m", _matmul_model(_external(location="w.bin", offset=0, length=64)))
    model = io.load(path)
    np.testing.assert_array_equal(model.graph.initializers["w"].const_value.numpy(), WEIGHT)


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("../../../../etc/passwd", "steps out of the model's folder ('..')"),
        ("sub/../../secret.bin", "steps out of the model's folder"),
        ("/etc/passwd", "is an absolute path"),
        ("missing.bin", "file is missing"),
        ("", "empty or invalid location"),
    ],
)
def test_external_locations_outside_the_folder_are_refused_everywhere(capsys, tmp_path, location, fragment):
    (tmp_path / "secret.bin").write_bytes(WEIGHT.tobytes())
    path = _write(tmp_path / "m", _matmul_model(_external(location=location)))
    _refused_everywhere(capsys, tmp_path, path, f"initializer 'w': external data location '{location}'")
    with pytest.raises(ExternalDataError) as info:
        io.load(path)
    assert fragment in str(info.value)


def test_a_symlink_out_of_the_folder_is_refused(capsys, tmp_path):
    (tmp_path / "secret.bin").write_bytes(WEIGHT.tobytes())  # the right size: only the place is wrong
    path = _write(tmp_path / "m", _matmul_model(_external(location="link.bin")), data=None)
    os.symlink(tmp_path / "secret.bin", path.parent / "link.bin")
    _refused_everywhere(capsys, tmp_path, path, "resolves outside the model's folder")


def test_a_symlink_inside_the_folder_is_followed(tmp_path):
    path = _write(tmp_path / "m", _matmul_model(_external(location="link.bin")))
    os.symlink("w.bin", path.parent / "link.bin")
    assert io.load(path).graph.initializers["w"].const_value.numpy()[3, 3] == WEIGHT[3, 3]


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ({"offset": 65}, "offset 65 is beyond the end of the 64-byte file"),
        ({"offset": 1 << 40, "length": 64}, "is beyond the end"),
        ({"offset": 0, "length": 1 << 62}, "is beyond the end of the 64-byte file"),
        ({"offset": 0, "length": 32}, "length 32 does not match dims [4, 4] x FLOAT (64 bytes)"),
        ({"offset": 8}, "the 56 bytes after offset 8 does not match"),
        ({"offset": -4}, "negative offset"),
        ({"offset": "abc"}, "offset 'abc' is not an integer"),
    ],
)
def test_offsets_and_lengths_beyond_the_file_or_the_shape_are_refused(capsys, tmp_path, entries, fragment):
    path = _write(tmp_path / "m", _matmul_model(_external(location="w.bin", **entries)))
    _refused_everywhere(capsys, tmp_path, path, "external data location 'w.bin'")
    with pytest.raises(ExternalDataError) as info:
        io.load(path)
    assert fragment in str(info.value)


def _constant_and_subgraph_model() -> onnx.ModelProto:
    """An external tensor as a Constant node's value, and one as an initializer of an If branch."""
    inner = _external("v", location="w.bin")
    then_branch = helper.make_graph([helper.make_node("MatMul", ["x", "v"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])], [inner])
    else_branch = helper.make_graph([helper.make_node("MatMul", ["x", "c"], ["e"])], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    nodes = [
        helper.make_node("Constant", [], ["c"], name="const", value=_external("", location="w.bin")),
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32))),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_constant_attributes_and_subgraph_tensors_are_checked_and_read_at_load(tmp_path, monkeypatch):
    path = _write(tmp_path / "m", _constant_and_subgraph_model())
    model = io.load(path)
    monkeypatch.chdir(tmp_path)  # nothing may resolve against the working directory later
    (path.parent / "w.bin").unlink()  # read at load: the model no longer needs the file
    feeds = {"x": np.ones((1, 4), np.float32)}
    np.testing.assert_allclose(runtime.run(model, feeds)["y"], feeds["x"] @ WEIGHT, rtol=1e-6)

    proto = _constant_and_subgraph_model()
    proto.graph.node[0].attribute[0].t.external_data[0].value = "../w.bin"
    bad = _write(tmp_path / "bad", proto)
    with pytest.raises(ExternalDataError, match="attribute 'value' of node 'const': external data location '../w.bin'"):
        io.load(bad)
    proto = _constant_and_subgraph_model()
    then_branch = next(a for a in proto.graph.node[4].attribute if a.name == "then_branch")
    then_branch.g.initializer[0].external_data[0].value = "/etc/passwd"
    with pytest.raises(ExternalDataError, match="initializer 'v': external data location '/etc/passwd'"):
        io.load(_write(tmp_path / "bad2", proto))


def test_bytes_carry_no_folder_for_external_data(tmp_path):
    proto = _matmul_model(_external(location="w.bin"))
    with pytest.raises(ExternalDataError, match="a model given as bytes has no folder"):
        io.load(proto.SerializeToString())
    (tmp_path / "w.bin").write_bytes(WEIGHT.tobytes())
    model = io.load_bytes(proto.SerializeToString(), base_dir=tmp_path)
    np.testing.assert_array_equal(model.graph.initializers["w"].const_value.numpy(), WEIGHT)
    proto.graph.initializer[0].external_data[0].value = "../w.bin"
    with pytest.raises(ExternalDataError, match="steps out"):
        io.load_bytes(proto.SerializeToString(), base_dir=tmp_path / "sub")


# --- external data, on save ------------------------------------------------------------------------


def _locations(path: Path) -> set[str]:
    proto = onnx.load(str(path), load_external_data=False)
    return {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}


def test_saving_copies_the_inputs_external_data_into_the_output_folder(tmp_path):
    source = _write(tmp_path / "in", _matmul_model(_external(location="w.bin")))
    model = io.load(source)
    inline = io.save(model, tmp_path / "out" / "a.onnx")
    assert _locations(inline) == set()  # before, the saved model kept pointing at ../in/w.bin
    big = np.ones((64, 64), np.float32)
    model.graph.initializers["w"].const_value = None
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "w.bin").write_bytes(big.tobytes())
    proto = _matmul_model(_external(location="w.bin"))
    proto.graph.initializer[0].dims[:] = [64, 64]
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 64
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 64
    onnx.save(proto, str(tmp_path / "in2" / "model.onnx"))
    external = io.save(io.load(tmp_path / "in2" / "model.onnx"), tmp_path / "out" / "b.onnx", external=True)
    assert _locations(external) == {"b.onnx.data"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.onnx", "a.onnx.data", "b.onnx", "b.onnx.data"] or \
        sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.onnx", "b.onnx", "b.onnx.data"]
    (tmp_path / "in2" / "w.bin").unlink()
    np.testing.assert_array_equal(io.load(external).graph.initializers["w"].const_value.numpy(), big)


def test_saving_replaces_a_symlink_in_the_output_folder_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "m.onnx.data")
    os.symlink(victim, out / "m.onnx")
    model = io.load(_write(tmp_path / "in", _matmul_model(numpy_helper.from_array(WEIGHT, "w")), data=None))
    io.save(model, out / "m.onnx", external=True)
    assert victim.read_text() == "keep me"
    assert not (out / "m.onnx").is_symlink() and not (out / "m.onnx.data").is_symlink()


# --- resources -------------------------------------------------------------------------------------


def _constant_of_shape_model(dims) -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array(dims, np.int64), "s")
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], name="huge",
                              value=numpy_helper.from_array(np.zeros(1, np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], [shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile"])
def test_terabyte_results_are_refused_before_onnx_runtime_runs(capsys, tmp_path, op):
    if op == "ConstantOfShape":
        proto = _constant_of_shape_model([1 << 20, 1 << 20, 4])
    else:
        second, result = ([1 << 20, 1 << 20, 4], [1 << 20, 1 << 20, 4]) if op == "Expand" else ([1 << 20, 1 << 18], [1 << 20, 1 << 20])
        inits = [numpy_helper.from_array(np.array(second, np.int64), "s")]
        graph = helper.make_graph([helper.make_node(op, ["x", "s"], ["y"], name="huge")], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, result)], inits)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = _write(tmp_path / "m", proto, data=None)
    code, err = _cli(capsys, "inspect", path, "--json")  # analysis only counts: bounded, and it says how much
    assert code == 0
    out = tmp_path / "out"
    for argv in (["optimize", path, "-o", out], ["diff", path, path]):
        code, err = _cli(capsys, *argv)
        assert code == 1 and "would produce 'y'" in err or "would produce 'c'" in err, err
        assert "TiB, more than the 8.0 GiB cap" in err
    assert not out.exists()


def test_a_runtime_sized_allocation_fails_in_the_child_not_in_graphpress(tmp_path):
    """The shape comes from an input: no static check sees it; the child's memory cap does."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["y"], value=numpy_helper.from_array(np.zeros(1, np.float32)))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = io.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    with pytest.raises(InvalidModelError, match="ONNX Runtime ran out of memory"):
        runtime.preflight(model, [{"s": np.array([1 << 20, 1 << 20, 4], np.int64)}])


def test_dims_multiplying_past_2_63_are_refused(capsys, tmp_path):
    path = _write(tmp_path / "m", _matmul_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 32, 1 << 32])), data=None)
    _refused_everywhere(capsys, tmp_path, path, "initializer 'w': dims [4294967296, 4294967296] multiply past 2^63")


def test_a_tensor_declaring_more_than_it_holds_is_refused(capsys, tmp_path):
    weight = numpy_helper.from_array(WEIGHT, "w")
    weight.dims[:] = [1 << 20, 1 << 20]
    path = _write(tmp_path / "m", _matmul_model(weight), data=None)
    _refused_everywhere(capsys, tmp_path, path, "holds 64 bytes but dims [1048576, 1048576] of type FLOAT need 4,398,046,511,104")


def _identity_chain(count: int) -> onnx.ModelProto:
    names = ["x", *[f"v{i}" for i in range(count - 1)], "y"]
    nodes = [helper.make_node("Identity", [a], [b]) for a, b in zip(names, names[1:])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_the_node_cap_refuses_a_graph_one_node_over_it(capsys, tmp_path, monkeypatch):
    """At the boundary, with the cap lowered through its environment variable (a real graph of a
    million nodes would cost a minute to build; the counting is the same)."""
    monkeypatch.setenv("GRAPHPRESS_MAX_NODES", "500")
    assert io.load(_write(tmp_path / "ok", _identity_chain(500), data=None))
    path = _write(tmp_path / "m", _identity_chain(501), data=None)
    _refused_everywhere(capsys, tmp_path, path, "more than 500 nodes")
    assert limits.max_nodes() == 500


def _nested_ifs(depth: int) -> onnx.ModelProto:
    def branch(level: int, tag: str) -> onnx.GraphProto:
        out = f"o{level}{tag}"
        if level == depth:
            node = helper.make_node("Identity", ["x"], [out])
        else:
            node = helper.make_node("If", ["cond"], [out], then_branch=branch(level + 1, "t"), else_branch=branch(level + 1, "e"))
        return helper.make_graph([node], f"b{level}{tag}", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1])])

    top = helper.make_node("If", ["cond"], ["y"], then_branch=branch(1, "t"), else_branch=branch(1, "e"))
    graph = helper.make_graph([top], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_deeply_nested_subgraphs_are_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHPRESS_MAX_GRAPH_DEPTH", "4")
    assert io.load(_write(tmp_path / "ok", _nested_ifs(4), data=None))
    path = _write(tmp_path / "m", _nested_ifs(5), data=None)
    _refused_everywhere(capsys, tmp_path, path, "subgraphs nested 5 levels deep (more than 4)")


def test_a_model_file_over_2_gib_is_refused_before_it_is_parsed(capsys, tmp_path):
    """A sparse file of 2 GiB + 1 byte: its size is real, no byte of it is allocated or read."""
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as handle:
        handle.truncate(limits.MAX_PROTO_BYTES + 2)
    with pytest.raises(InvalidModelError, match="over protobuf's 2 GiB limit; a model this large must keep its weights in external data"):
        io.load(path)
    code, err = _cli(capsys, "inspect", path)
    assert code == 1 and "2 GiB limit" in err
    assert os.stat(path).st_blocks == 0  # still sparse: nothing was written into it


def test_a_generated_input_larger_than_the_cap_is_refused():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 20, 1 << 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 20, 1 << 20])])
    model = io.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    with pytest.raises(InvalidModelError, match="input 'x' of shape"):
        runtime.generate_inputs(model)


def test_a_preflight_past_its_time_limit_is_stopped_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHPRESS_PREFLIGHT_TIMEOUT", "0.001")
    model = io.load(_write(tmp_path / "m", _matmul_model(numpy_helper.from_array(WEIGHT, "w")), data=None))
    with pytest.raises(InvalidModelError, match=r"ONNX Runtime did not finish running the model within 0.001 s"):
        runtime.preflight(model, [runtime.generate_inputs(model)])


def test_an_ordinary_model_passes_the_preflight(tmp_path):
    model = io.load(_write(tmp_path / "m", _matmul_model(numpy_helper.from_array(WEIGHT, "w")), data=None))
    runtime.preflight(model, [runtime.generate_inputs(model)])  # no error


# --- fuzzing ---------------------------------------------------------------------------------------


def test_a_short_seeded_fuzz_run_finds_no_traceback(tmp_path):
    """30 mutated models; each through one command in turn (optimize, inspect, diff), forked from
    this process as the fuzz tool does; every case must end cleanly (see tools/fuzz.py)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import fuzz

    seeds = [s for s in fuzz.seed_models() if s[0] in ("tiny-conv", "if-external")]
    rng = random.Random(14)
    seed_paths = {}
    for name, proto in seeds:
        path = tmp_path / "seeds" / name / "model.onnx"
        path.parent.mkdir(parents=True)
        (path.parent / "data.bin").write_bytes(fuzz._weight_bytes(proto))
        path.write_bytes(proto.SerializeToString())
        seed_paths[name] = path
    problems, exits = [], set()
    for index in range(30):
        case, kinds = fuzz.make_case(seeds, rng)
        command = fuzz.COMMANDS[index % 3]
        results = fuzz.run_case(case, tmp_path / f"case{index}", seed_paths[case.seed], runner=fuzz.run_forked, commands=(command,), timeout=120)
        for outcome, found in results:
            exits.add(outcome.rc)
            problems += [f"case {index} {kinds} {case.notes} {command}: {p}: {outcome.output[-300:]}" for p in found]
    assert not problems, problems[0]
    assert exits >= {0, 1}  # the mutations reach both accepted and refused models


@pytest.mark.parametrize("name", ["data-type-65", "attribute-type-undefined", "op-type-not-utf8", "conv-without-output",
                                  "input-type-undefined", "input-type-string", "initializer-type-undefined"])
def test_fuzz_regression_cases(capsys, tmp_path, name):
    """Models the fuzzers once crashed on (the smallest form of each): a one-line model error now,
    or (inspect of a node it cannot cost) a table with the node's cost unknown."""
    path = tmp_path / "model.onnx"
    path.write_bytes(dict(_fuzz_regressions())[name])
    for argv in (["inspect", path, "--json"], ["optimize", path, "-o", tmp_path / "out"], ["diff", path, path]):
        code, err = _cli(capsys, *argv)
        assert "internal error" not in err, (argv, err)
        if name in ("conv-without-output", "input-type-string") and argv[0] == "inspect":
            assert code == 0
            continue
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "out").exists()


def _fuzz_regressions() -> list[tuple[str, bytes]]:
    relu = _matmul_model(numpy_helper.from_array(WEIGHT, "w"), nodes=[helper.make_node("Relu", ["x"], ["y"], name="r")]).SerializeToString()
    leaky = _matmul_model(numpy_helper.from_array(WEIGHT, "w"), nodes=[helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.5)])
    leaky.graph.node[0].attribute[0].type = onnx.AttributeProto.UNDEFINED
    unknown_type = _matmul_model(numpy_helper.from_array(WEIGHT, "w"), nodes=[helper.make_node("Relu", ["x"], ["y"])])
    unknown_type.graph.input[0].type.tensor_type.elem_type = 65
    conv = _matmul_model(numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"), nodes=[
        helper.make_node("Conv", ["x4", "w"], []), helper.make_node("Relu", ["x"], ["y"])])
    relu_of = {}
    for name, elem_type in (("input-type-undefined", TensorProto.UNDEFINED), ("input-type-string", TensorProto.STRING)):
        proto = _matmul_model(numpy_helper.from_array(WEIGHT, "w"), nodes=[helper.make_node("Relu", ["x"], ["y"])])
        proto.graph.input[0].type.tensor_type.elem_type = elem_type
        relu_of[name] = proto.SerializeToString()
    untyped = _matmul_model(numpy_helper.from_array(WEIGHT, "w"))
    untyped.graph.initializer[0].data_type = TensorProto.UNDEFINED
    return [
        # tools/fuzz.py: an initializer without a data type (optimize, diff: "TypeError: Bitwidth not
        # available for ONNX data type: UNDEFINED" in the verifier)
        ("initializer-type-undefined", untyped.SerializeToString()),
        # tools/fuzz.py: an input without a type (inspect, optimize, diff: "TypeError: Numpy does not support
        # ONNX data type: UNDEFINED") and a string input (inspect: "Bitwidth not available ... STRING")
        *relu_of.items(),
        # atheris: a Conv without outputs made the cost analysis (inspect) raise IndexError
        ("conv-without-output", conv.SerializeToString()),
        # atheris: an input of data type 65 loaded, then failed to serialize ("internal error: SerdeError")
        ("data-type-65", unknown_type.SerializeToString()),
        # atheris: an attribute without a type loaded, then failed to serialize ("internal error: SerdeError")
        ("attribute-type-undefined", leaky.SerializeToString()),
        # atheris: an op type that is not UTF-8 loaded, then failed to serialize ("internal error: SerdeError")
        ("op-type-not-utf8", relu.replace(b"Relu", b"R\xffl\xff")),
    ]
