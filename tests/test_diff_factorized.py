"""``diff`` of a factorized model against its original names each layer that became a chain."""

from __future__ import annotations

import json

import pytest

from ir import io
from ir.diff_factorized import factorized_layers
from passes.app.cli import main
from tests.decompose.helpers import chain_model, run_pass

PASSES = [("decompose", {"ratio": 0.3, "method": "svd"}), ("decompose", {"ratio": 0.3, "method": "spatial-svd"}),
          ("decompose", {"ratio": 0.3, "method": "tucker"}), ("decompose", {"ratio": 0.3, "method": "cp", "candidates": 2}),
          ("separable", {"rank": 2}), ("separable", {"rank": 2, "order": "pw-dw"})]


def factorized(name: str, options: dict):
    model = chain_model()
    pass_, result = run_pass(name, model, holdout=0, **options)
    assert result.modified
    return model, pass_.layers


def test_the_cli_names_each_factorized_layer_its_chain_and_method(tmp_path, capsys):
    original, factorized_model = tmp_path / "a.onnx", tmp_path / "b.onnx"
    io.save(chain_model(), original)
    model, rows = factorized("decompose", {"ratio": 0.3, "method": "spatial-svd"})
    io.save(model, factorized_model)
    assert main(["diff", str(original), str(factorized_model), "--json", "--no-numeric"]) == 0
    layers = {row["layer"]: row for row in json.loads(capsys.readouterr().out)["structural"]["factorized_layers"]}
    assert set(layers) == {row["layer"] for row in rows} == {"a", "b"}  # the two 3x3 convs
    rank = {row["layer"]: row["ranks"][0] for row in rows}
    assert layers["a"]["text"] == f"a: Conv 3x3 8->32 -> Conv 3x1 8->{rank['a']}, Conv 1x3 {rank['a']}->32 (spatial-svd)"
    assert layers["b"]["method_from"] == "names"
    assert {k: layers["b"][k] for k in ("macs_before", "macs_after")} == {k: next(r for r in rows if r["layer"] == "b")[k] for k in ("macs_before", "macs_after")}
    page = tmp_path / "diff.html"
    assert main(["diff", str(original), str(factorized_model), "--no-numeric", "--html", str(page)]) == 0
    assert "factorized layers (2)" in capsys.readouterr().out
    assert "<h2>Factorized layers (2)</h2>" in page.read_text() and "<code>Conv 3x1 8-&gt;" in page.read_text()


@pytest.mark.parametrize("name, options", PASSES)
def test_the_method_is_read_from_the_names_and_without_them_from_the_structure(name, options):
    model, rows = factorized(name, options)
    by_names = {f.layer: f for f in factorized_layers(chain_model(), model)}
    assert {layer: f.method for layer, f in by_names.items()} == {row["layer"]: row["method"].split()[0] for row in rows}
    for node in model.graph:
        node.name = ""
    by_structure = {f.layer: f for f in factorized_layers(chain_model(), model)}
    assert {layer: (f.method, f.method_from) for layer, f in by_structure.items()} == {row["layer"]: (row["method"], "structure") for row in rows}


def test_a_model_against_itself_has_no_factorized_layer():
    assert factorized_layers(chain_model(), chain_model()) == []
