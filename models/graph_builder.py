"""A small helper that assembles an ONNX graph node by node, with random weights as initializers.

Rules:
- Every node gets a unique name ``<scope>/<OpType>`` and one output named ``<scope>/<OpType>_output``
  (ONNX Runtime rejects duplicate node names, so the builder refuses them up front).
- Weights are float32 initializers named like a PyTorch ``state_dict`` (``layer1.0.conv1.weight``),
  drawn from the builder's own ``numpy.random.Generator``: the same seed and the same call order give
  bit-identical weights.
- The model is opset 17, IR version 8 (what a PyTorch exporter of that era writes), one input named
  ``input`` and one output named ``output``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8


class GraphBuilder:
    """Collects nodes and initializers; ``to_model`` turns them into an ``onnx.ModelProto``."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        # Arrays, not TensorProtos, until the end: each is copied into the model once.
        self.initializers: dict[str, np.ndarray] = {}
        self._names: set[str] = set()

    # -- weights --------------------------------------------------------------------------------
    def constant(self, name: str, array: np.ndarray) -> str:
        """Adds ``array`` as an initializer and returns its name."""
        self._claim(name)
        self.initializers[name] = np.ascontiguousarray(array)
        return name

    def replace_constant(self, name: str, array: np.ndarray) -> None:
        """Overwrites an initializer added earlier (same name, same shape, new value)."""
        if self.initializers[name].shape != array.shape:
            raise ValueError(f"initializer {name}: shape {array.shape} does not match {self.initializers[name].shape}")
        self.initializers[name] = np.ascontiguousarray(array)

    def normal(self, name: str, shape: tuple[int, ...], std: float) -> str:
        return self.constant(name, self.draw_normal(shape, std))

    def uniform(self, name: str, shape: tuple[int, ...], low: float, high: float) -> str:
        return self.constant(name, self.draw_uniform(shape, low, high))

    def draw_normal(self, shape: tuple[int, ...] | int, std: float) -> np.ndarray:
        """float32 N(0, std^2) values, drawn in float32 so that VGG-sized weights stay fast."""
        values = self.rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        return values

    def draw_uniform(self, shape: tuple[int, ...] | int, low: float, high: float) -> np.ndarray:
        values = self.rng.random(shape, dtype=np.float32)
        values *= np.float32(high - low)
        values += np.float32(low)
        return values

    # -- nodes ----------------------------------------------------------------------------------
    def node(self, op_type: str, inputs: list[str], scope: str, **attributes) -> str:
        """Adds one node with a single output and returns the output's name."""
        name = f"{scope}/{op_type}"
        output = f"{name}_output"
        self._claim(name)
        self._claim(output)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attributes))
        return output

    def rename_last_output(self, new_name: str) -> None:
        """Gives the last node's output the graph output's name (``output``)."""
        last = self.nodes[-1]
        self._claim(new_name)
        last.output[0] = new_name

    # -- model ----------------------------------------------------------------------------------
    def to_model(
        self,
        graph_name: str,
        input_shape: list[int | str],
        output_shape: list[int | str],
        metadata: dict[str, str],
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)],
        )
        add_initializers(graph, self.initializers, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="graphpress.models",
            ir_version=IR_VERSION,
        )
        helper.set_model_props(model, metadata)
        return model

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise ValueError(f"duplicate name in generated graph: {name}")
        self._names.add(name)


def add_initializers(graph: onnx.GraphProto, arrays: dict[str, np.ndarray], names) -> None:
    """Writes ``arrays[name]`` for each of ``names`` into ``graph.initializer`` with a single copy."""
    for name in names:
        array = arrays[name]
        tensor = graph.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.tobytes()
