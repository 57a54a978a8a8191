"""graphpress passes between GraphSurgeon steps: passes.graphsurgeon.run(graph, pipeline) -> gs.Graph.

The round trips use the real PP-OCR models; outputs are compared with ONNX Runtime on rendered text
images, names and attributes with the graph that went in.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from ir import fidelity, runtime
from ir.errors import PassFailedError
from models import zoo
from passes import graphsurgeon
from passes.base import Pass, register

OCR_TASKS = {"ppocr-det": "det", "ppocr-rec": "rec", "ppocr-cls": "cls"}


def _real(name):
    marks = [pytest.mark.real_models]
    if not zoo.available(name):
        marks.append(pytest.mark.skip(reason=zoo.REAL_MODELS_HINT))
    return pytest.param(name, marks=marks)


REAL = [_real(name) for name in OCR_TASKS]


def _graph(name) -> gs.Graph:
    return gs.import_onnx(onnx.load(zoo.model_path(name)))


def _feeds(name, n=2):
    from models.ocr_data import calibration_arrays

    return calibration_arrays(OCR_TASKS[name], n, seed=0)


def _run(graph: gs.Graph, feed) -> dict[str, np.ndarray]:
    return runtime.run(gs.export_onnx(graph, do_type_check=False), feed)


def _node_signature(node: onnx.NodeProto) -> tuple:
    return (node.name, node.op_type, node.domain, tuple(node.input), tuple(node.output),
            tuple(attr.SerializeToString(deterministic=True) for attr in node.attribute))


@pytest.mark.parametrize("name", REAL)
def test_a_pipeline_that_changes_nothing_gives_back_the_same_nodes_weights_and_interface(name):
    graph = _graph(name)
    before = gs.export_onnx(graph)
    after = gs.export_onnx(graphsurgeon.run(graph, "eliminate-dead"))
    assert [_node_signature(n) for n in after.graph.node] == [_node_signature(n) for n in before.graph.node]
    assert {t.name: t.SerializeToString() for t in after.graph.initializer} == {t.name: t.SerializeToString() for t in before.graph.initializer}
    assert [i.SerializeToString() for i in after.graph.input] == [i.SerializeToString() for i in before.graph.input]
    assert [o.name for o in after.graph.output] == [o.name for o in before.graph.output]
    assert (after.ir_version, list(after.opset_import), after.producer_name) == (before.ir_version, list(before.opset_import), before.producer_name)


@pytest.mark.parametrize("name", REAL)
def test_fold_through_graphsurgeon_keeps_outputs_and_names_of_the_real_models(name):
    graph = _graph(name)
    originals = {node.name: node.op for node in graph.nodes if node.name}
    folded = graphsurgeon.run(graph, "fold", input_shapes=zoo.default_input_shapes(name), feeds=_feeds(name))
    assert len(folded.nodes) < len(graph.nodes) / 2
    assert [t.name for t in folded.inputs] == [t.name for t in graph.inputs]
    assert [t.name for t in folded.outputs] == [t.name for t in graph.outputs]
    kept = [node for node in folded.nodes if node.name in originals]
    assert len(kept) >= len(folded.nodes) * 0.8  # nearly every survivor keeps its name
    assert all(originals[node.name] == node.op for node in kept)
    assert len({node.name for node in folded.nodes if node.name}) == len([n for n in folded.nodes if n.name])
    for feed in _feeds(name):
        expected, actual = _run(graph, feed), _run(folded, feed)
        assert fidelity.compare(expected, actual)["max_rel"] <= 1e-4


@pytest.mark.real_models
@pytest.mark.skipif(not zoo.available("ppocr-cls"), reason=zoo.REAL_MODELS_HINT)
def test_fold_runs_between_two_graphsurgeon_steps():
    graph = _graph("ppocr-cls")
    # GraphSurgeon step before: fix the input shape, clean up, sort.
    graph.inputs[0].shape = [1, 3, 48, 192]
    graph.cleanup().toposort()
    folded = graphsurgeon.run(graph, "fold", feeds=_feeds("ppocr-cls"))
    # GraphSurgeon step after: append an ArgMax giving the direction label as a second output.
    probabilities = folded.outputs[0]
    label = gs.Variable("label", dtype=np.int64, shape=[1])
    folded.nodes.append(gs.Node("ArgMax", name="direction_label", attrs={"axis": 1, "keepdims": 0}, inputs=[probabilities], outputs=[label]))
    folded.outputs.append(label)
    folded.cleanup().toposort()
    assert "direction_label" in [node.name for node in folded.nodes]
    assert len(folded.nodes) < len(graph.nodes) / 2
    for feed in _feeds("ppocr-cls"):
        expected = _run(graph, feed)[probabilities.name]
        result = _run(folded, feed)
        np.testing.assert_allclose(result[probabilities.name], expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(result["label"], expected.argmax(axis=1))


CUSTOM_OP = """
<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
custom (float[2,3] x) => (float[2,3] y) {
    a = Identity(x)
    b = com.example.Scale <factor = 2.5, tag = "keep me"> (a)
    y = Relu(b)
}
"""


def test_custom_ops_attributes_and_domains_pass_through_unchanged():
    graph = gs.import_onnx(onnx.parser.parse_model(CUSTOM_OP))
    folded, result = graphsurgeon.run(graph, "fold", result=True)
    assert [node.op for node in folded.nodes] == ["Scale", "Relu"]  # the Identity went
    scale = folded.nodes[0]
    assert (scale.domain, scale.attrs) == ("com.example", {"factor": 2.5, "tag": "keep me"})
    assert folded.import_domains is None or any(d.domain == "com.example" for d in gs.export_onnx(folded).opset_import)
    assert {d.domain: d.version for d in gs.export_onnx(folded).opset_import} == {"": 17, "com.example": 1}
    assert any("numerical verification skipped" in w for w in result.warnings)


def test_weights_in_external_data_stay_external_and_untouched(tmp_path):
    weight = np.arange(4 * 8, dtype=np.float32).reshape(4, 8) / 10
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    ext (float[1,4] x) => (float[1,8] y) <float[4,8] w> {
        a = Identity(x)
        m = MatMul(a, w)
        y = Relu(m)
    }
    """
    model = onnx.parser.parse_model(text)
    model.graph.initializer.append(onnx.numpy_helper.from_array(weight, "w"))
    onnx.save_model(model, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.data", size_threshold=0)
    graph = gs.import_onnx(onnx.load(tmp_path / "ext.onnx", load_external_data=False))

    folded = graphsurgeon.run(graph, "fold", base_dir=tmp_path)

    exported = gs.export_onnx(folded)
    assert [node.op_type for node in exported.graph.node] == ["MatMul", "Relu"]
    (w,) = exported.graph.initializer
    assert w.data_location == onnx.TensorProto.EXTERNAL
    assert {e.key: e.value for e in w.external_data}["location"] == "ext.data"
    onnx.save(exported, tmp_path / "folded.onnx")  # beside ext.data, which it still reads
    x = np.array([[1.0, -2.0, 3.0, 0.5]], dtype=np.float32)
    (y,) = runtime.run(onnx.load(tmp_path / "folded.onnx"), {"x": x}).values()
    np.testing.assert_allclose(y, np.maximum(x @ weight, 0), rtol=1e-6)


@register
class _Crash(Pass):
    name = "test-gs-crash"

    def call(self, model):
        raise RuntimeError("bug in the pass")


def test_a_failing_pass_stops_the_run_and_names_itself():
    graph = gs.import_onnx(onnx.parser.parse_model(CUSTOM_OP))
    with pytest.raises(PassFailedError, match="test-gs-crash"):
        graphsurgeon.run(graph, "eliminate-noop,test-gs-crash")


def test_the_input_graph_is_left_as_it_was():
    graph = gs.import_onnx(onnx.parser.parse_model(CUSTOM_OP))
    graphsurgeon.run(graph, "fold")
    assert [node.op for node in graph.nodes] == ["Identity", "Scale", "Relu"]
