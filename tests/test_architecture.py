"""The house as docs/architecture.md draws it: a pass family is one folder, a backend one file, and
the pass library does not import the backends."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import backends
import passes
from backends import base as backend_base
from backends import compile_model
from ir import io
from passes import base as pass_base
from passes.manager import PassManager

ROOT = Path(__file__).resolve().parent.parent

TOY_PASS = '''
"""tag-model: write the number of nodes into the model's doc string (a pass that changes nothing numerically)."""

from passes.base import Pass, PassResult, register


@register
class TagModelPass(Pass):
    """Sets ``doc_string`` to ``<n> nodes``."""

    name = "tag-model"

    def call(self, model):
        self.stats["nodes counted"] = len(model.graph)
        model.doc_string = f"{len(model.graph)} nodes"
        return PassResult(model, modified=True)
'''

TOY_BACKEND = '''
"""A backend that ships the ONNX model itself and checks it with ONNX Runtime: the least a backend does."""

from backends.base import Backend, register_backend
from backends.numeric_check import compare_outputs
from ir import io, runtime


class OnnxCopyBackend(Backend):
    key = "cross-riscv64"
    description = "riscv64 (test: the ONNX model as the library)"

    def build(self, request):
        library = io.save(request.model, request.out_dir / f"{request.name}.onnx")
        feeds = runtime.generate_inputs(request.model, seed=0)
        reference = runtime.run(request.model, feeds)
        shipped = runtime.run(io.load(library), feeds)
        check = compare_outputs(reference, list(shipped.values()), rtol=request.rtol, atol=request.atol)
        return self.result(request, library, seconds=0.0, notes=["the ONNX model itself"], check=check)


register_backend(OnnxCopyBackend())
'''


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    proto = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y) { r = Relu(x)  y = Add(r, x) }
    """)
    path = tmp_path / "tiny.onnx"
    onnx.save(proto, path)
    return path


def _forget_modules(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def test_a_new_pass_family_is_one_folder_and_runs_in_a_pipeline(tmp_path, monkeypatch, tiny_model):
    family = tmp_path / "toy_family"
    family.mkdir()
    (family / "__init__.py").write_text('"""A family of one pass."""\n')
    (family / "tag_model.py").write_text(textwrap.dedent(TOY_PASS))
    pass_base.registered()  # the built-in passes register in the real registry, not in the copy below
    monkeypatch.setattr(passes, "__path__", [*passes.__path__, str(tmp_path)])
    monkeypatch.setattr(pass_base, "_REGISTRY", dict(pass_base._REGISTRY))
    monkeypatch.setattr(pass_base, "_LOADED_FAMILIES", set(pass_base._LOADED_FAMILIES))
    try:
        assert "tag-model" in pass_base.registered()
        result = PassManager("fold,tag-model").run(io.load(tiny_model))
    finally:
        _forget_modules("passes.toy_family")
    assert result.model.doc_string == "2 nodes"
    (record,) = [r for r in result.records if r.name == "tag-model"]
    assert record.stats == {"nodes counted": 2} and record.error == {"max_abs": 0.0, "max_rel": 0.0}


def test_a_new_backend_is_one_file_and_compile_model_dispatches_to_it(tmp_path, monkeypatch, tiny_model):
    folder = tmp_path / "extra_backends"
    folder.mkdir()
    (folder / "onnx_copy_build.py").write_text(textwrap.dedent(TOY_BACKEND))
    backend_base.registered_backends()  # likewise for the built-in backends
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(folder)])
    monkeypatch.setattr(backend_base, "_REGISTRY", dict(backend_base._REGISTRY))
    monkeypatch.setattr(backend_base, "_LOADED", set(backend_base._LOADED))
    try:
        result = compile_model(io.load(tiny_model), "llvm -mtriple=riscv64-linux-gnu", tmp_path / "out", name="tiny")
    finally:
        _forget_modules("backends.onnx_copy_build")
    assert result.backend == "cross-riscv64" and result.library == tmp_path / "out" / "tiny.onnx"
    assert result.check is not None and result.check.passed and result.check.max_abs_error == 0.0
    assert result.artifacts[0].role == "library" and result.artifacts[0].size_bytes == result.library.stat().st_size


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_pass_library_imports_no_backend_and_only_the_app_ties_them():
    library = [p for p in (ROOT / "passes").rglob("*.py") if "app" not in p.relative_to(ROOT / "passes").parts]
    offenders = {str(p.relative_to(ROOT)) for p in library if any(m == "backends" or m.startswith("backends.") for m in _imported_modules(p))}
    assert library and not offenders
    backend_files = list((ROOT / "backends").rglob("*.py"))
    assert not {str(p.relative_to(ROOT)) for p in backend_files if any(m == "passes" or m.startswith("passes.") for m in _imported_modules(p))}


SMALL_CNN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,8,8] x) => (float[1,10] y) {
    a = Conv <pads = [1,1,1,1]> (x, w1, b1)
    r = Relu(a)
    c = Conv (r, w2, b2)
    s = Add(c, r)
    p = GlobalAveragePool(s)
    f = Flatten(p)
    y = Gemm <transB = 1> (f, w3, b3)
}
"""

LOSSY = {
    "prune{ratio=0.5,round=1,calib=4,holdout=2}": ("a", "pruned 16/32 output channels", (2336, 1168)),
    "prune-layers{blocks=1,calib=2,holdout=2}": ("Add -> 's'", "removed (1 nodes)", (1056, 0)),
    "quantize": ("a", "int8", (2336, 2336)),
    "quantize-dynamic": ("y", "int8 weights (per channel), dynamic int8 activations", (330, 330)),
    "quantize-weights{block_size=16}": ("a", "int4 weights, blocks of 16, gptq rounding", (2336, 2336)),
    "cluster{min_size=16}": ("a", "16 shared values (index)", (2336, 2336)),
}


@pytest.mark.parametrize("pipeline", list(LOSSY))
def test_every_lossy_pass_reports_its_layers_and_measured_error_to_the_manager(pipeline):
    import onnx_ir as ir

    from passes.calibration import Calibration
    from passes.manager import PassContext

    proto = onnx.parser.parse_model(SMALL_CNN)
    rng = np.random.default_rng(0)
    for name, shape in {"w1": (32, 8, 3, 3), "b1": (32,), "w2": (32, 32, 1, 1), "b2": (32,), "w3": (10, 32), "b3": (10,)}.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name))
    model = ir.serde.deserialize_model(proto)
    calibration = Calibration.generated_for(model, n=8)
    (record,) = PassManager(pipeline, context=PassContext({}, calibration), feeds=calibration.take(2)).run(model).records
    assert record.modified and not record.failure
    layer, action, (params_before, params_after) = LOSSY[pipeline]
    row = next(row for row in record.layers if row["layer"] == layer)
    assert row["action"] == action and (row["params_before"], row["params_after"]) == (params_before, params_after)
    assert all({"op", "macs_before", "macs_after"} <= set(r) for r in record.layers)
    assert record.fidelity["feeds"] >= 2 and 0 < record.fidelity["cosine"] <= 1
    assert set(record.fidelity) >= {"max_abs", "max_rel", "sqnr_db", "cosine"}
