"""cluster: k-means weight sharing (Deep Compression stage 2) with the Huffman-coded size (stage 3).

Rules:
- Weights of Conv, ConvTranspose, Gemm and MatMul (constant float, at least ``min_size`` elements)
  are clustered into ``clusters`` shared values, per tensor or per output channel (axis 0), by 1-D
  k-means (``kmeans1d``: optimal on a histogram of 512 bins per tensor, 128 per channel, then refined
  on the values).
- ``mode=index`` stores uint8 indices plus a float codebook and decodes them in the graph, so any
  runtime runs the model: per tensor ``Gather(codebook, Cast(indices))``; per channel
  ``GatherElements(codebook[C, k], Cast(indices[C, -1]))`` then ``Reshape``. ``mode=float`` keeps a
  plain float weight with at most ``clusters`` distinct values (per channel) for toolchains that
  need plain weights (and for zip to exploit).
- A weight shared by several nodes is clustered once. Stats report float bytes, index bytes and the
  Huffman-coded size of the indices (plus the codebooks); the output error on calibration data
  (SQNR, cosine) is noted.
- Intent (``passes.intent``): the original with each clustered weight replaced by
  ``codebook[index]``, computed in numpy, whatever graph decodes it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ir import fidelity

from ir.constants import constant_array
from passes.base import Pass, PassResult, layer_costs, layer_row, register
from passes.cluster.huffman import coded_bits
from passes.cluster.kmeans1d import kmeans_1d
from passes.quantize import qdq
from passes.quantize.qdq import GraphWriter

CLUSTERED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    clusters: int = dataclasses.field(default=16, metadata={
        "check": lambda v: 2 <= v <= 256, "rule": "in [2, 256]", "doc": "shared values per tensor (or per channel)"})
    per_channel: bool = dataclasses.field(default=False, metadata={"doc": "one codebook per output channel (axis 0)"})
    mode: str = dataclasses.field(default="index", metadata={
        "check": lambda v: v in ("index", "float"), "rule": "index or float",
        "doc": "index: uint8 indices + codebook decoded by Gather; float: plain weights with k values"})
    min_size: int = dataclasses.field(default=1024, metadata={
        "check": lambda v: v >= 1, "rule": ">= 1", "doc": "smaller weights stay as they are"})


@register
class ClusterPass(Pass):
    name = "cluster"
    Options = ClusterOptions
    lossless = False

    def intent(self, original: ir.Model):
        from passes.intent import Intent, substitute_weights

        return Intent(substitute_weights(original, self._intended), "original with each weight replaced by codebook[index]")

    def call(self, model: ir.Model) -> PassResult:
        from ir import io

        self._intended: dict[tuple[int, int], np.ndarray] = {}
        positions = {node: i for i, node in enumerate(model.graph)}
        decoded: dict[str, np.ndarray] = {}

        reference = io.copy_model(model) if self.context is not None and getattr(self.context, "calibration", None) else None
        writer = GraphWriter(model.graph, "cluster")
        done: dict[str, ir.Value] = {}
        costs = layer_costs(model)
        action = f"{self.options.clusters} shared values" + (" per channel" if self.options.per_channel else "") + f" ({self.options.mode})"
        for node in list(model.graph):
            if node.op_type not in CLUSTERED_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
                continue
            value = node.inputs[1]
            if value.name in done:
                node.replace_input_with(1, done[value.name])
                self._intended[(positions[node], 1)] = decoded[value.name]
                self.layers.append(layer_row(node, action, costs[node]))
                continue
            weight = constant_array(value)
            if weight is None or weight.dtype.kind != "f":
                continue
            if weight.size < self.options.min_size:
                self.skipped.append((node.name or node.outputs[0].name, f"weight of {weight.size} values, fewer than min_size={self.options.min_size}"))
                continue
            self.layers.append(layer_row(node, action, costs[node]))
            replacement, decoded[value.name] = self._cluster(writer, value.name or "weight", weight)
            self._intended[(positions[node], 1)] = decoded[value.name]
            done[value.name] = replacement
            node.replace_input_with(1, replacement)
        for name, value in list(model.graph.initializers.items()):
            if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
                del model.graph.initializers[name]
        qdq.drop_unused_constants(model.graph)
        model.graph.sort()
        if done and reference is not None:
            self._report_error(reference, model)
        return PassResult(model, modified=bool(done))

    def _cluster(self, writer: GraphWriter, base: str, weight: np.ndarray) -> tuple[ir.Value, np.ndarray]:
        """The value the layer reads instead of ``weight``, and the weight it means: codebook[index]."""
        k = self.options.clusters
        rows = weight.reshape(weight.shape[0], -1) if self.options.per_channel else weight.reshape(1, -1)
        codebook = np.zeros((rows.shape[0], k), dtype=weight.dtype)
        indices = np.zeros(rows.shape, dtype=np.uint8)
        # Per channel there are many small rows: a coarser histogram keeps the DP cheap, and the
        # Lloyd refinement on the raw values recovers most of the difference.
        bins = 128 if self.options.per_channel else 512
        for r, row in enumerate(rows):
            centroids, index = kmeans_1d(row, k, bins=max(bins, 2 * k))
            codebook[r, : centroids.size] = centroids
            indices[r] = index
        self.stats["weights clustered"] += 1
        self.stats["float bytes"] += weight.nbytes
        self.stats["index bytes (uint8)"] += indices.size + codebook.nbytes
        huffman_bits = sum(coded_bits(row, k) for row in indices)
        self.stats["Huffman-coded bytes (indices + codebooks)"] += -(-huffman_bits // 8) + codebook.nbytes
        intended = np.stack([codebook[r][indices[r]] for r in range(rows.shape[0])]).reshape(weight.shape).astype(weight.dtype)
        if self.options.mode == "float":
            shared = np.take_along_axis(codebook, indices.astype(np.int64), axis=1).reshape(weight.shape)
            return writer.constant(f"{base}_clustered", shared.astype(weight.dtype)), intended
        dtype = ir.DataType.from_numpy(weight.dtype)
        index_value = writer.constant(f"{base}_indices", indices if self.options.per_channel else indices.reshape(weight.shape))
        wide = writer.node("Cast", [index_value], base, ir.DataType.INT32, index_value.shape, {"to": int(ir.DataType.INT32)})
        if not self.options.per_channel:
            table = writer.constant(f"{base}_codebook", codebook.reshape(-1))
            return writer.node("Gather", [table, wide], base, dtype, ir.Shape(weight.shape)), intended
        table = writer.constant(f"{base}_codebook", codebook)
        gathered = writer.node("GatherElements", [table, wide], base, dtype, ir.Shape(indices.shape), {"axis": 1})
        shape = writer.constant(f"{base}_shape", np.array(weight.shape, np.int64))
        return writer.node("Reshape", [gathered, shape], base, dtype, ir.Shape(weight.shape)), intended

    def _report_error(self, reference: ir.Model, model: ir.Model) -> None:
        feeds = self.context.calibration.take(4)
        self.fidelity = fidelity.measure(reference, model, feeds)
        self.note("error on %d calibration feeds: %s" % (len(feeds), fidelity.describe(self.fidelity)))
