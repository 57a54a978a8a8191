"""Specification of backends: target parsing, the backend registry, and host builds with TVM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from backends import base, compile_model, parse_target
from backends.base import Backend, BuildResult, backend_for, build_key, register_backend
from backends.numeric_check import compare_outputs
from backends.target import FLAGS, NON_TVM_KINDS, PRESETS, TargetSpec
from backends.tvm_build import import_tvm
from ir.errors import BackendError, UsageError

# ---------------------------------------------------------------- models


def conv_relu_gemm(batch: int | str = 1) -> onnx.ModelProto:
    """x[batch,3,8,8] -> Conv 3x3 (4 ch) -> Relu -> Flatten -> Gemm (10): a tiny CNN with fixed weights."""
    rng = np.random.default_rng(7)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
        numpy_helper.from_array(rng.standard_normal((4 * 8 * 8, 10)).astype(np.float32), "G"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "C"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"]),
        helper.make_node("Gemm", ["flat", "G", "C"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def single_op_model(op_type: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x"], ["y"])],
        "single_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def reshape_from_shape_model() -> onnx.ModelProto:
    """Reshape(x, Concat(Gather(Shape(x), [0]), [-1])): the PP-OCR pattern TVM's importer rejects."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "first"], ["batch"]),
        helper.make_node("Concat", ["batch", "minus_one"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["x", "new_shape"], ["y"]),
    ]
    constants = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "first"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
    ]
    graph = helper.make_graph(
        nodes,
        "reshape_from_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# ---------------------------------------------------------------- parsing targets


@pytest.mark.parametrize(
    "spec",
    ["llvm -mcpu=skylake-avx512", ["llvm", "-mcpu=skylake-avx512"], ["llvm -mcpu=skylake-avx512"], "  llvm   -mcpu=skylake-avx512 "],
)
def test_quoted_and_split_forms_parse_alike(spec):
    assert parse_target(spec) == TargetSpec("llvm", {"mcpu": "skylake-avx512"})


def test_tvm_dict_uses_tvm_option_names_and_types():
    spec = parse_target("llvm -mcpu=cortex-a55 -mattr=+neon,+dotprod -num-cores=4 -fast-math")
    assert spec.to_tvm_dict() == {
        "kind": "llvm",
        "mcpu": "cortex-a55",
        "mattr": ["+neon", "+dotprod"],
        "num-cores": 4,
        "fast-math": True,
        "mtriple": "aarch64-linux-gnu",
    }


@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a55", "neoverse-n1", "neoverse-v2"])
def test_arm64_cpu_alone_implies_aarch64_linux(cpu):
    spec = parse_target(["llvm", f"-mcpu={cpu}"])
    assert spec.triple == "aarch64-linux-gnu"
    assert spec.is_cross(host_triple="x86_64-linux-gnu")


def test_explicit_triple_wins_over_the_implication():
    assert parse_target("llvm -mcpu=cortex-a72 -mtriple=aarch64-linux-android").triple == "aarch64-linux-android"


def test_32_bit_only_cortex_cores_imply_armv7():
    assert parse_target("llvm -mcpu=cortex-a7").triple == "armv7l-linux-gnueabihf"


def test_x86_cpu_implies_no_triple():
    assert parse_target("llvm -mcpu=znver4").triple is None


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("x86-avx2", {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}),
        ("x86-avx512", {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}),
        ("arm-a72", {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]}),
        ("arm-a55", {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55", "mattr": ["+neon", "+dotprod"]}),
        ("cuda-sm80", {"kind": "cuda", "arch": "sm_80"}),
        ("cuda-sm90", {"kind": "cuda", "arch": "sm_90"}),
        ("c", {"kind": "c"}),
        ("llvm", {"kind": "llvm"}),
    ],
)
def test_presets_expand_to_tvm_dicts(preset, expected):
    assert parse_target(preset).to_tvm_dict() == expected


def test_rpi4_is_an_alias_of_arm_a72():
    assert parse_target("rpi4") == parse_target("arm-a72")


def test_flags_after_a_preset_override_it():
    spec = parse_target("arm-a55 -mattr=+neon -num-cores=4")
    assert spec.options["mattr"] == ("+neon",)
    assert spec.options["num-cores"] == 4
    assert spec.options["mcpu"] == "cortex-a55"


@pytest.mark.parametrize(
    "spec",
    [
        "llvm",
        "c -mcpu=foo",
        "llvm -mcpu=cortex-a72",
        "llvm -fast-math=false -opt-level=0 -mattr=-avx512f -num-cores=2 -mcpu=znver4",
        "cuda -libs=cublas -arch=sm_90a",
        *PRESETS,
    ],
)
def test_text_round_trips_through_parse(spec):
    parsed = parse_target(spec)
    assert parse_target(parsed.text) == parsed
    assert parse_target(parsed.text).text == parsed.text


def test_text_is_canonical():
    assert parse_target("llvm -num-cores=2 -mcpu=cortex-a72").text == "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -num-cores=2"
    assert parse_target("x86-avx512").text == "llvm -mtriple=x86_64-linux-gnu -mcpu=skylake-avx512"


@pytest.mark.parametrize(("flag", "value"), [("-fast-math", True), ("-fast-math=1", True), ("-fast-math=false", False)])
def test_boolean_flags(flag, value):
    assert parse_target(["llvm", flag]).options["fast-math"] is value


def test_unknown_kind_lists_accepted_kinds_and_presets():
    with pytest.raises(UsageError) as caught:
        parse_target("opencl -device=mali")
    message = str(caught.value)
    assert "'opencl'" in message
    for accepted in ("llvm", "c", "cuda", "x86-avx512", "arm-a72", "rpi4", "cuda-sm90"):
        assert accepted in message
    assert "\n" not in message


def test_unknown_flag_lists_the_kinds_flags():
    with pytest.raises(UsageError) as caught:
        parse_target("llvm -mcpus=znver4")
    message = str(caught.value)
    assert "-mcpus=znver4" in message
    assert "-mcpu=CPU" in message and "-mattr=+FEATURE" in message and "-mtriple=TRIPLE" in message


def test_a_flag_of_another_kind_is_unknown():
    with pytest.raises(UsageError, match="'-mattr=\\+neon' for target kind 'cuda'"):
        parse_target("cuda -arch=sm_80 -mattr=+neon")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("-mcpu=znver4", "must start with a kind or preset"),
        ("llvm -mcpu", "needs a value"),
        ("llvm -num-cores=many", "not an integer"),
        ("llvm -num-cores=0", "out of range"),
        ("llvm -opt-level=4", "out of range"),
        ("llvm -mcpu=a -mcpu=b", "given twice"),
        ("llvm -mattr=neon", "needs a sign"),
        ("llvm -mattr=+neon,", "empty entry"),
        ("llvm -fast-math=maybe", "not a boolean"),
        ("llvm -mfloat-abi=medium", "hard, soft"),
        ("cuda -arch=80", "not a CUDA architecture"),
    ],
)
def test_malformed_specs_are_usage_errors(spec, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_target(spec)


@pytest.mark.parametrize(
    ("spec", "host", "cross", "cuda"),
    [
        ("llvm", True, False, False),
        ("llvm -mcpu=znver4", True, False, False),
        ("c", True, False, False),
        ("llvm -mtriple=x86_64-linux-gnu", True, False, False),
        ("llvm -mtriple=x86_64-pc-linux-gnu", True, False, False),
        ("llvm -mtriple=aarch64-linux-gnu", False, True, False),
        ("llvm -mtriple=x86_64-pc-windows-msvc", False, True, False),
        ("llvm -mtriple=x86_64-linux-android", False, True, False),
        ("cuda -arch=sm_80", False, False, True),
    ],
)
def test_host_cross_and_cuda_on_an_x86_64_linux_host(spec, host, cross, cuda):
    parsed = parse_target(spec)
    assert parsed.is_host(host_triple="x86_64-unknown-linux-gnu") is host
    assert parsed.is_cross(host_triple="x86_64-unknown-linux-gnu") is cross
    assert parsed.is_cuda() is cuda


def test_aarch64_is_the_host_on_an_arm64_machine():
    assert parse_target("rpi4").is_host(host_triple="arm64-linux-gnu")


def test_target_spec_is_immutable_and_hashable():
    spec = parse_target("llvm -mcpu=znver4")
    with pytest.raises(TypeError):
        spec.options["mcpu"] = "generic"  # type: ignore[index]
    assert len({spec, parse_target("llvm -mcpu=znver4")}) == 1


def test_a_spec_built_by_hand_equals_the_parsed_one():
    assert TargetSpec("llvm", {"mcpu": "cortex-a55", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}) == parse_target(
        "llvm -mcpu=cortex-a55 -mattr=+neon,+dotprod"
    )


def test_importing_backends_and_parsing_does_not_import_tvm():
    code = "import sys, backends; backends.parse_target('arm-a55'); assert 'tvm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------- registry and errors before TVM


@pytest.mark.parametrize(
    ("spec", "key"), [("llvm", "host"), ("c", "host"), ("rpi4", "cross-aarch64"), ("llvm -mcpu=cortex-a7", "cross-armv7l"), ("cuda-sm80", "cuda")]
)
def test_build_key_says_what_is_built(spec, key):
    assert build_key(parse_target(spec)) == key


@pytest.mark.parametrize("target", ["llvm -mcpu=cortex-a7", "llvm -mtriple=riscv64-linux-gnu"])
def test_a_foreign_triple_without_a_backend_is_not_supported_yet(tmp_path, target):
    with pytest.raises(BackendError) as caught:
        compile_model(conv_relu_gemm(), target, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"cross-compiling for {parse_target(target).triple} is not supported yet; supported now: host llvm targets")
    assert "aarch64 Linux by cross-compilation" in message and "NVIDIA GPUs" in message
    assert "\n" not in message
    assert not any(tmp_path.iterdir())


class RecordingBackend(Backend):
    key = "cross-riscv64"
    description = "riscv64 Linux (test double)"

    def __init__(self):
        self.requests = []

    def build(self, request):
        self.requests.append(request)
        return BuildResult(request.target.text, request.out_dir / "x.so", 0, 0.0, None, "recording")


@pytest.fixture
def private_registry(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_a_backend_registered_for_a_new_key_receives_its_targets(private_registry, tmp_path):
    backend = register_backend(RecordingBackend())
    riscv = "llvm -mtriple=riscv64-linux-gnu"
    result = compile_model(conv_relu_gemm(batch="N"), riscv, tmp_path, input_shapes={"x": (2, 3, 8, 8)}, name="rv")
    assert result.backend == "recording"
    (request,) = backend.requests
    assert request.input_shapes == {"x": (2, 3, 8, 8)}
    assert request.name == "rv" and request.target == parse_target(riscv)
    assert isinstance(request.model, ir.Model)


def test_registering_a_key_twice_is_refused(private_registry):
    register_backend(RecordingBackend())
    with pytest.raises(UsageError, match="already registered"):
        register_backend(RecordingBackend())
    assert isinstance(register_backend(RecordingBackend(), replace=True), RecordingBackend)


def test_unsupported_message_lists_registered_backends(private_registry):
    register_backend(RecordingBackend())
    with pytest.raises(BackendError, match="cross-compiling for mips-linux-gnu is not supported yet.*riscv64 Linux \\(test double\\)"):
        backend_for(parse_target("llvm -mtriple=mips-linux-gnu"))


def test_symbolic_dimension_suggestion_keeps_fixed_sizes_and_names_the_rest(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(BackendError, match=r"\[batch, 3, height, \?\]; .*--input-shape x:1,3,height,D3 "):
        compile_model(helper.make_model(graph), "llvm", tmp_path)


def test_symbolic_dimension_without_input_shapes_names_the_input(tmp_path):
    with pytest.raises(BackendError) as caught:
        compile_model(conv_relu_gemm(batch="N"), "llvm", tmp_path)
    message = str(caught.value)
    assert "input 'x'" in message and "--input-shape x:1,3,8,8" in message
    assert "\n" not in message


def test_input_shapes_for_an_unknown_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no input 'image'"):
        compile_model(conv_relu_gemm(), "llvm", tmp_path, input_shapes={"image": [1, 3, 8, 8]})


def test_input_shapes_must_be_positive(tmp_path):
    with pytest.raises(UsageError, match="positive integers"):
        compile_model(conv_relu_gemm(batch="N"), "llvm", tmp_path, input_shapes={"x": [0, 3, 8, 8]})


@pytest.mark.parametrize("name", ["", "../model", "a/b", ".hidden"])
def test_library_name_must_be_a_plain_stem(tmp_path, name):
    with pytest.raises(UsageError, match="library name"):
        compile_model(conv_relu_gemm(), "llvm", tmp_path, name=name)


def test_negative_tolerance_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="non-negative"):
        compile_model(conv_relu_gemm(), "llvm", tmp_path, rtol=-1.0)


def test_missing_tvm_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tvm", None)  # makes 'import tvm' raise ImportError
    with pytest.raises(BackendError, match=r"pip install 'graphpress\[tvm\]'"):
        import_tvm()


# ---------------------------------------------------------------- comparing outputs


def test_errors_are_relative_to_output_magnitude():
    reference = {"y": np.array([100.0, 0.001], dtype=np.float32)}
    result = compare_outputs(reference, [np.array([100.005, 0.0], dtype=np.float32)], rtol=1e-4, atol=1e-5)
    assert result.passed
    assert result.max_abs_error == pytest.approx(0.005, rel=1e-3)
    assert result.max_rel_error == pytest.approx(5e-5, rel=1e-3)


def test_an_error_beyond_tolerance_fails_and_names_the_output():
    reference = {"a": np.zeros(3), "b": np.ones(3)}
    result = compare_outputs(reference, [np.zeros(3), np.array([1.0, 1.0, 1.01])], rtol=1e-4, atol=1e-5)
    assert not result.passed
    assert result.worst_output == "b"


def test_nan_matches_nan_but_not_a_number():
    reference = {"y": np.array([np.nan, 1.0])}
    assert compare_outputs(reference, [np.array([np.nan, 1.0])], rtol=1e-4, atol=1e-5).passed
    assert not compare_outputs(reference, [np.array([0.0, 1.0])], rtol=1e-4, atol=1e-5).passed


def test_shape_or_count_mismatch_fails():
    reference = {"y": np.zeros((2, 3))}
    assert not compare_outputs(reference, [np.zeros((3, 2))], rtol=1e-4, atol=1e-5).passed
    assert not compare_outputs(reference, [], rtol=1e-4, atol=1e-5).passed


# ---------------------------------------------------------------- host builds with TVM


@pytest.fixture(scope="module")
def tvm():
    pytest.importorskip("tvm")
    return import_tvm()


@pytest.fixture(scope="module")
def host_cpu(tvm):
    return tvm.target.codegen.llvm_get_system_cpu()


def assert_matches_onnxruntime(result: BuildResult) -> None:
    assert result.check is not None, result.notes
    assert result.check.passed, result.notes
    assert result.check.max_rel_error < 1e-5
    assert result.check.max_abs_error <= result.check.atol + 1e-3  # outputs are O(10)


@pytest.mark.tvm
@pytest.mark.parametrize("flags", [[], ["-mcpu=HOST"]])
def test_builds_for_the_host_and_matches_onnxruntime(tvm, host_cpu, tmp_path, flags):
    target = ["llvm", *(f.replace("HOST", host_cpu) for f in flags)]
    result = compile_model(conv_relu_gemm(), target, tmp_path / "out", name="tiny")
    assert result.library == tmp_path / "out" / "tiny.so"
    assert result.library.is_file() and result.size_bytes == result.library.stat().st_size > 0
    assert result.target == f"llvm -mcpu={host_cpu}"  # plain llvm builds for this machine's CPU
    assert result.compile_seconds > 0
    assert result.backend == "tvm-host"
    assert_matches_onnxruntime(result)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tiny.so"]  # no temporary left behind


@pytest.mark.tvm
def test_plain_llvm_says_which_cpu_it_chose_and_an_explicit_cpu_is_kept(tvm, host_cpu, tmp_path):
    default = compile_model(conv_relu_gemm(), "llvm", tmp_path / "a", name="tiny")
    assert any(f"-mcpu defaulted to this machine's CPU ({host_cpu})" in note for note in default.notes)
    portable = compile_model(conv_relu_gemm(), "llvm -mcpu=x86-64", tmp_path / "b", name="tiny")
    assert portable.target == "llvm -mcpu=x86-64"
    assert not any("-mcpu defaulted" in note for note in portable.notes)
    assert_matches_onnxruntime(portable)


@pytest.mark.tvm
def test_builds_with_the_c_code_generator(tvm, tmp_path):
    assert_matches_onnxruntime(compile_model(conv_relu_gemm(), "c", tmp_path))


@pytest.mark.tvm
def test_accepts_an_onnx_ir_model_with_fixed_input_shapes_and_leaves_it_unchanged(tvm, tmp_path):
    model = ir.serde.deserialize_model(conv_relu_gemm(batch="N"))
    result = compile_model(model, "llvm", tmp_path, input_shapes={"x": [2, 3, 8, 8]})
    assert_matches_onnxruntime(result)
    assert not isinstance(model.graph.inputs[0].shape[0], int)  # still symbolic in the caller's model


@pytest.mark.tvm
def test_check_false_builds_without_comparing(tvm, tmp_path):
    result = compile_model(conv_relu_gemm(), "llvm", tmp_path, check=False)
    assert result.check is None and result.library.is_file()


@pytest.mark.tvm
def test_rebuilding_replaces_the_library(tvm, tmp_path):
    first = compile_model(conv_relu_gemm(), "llvm", tmp_path, check=False)
    second = compile_model(conv_relu_gemm(), "c", tmp_path, check=False)
    assert first.library == second.library and second.library.stat().st_size == second.size_bytes


@pytest.mark.tvm
def test_unsupported_op_names_the_op(tvm, tmp_path):
    with pytest.raises(BackendError) as caught:
        compile_model(single_op_model("NoSuchOp"), "llvm", tmp_path)
    message = str(caught.value)
    assert "does not support NoSuchOp" in message and "\n" not in message


@pytest.mark.tvm
def test_importer_failure_names_the_op_and_suggests_folding(tvm, tmp_path, capfd):
    with pytest.raises(BackendError) as caught:
        compile_model(reshape_from_shape_model(), "llvm", tmp_path)
    message = str(caught.value)
    assert "at Reshape" in message and "requires the input new shape to be Shape" in message
    assert "fold pipeline with fixed input shapes" in message and "\n" not in message
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the importer's print and TVM's C++ warnings were captured


@pytest.mark.tvm
def test_unknown_cpu_is_a_backend_error(tvm, host_cpu, tmp_path):
    with pytest.raises(BackendError, match=f"-mcpu=no-such-cpu is not a CPU LLVM .* this machine is -mcpu={host_cpu}"):
        compile_model(conv_relu_gemm(), "llvm -mcpu=no-such-cpu", tmp_path)


@pytest.mark.tvm
def test_llvm_warnings_become_notes_not_terminal_noise(tvm, tmp_path, capfd):
    result = compile_model(conv_relu_gemm(), "llvm -mattr=+no-such-feature", tmp_path)
    assert "LLVM ignored -mattr feature +no-such-feature: not a feature of this target" in result.notes
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.tvm
def test_check_is_skipped_when_the_host_lacks_the_cpu_features(tvm, tmp_path):
    from backends.tvm_build import lacking_host_features  # noqa: PLC0415 - needs tvm

    candidates = ("sapphirerapids", "graniterapids", "znver5", "skylake-avx512")
    lacking = {c: lacking_host_features(tvm, tvm.target.Target({"kind": "llvm", "mcpu": c})) for c in candidates}
    cpu = next((c for c in candidates if lacking[c]), None)
    if cpu is None:
        pytest.skip("this machine has every feature of the candidate CPUs")
    result = compile_model(conv_relu_gemm(), f"llvm -mcpu={cpu}", tmp_path)
    assert result.check is None and result.library.is_file()
    assert any(note.startswith("check skipped: the library uses CPU features this machine lacks") for note in result.notes)


@pytest.mark.tvm
def test_accepted_flags_are_tvm_options_of_the_same_type(tvm):
    tvm_type = {str: "str", int: "int", bool: "bool", tuple: "Array<str>"}
    for kind, flags in FLAGS.items():
        if kind in NON_TVM_KINDS:
            continue
        options = tvm.target.TargetKind.options_from_name(kind)
        for flag in flags:
            assert options.get(flag.name) == tvm_type[flag.type], (kind, flag.name)


@pytest.mark.tvm
@pytest.mark.parametrize("preset", [p for p in PRESETS if parse_target(p).kind not in NON_TVM_KINDS])
def test_every_preset_is_a_valid_tvm_target(tvm, preset):
    target = tvm.target.Target(parse_target(preset).to_tvm_dict())
    assert target.kind.name == parse_target(preset).kind
