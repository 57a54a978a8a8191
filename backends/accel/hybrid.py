"""Running a partitioned model: offloaded layers in the C simulation, the rest on the CPU with ONNX Runtime.

Rules:
- The glue model (``Partition.glue``) is cut into CPU stages by accelerator depth: a value's level
  is 0 for graph inputs, the level of its CPU producer's inputs, or one more than the input of the
  ``AccelLayer`` that made it. Stage L (all CPU nodes of level L, one ONNX Runtime session with
  all graph optimizations, as the whole model would get) runs, then every offloaded layer whose
  input has level L runs in the simulator.
- Each offloaded layer's int8 input and output are kept (``Trace``), so the same inputs can be given
  to the numpy reference and to ONNX Runtime's execution of the layer's own QDQ nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import helper

from backends.accel.partition import DOMAIN, Partition
from backends.accel.semantics import from_carried, to_carried
from ir import runtime


@dataclasses.dataclass
class Trace:
    inputs: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # layer -> carried int8 input
    outputs: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)


class HybridRunner:
    def __init__(self, part: Partition, run_layer: Callable[[int, np.ndarray], np.ndarray]):
        self.part = part
        self.run_layer = run_layer
        glue = part.glue
        self.types = {v.name: v for v in list(glue.graph.value_info) + list(glue.graph.input) + list(glue.graph.output)}
        inits = {i.name for i in glue.graph.initializer}
        level: dict[str, int] = {i.name: 0 for i in glue.graph.input}
        self.stages: dict[int, list[onnx.NodeProto]] = {}
        self.accel: dict[int, list[onnx.NodeProto]] = {}
        for node in glue.graph.node:
            ins = [level.get(name, 0) for name in node.input if name and name not in inits]
            if node.domain == DOMAIN:
                lvl = max(ins, default=0)
                self.accel.setdefault(lvl, []).append(node)
                level[node.output[0]] = lvl + 1
            else:
                lvl = max(ins, default=0)
                self.stages.setdefault(lvl, []).append(node)
                for out in node.output:
                    level[out] = lvl
        self.max_level = max([0, *self.stages, *self.accel])
        self._sessions: dict[int, tuple[object, list[str], list[str]]] = {}
        self._inits = {i.name: i for i in glue.graph.initializer}

    def _session(self, lvl: int):
        if lvl in self._sessions:
            return self._sessions[lvl]
        glue = self.part.glue
        nodes = self.stages[lvl]
        mine = {id(node) for node in nodes}
        produced = {out for node in nodes for out in node.output}
        needed_later = {name for node in glue.graph.node if id(node) not in mine for name in node.input}
        needed_later |= {o.name for o in glue.graph.output}
        inputs, seen = [], set()
        for node in nodes:
            for name in node.input:
                if name and name not in produced and name not in self._inits and name not in seen:
                    seen.add(name)
                    inputs.append(name)
        outputs = [out for node in nodes for out in node.output if out in needed_later]
        inits = [self._inits[name] for node in nodes for name in node.input if name in self._inits]
        unique_inits = list({i.name: i for i in inits}.values())
        graph = helper.make_graph(nodes, f"stage{lvl}", [self.types[n] for n in inputs], [self.types[n] for n in outputs],
                                  unique_inits)
        model = helper.make_model(graph, opset_imports=[o for o in glue.opset_import if o.domain != DOMAIN])
        model.ir_version = glue.ir_version
        session = runtime.session(model, optimize=True, threads=1)
        self._sessions[lvl] = (session, inputs, outputs)
        return self._sessions[lvl]

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Trace]:
        values: dict[str, np.ndarray] = dict(feeds)
        trace = Trace()
        layers = self.part.layers
        for lvl in range(self.max_level + 1):
            if lvl in self.stages:
                session, inputs, outputs = self._session(lvl)
                results = session.run(outputs, {name: values[name] for name in inputs})
                values.update(zip(outputs, results))
            for node in self.accel.get(lvl, []):
                index = next(a.i for a in node.attribute if a.name == "layer")
                layer = layers[index]
                x = to_carried(values[node.input[0]], layer.x_unsigned)
                y = self.run_layer(index, x)
                trace.inputs.setdefault(index, x)
                trace.outputs.setdefault(index, y)
                values[node.output[0]] = from_carried(y, layer.y_unsigned)
        return {o.name: values[o.name] for o in self.part.glue.graph.output}, trace


def layer_model(part: Partition, index: int) -> onnx.ModelProto:
    """The offloaded layer's own QDQ nodes (from its 8-bit input to its quantized output) as a model."""
    layer, model = part.layers[index], part.model
    types = {v.name: v for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    nodes = [model.graph.node[i] for i in part.members[index]]
    names = {name for n in nodes for name in n.input}
    inits = [i for i in model.graph.initializer if i.name in names]
    consts = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] in names]
    graph = helper.make_graph(consts + nodes, f"layer{index}", [types[layer.input_name]], [types[layer.output_name]], inits)
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out
