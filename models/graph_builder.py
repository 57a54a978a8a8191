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
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


class GraphBuilder:
    """Collects nodes and initializers; ``to_model`` turns them into a checked ``onnx.ModelProto``."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    # -- weights --------------------------------------------------------------------------------
    def constant(self, name: str, array: np.ndarray) -> str:
        """Adds ``array`` as an initializer and returns its name."""
        self._claim(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def normal(self, name: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> str:
        values = self.rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        if mean:
            values += np.float32(mean)
        return self.constant(name, values)

    def uniform(self, name: str, shape: tuple[int, ...], low: float, high: float) -> str:
        values = self.rng.random(shape, dtype=np.float32)
        values *= np.float32(high - low)
        values += np.float32(low)
        return self.constant(name, values)

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
            initializer=self.initializers,
        )
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
