"""graphpress passes inside an onnx-graphsurgeon pipeline: ``run(graph, "fold")`` between two gs steps.

Rules:
- ``run(graph, pipeline, **options)`` exports the GraphSurgeon graph to ONNX (``gs.export_onnx``), runs
  the pipeline with the pass manager (every pass verified as in ``python -m passes optimize``), and
  imports the result as a new ``gs.Graph`` (``gs.import_onnx``). The graph it is given is left as it
  was, so a caller can still compare against it.
- Nothing graphpress does not rewrite changes on the way: node and tensor names, attributes (graph
  attributes of If/Loop/Scan included), opsets and custom domains, the IR version, producer name and
  version, doc strings and model-local functions pass through unchanged. A pipeline that changes
  nothing returns an equal graph.
- External data stays external: a weight whose ``TensorProto`` points at an external file (a graph
  imported with ``onnx.load(path, load_external_data=False)``) comes back pointing at the same file,
  offset and length, unless a pass rewrote that weight. ``base_dir`` (the folder the locations are
  relative to, normally the model's folder) lets passes and the verifier read such weights; without
  it they are treated as opaque, which leaves them alone.
- Options: ``input_shapes`` (``{"x": [1, 3, 640, 640]}``) fixes input shapes first, as
  ``--input-shape`` does; ``base_dir`` as above; everything else goes to ``PassManager``
  (``verify``, ``feeds``, ``tolerance``, ``atol``, ``strict``, ``instruments``, ``context``).
- A pass that fails is rolled back and, since a returned graph cannot carry the report, the run
  stops with ``PassFailedError`` naming it (``strict=True`` unless the caller says otherwise).
  ``result=True`` returns ``(graph, RunResult)`` instead, for the per-pass records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import onnx_graphsurgeon as gs
import onnx_ir as ir

from ir import shapes
from passes.manager import PIPELINE_METADATA_KEY, PassManager, RunResult


def to_ir(graph: gs.Graph, base_dir: str | os.PathLike | None = None) -> ir.Model:
    """The GraphSurgeon graph as an onnx_ir model (the graph itself is not modified)."""
    # do_type_check=False: gs refuses graph outputs without a dtype; the pass manager's structural
    # check is the one that judges the model.
    proto = gs.export_onnx(graph, do_type_check=False)
    model = ir.serde.deserialize_model(proto)
    if base_dir is not None:
        ir.external_data.set_base_dir(model.graph, os.fspath(base_dir))
    # GraphSurgeon edits can leave nodes out of order (gs.toposort is a separate step); passes expect order.
    model.graph.sort()
    shapes.remember_declared(model)
    return model


def from_ir(model: ir.Model) -> gs.Graph:
    """An onnx_ir model as a new GraphSurgeon graph."""
    return gs.import_onnx(ir.serde.serialize_model(model))


def run(graph: gs.Graph, pipeline: str = "fold", *, input_shapes: Mapping[str, list[int]] | None = None,
        base_dir: str | os.PathLike | None = None, result: bool = False, **options: Any) -> gs.Graph | tuple[gs.Graph, RunResult]:
    """Run a graphpress pipeline on a GraphSurgeon graph; returns the rewritten graph as a new gs.Graph."""
    model = to_ir(graph, base_dir)
    if input_shapes:
        shapes.fix_input_shapes(model, dict(input_shapes))
    options.setdefault("strict", True)
    outcome = PassManager(pipeline, **options).run(model)
    # The pipeline string is model metadata, which a gs.Graph does not hold; drop it rather than
    # leave it to be lost silently in one direction only.
    outcome.model.metadata_props.pop(PIPELINE_METADATA_KEY, None)
    rewritten = from_ir(outcome.model)
    return (rewritten, outcome) if result else rewritten
