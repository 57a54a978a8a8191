"""The house as docs/architecture.md draws it: a pass family is one folder, a backend one file, and
the pass library does not import the backends."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

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
