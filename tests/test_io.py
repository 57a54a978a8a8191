"""Loading refuses bad files with one clear line; saving is atomic and never touches the input."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import io, runtime
from ir.errors import ModelLoadError, ModelSaveError


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is a text file\n" * 10), "not"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_bad_files_fail_with_one_line(tmp_path, make, message):
    path = tmp_path / "bad.onnx"
    make(path)
    with pytest.raises(ModelLoadError) as info:
        io.load(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_model_is_refused(tmp_path, tiny_model_path):
    data = tiny_model_path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated|not an ONNX"):
        io.load(truncated)


def test_load_from_bytes_and_save_round_trip(tmp_path, tiny_model_path):
    model = io.load(tiny_model_path.read_bytes())
    out = io.save(model, tmp_path / "copy.onnx")
    feeds = runtime.generate_inputs(model)
    np.testing.assert_array_equal(runtime.run(io.load(out), feeds)["y"], runtime.run(model, feeds)["y"])
    assert not list(tmp_path.glob(".*tmp")), "no temporary files left behind"


def test_saving_never_modifies_the_input(tmp_path, tiny_model_path):
    before = _digest(tiny_model_path)
    model = io.load(tiny_model_path)
    model.graph.initializers["b"].const_value = ir.tensor(np.zeros(4, np.float32), name="b")
    io.save(model, tmp_path / "other.onnx")
    assert _digest(tiny_model_path) == before


def _model_with_large_weight() -> ir.Model:
    weight = np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 4096
    return ir.from_onnx_text(
        "<ir_version: 8, opset_import: [\"\" : 17]>\n"
        "g (float[2,64] x) => (float[2,64] y) <float[64,64] w = {" + ",".join(map(str, weight.ravel())) + "}> {\n"
        "  y = MatMul(x, w)\n}"
    )


def test_external_data_is_written_next_to_the_saved_model(tmp_path):
    first = io.save(_model_with_large_weight(), tmp_path / "a" / "m.onnx", external=True)
    assert (tmp_path / "a" / "m.onnx.data").exists()
    second = io.save(io.load(first), tmp_path / "b" / "m2.onnx", external=True)
    proto = onnx.load(str(second), load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"m2.onnx.data"}
    os.remove(first.parent / "m.onnx.data")  # the copy must not depend on the first model's data
    onnx.checker.check_model(str(second))
    reloaded = io.load(second)
    assert reloaded.graph.initializers["w"].const_value.numpy()[63, 63] == pytest.approx(4095 / 4096)


def test_unwritable_folder_is_a_save_error(tmp_path, tiny_model):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(ModelSaveError, match="not writable"):
            io.save(tiny_model, locked / "m.onnx")
    finally:
        locked.chmod(0o700)


def test_a_model_with_external_data_folds_verifies_and_saves_elsewhere(tmp_path):
    from passes.manager import PassManager

    source = io.save(_model_with_large_weight(), tmp_path / "in" / "m.onnx", external=True)
    model = io.load(source)
    feeds = runtime.generate_inputs(model)
    expected = runtime.run(model, feeds)["y"]
    result = PassManager("fold").run(model)  # structural checks must cope with external weights
    assert not result.failures
    saved = io.save(result.model, tmp_path / "out" / "m.onnx", external=True)
    np.testing.assert_allclose(runtime.run(io.load(saved), feeds)["y"], expected, rtol=1e-6)
