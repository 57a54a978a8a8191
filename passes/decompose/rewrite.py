"""Replacing one layer by the chain of layers of its factorization.

Rules:
- The chain reads the layer's input; its last node produces the layer's output value under the
  original name (so a reference model's value of that name is the refit target, and graph outputs
  keep their names). The last node carries the bias.
- Conv chains: the layer that holds the original kernel keeps the original strides, pads,
  dilations and auto_pad; 1x1 layers have none. Spatial SVD and CP split them per axis: the ``kh x 1``
  layer takes the height stride/pads/dilation, the ``1 x kw`` layer the width ones.
- Gemm becomes Gemm(transB=1) -> Gemm(transB=1) with the bias (alpha folded, beta 1); MatMul becomes
  MatMul -> MatMul.
- New nodes and values get names unique in the graph (``<layer>/<method>_<i>``); the old weight and
  bias initializers are dropped when nothing else uses them.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from passes.decompose.layers import Layer
from passes.reconstruct import add_initializer


class Namer:
    def __init__(self, graph: ir.Graph):
        self.taken = {n.name for n in graph if n.name} | {v.name for n in graph for v in n.outputs if v.name}
        self.taken |= {v.name for v in graph.inputs} | set(graph.initializers)

    def __call__(self, base: str) -> str:
        name, counter = base, 0
        while name in self.taken:
            counter += 1
            name = f"{base}_{counter}"
        self.taken.add(name)
        return name


def conv_attributes(layer: Layer, *, kernel_axes: tuple[int, ...] | None = None) -> dict:
    """The original conv's window attributes restricted to ``kernel_axes`` (all axes by default);
    the other axes get stride 1, no pad, dilation 1."""
    dims = len(layer.kernel)
    axes = tuple(range(dims)) if kernel_axes is None else kernel_axes
    strides, dilations, pads = layer.attribute_ints("strides", 1), layer.attribute_ints("dilations", 1), layer.attribute_ints("pads", 0)
    attrs = {
        "strides": [strides[i] if i in axes else 1 for i in range(dims)],
        "dilations": [dilations[i] if i in axes else 1 for i in range(dims)],
    }
    if layer.auto_pad != "NOTSET" and kernel_axes is None:
        attrs["auto_pad"] = layer.auto_pad
    else:
        attrs["pads"] = [pads[i] if i in axes else 0 for i in range(dims)] + [pads[dims + i] if i in axes else 0 for i in range(dims)]
    return attrs


def pointwise_attributes(layer: Layer) -> dict:
    dims = len(layer.kernel)
    return {"strides": [1] * dims, "dilations": [1] * dims, "pads": [0] * (2 * dims)}


def replace(layer: Layer, method: str, steps: list[tuple[np.ndarray, dict]]) -> list[ir.Node]:
    """Replace ``layer`` by a chain; ``steps``: (weight, conv attributes incl. optional ``group``)
    per layer for convs, or (weight ``[outputs, inputs]``, {}) per layer for Gemm/MatMul."""
    node = layer.node
    graph = node.graph
    names = Namer(graph)
    dtype = layer.node.inputs[1].dtype.numpy() if layer.node.inputs[1].dtype is not None else np.float32
    base = layer.name
    x = node.inputs[0]
    new_nodes: list[ir.Node] = []
    old_inputs = [v for v in node.inputs[1:] if v is not None]
    for index, (weight, attrs) in enumerate(steps):
        last = index == len(steps) - 1
        w_value = add_initializer(graph, names(f"{base}/{method}_{index}_w"), np.asarray(weight, dtype))
        inputs = [x, w_value]
        if last and layer.bias is not None and layer.kind != "matmul":
            inputs.append(add_initializer(graph, names(f"{base}/{method}_{index}_b"), layer.bias.astype(dtype)))
        if layer.kind == "conv":
            op, attributes = "Conv", dict(attrs)
        elif layer.kind == "gemm":
            op, attributes = "Gemm", {"transB": 1}
        else:
            op, attributes = "MatMul", {}
            inputs = [x, w_value]
        new = ir.node(op, inputs, attributes=attributes, name=names(f"{base}/{method}_{index}"))
        new.outputs[0].name = names(f"{base}/{method}_{index}_out")
        new_nodes.append(new)
        x = new.outputs[0]
    if layer.kind == "matmul":  # MatMul computes x @ B: the weights go in as [inputs, outputs]
        for new in new_nodes:
            tensor = new.inputs[1].const_value.numpy()
            new.inputs[1].const_value = ir.tensor(np.ascontiguousarray(tensor.T), name=new.inputs[1].name)
            new.inputs[1].shape = ir.Shape(tensor.T.shape)
    old_output = node.outputs[0]
    ir.convenience.replace_nodes_and_values(graph, node, [node], new_nodes, [old_output], [new_nodes[-1].outputs[0]])
    for value in old_inputs:
        if value.uses() or value.is_graph_output():
            continue
        if value.is_initializer():
            graph.initializers.pop(value.name, None)
            if value in graph.inputs:
                graph.inputs.remove(value)
        elif (producer := value.producer()) is not None and producer.op_type == "Constant" and producer.graph is graph:
            graph.remove(producer, safe=True)
    return new_nodes
