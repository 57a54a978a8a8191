"""Channel dependency analysis: which channels of which layers must be removed together.

Rules, per op (``C`` is a value's channel axis, tracked by its layout):
- Conv/ConvTranspose with group=1 and Gemm/MatMul with a constant 2-D weight start a new space (their
  output channels/features) and *consume* their input's channel axis (input channels/features).
- Depthwise Conv (group = input channels = output channels) passes the layout through; its weight,
  bias and ``group`` follow it. Other grouped convolutions: unprunable (groups must stay equal).
- Unary ops, activations, pooling, BatchNormalization/InstanceNormalization (parameters follow),
  Resize/Upsample (scale 1 on C; ``sizes`` entry follows), Pad (no padding on C), Dropout, Cast pass it through.
- Elementwise ops with broadcasting (Add, Mul, Sum, ...): every non-constant input whose C is full
  size is merged with the others (residual Add, squeeze-and-excitation Mul); a constant of size C
  along the axis is sliced, a broadcast (size 1) input is left alone; a non-constant input with C
  channels whose channels are not tracked makes the group unprunable.
- Concat on C: the output's channels are the inputs' segments in order; on another axis: merge.
- Transpose moves C; Squeeze/Unsqueeze shift it; Flatten/Reshape keep it when the product of the
  dimensions before C is unchanged and the dimensions after it merge into it (each channel becomes a
  block of features: Flatten into Gemm) or stay; anything else (channel shuffle) is unprunable.
- Split/Slice on C keep tracking when every piece's ends fall on segment boundaries (a Split undoing
  a Concat; split sizes and slice offsets become kept counts, ``ir.channel_groups.offsets``); a piece
  cutting through one layer's channels, attribute or computed offsets, steps: unprunable.
- A Reshape splitting one layer's C into (H, dh) with a constant H makes the channels H heads of dh
  features (``ChannelAnalysis.coarsen``), tracked on the H axis; a MatMul of two activations with the
  heads on the same batch axis (scores, context) merges them; merging (H, dh) back gives blocks of
  dh features: a head is removed whole from Q, K, V and the output projection. A Reshape mixing C
  with a preceding axis (the end of a channel shuffle): unprunable, the channel order is not
  modeled. Grouped (non-depthwise) convolutions: unprunable, their groups must stay equal.
- Reductions, Softmax, LRN, LayerNormalization over C; Gather on C; MatMul of two activations
  (attention) contracting C; Shape of a tracked value; ops with subgraphs or of other
  domains; anything not listed: every group they read becomes unprunable, with the reason.
- Graph outputs are never pruned; graph inputs start spaces that are never pruned.
Nothing is guessed: a missing static shape or a non-constant weight makes the group unprunable.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ir.channel_groups import offsets
from ir.constants import weight_array, is_weight, static_shape
from ir.channel_groups.model import Action, Group, Layout, Segment

PASS_THROUGH = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Gelu", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Identity",
    "Dropout", "Cast", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
    "GlobalLpPool", "Floor", "Ceil", "Round", "Sign", "Mish", "ThresholdedRelu", "Sin", "Cos",
})
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Pow", "PRelu"})
NORMALIZATIONS = {"BatchNormalization": 5, "InstanceNormalization": 3}
REDUCTIONS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"})


class ChannelAnalysis:
    """Spaces, layouts and actions of one model; ``groups`` merges them into prunable groups."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.origins: list[str] = []
        self.parent: list[int] = []
        self.reasons: dict[int, list[str]] = {}
        self.layouts: dict[ir.Value, Layout] = {}
        self.actions: list[Action] = []
        self._groups: list[Group] | None = None

    # -- spaces ---------------------------------------------------------------------------------
    def new_space(self, size: int, origin: str, reason: str | None = None) -> int:
        space = len(self.sizes)
        self.sizes.append(size)
        self.origins.append(origin)
        self.parent.append(space)
        if reason:
            self.block_space(space, reason)
        return space

    def root(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def merge(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return
        if ra > rb:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.reasons.setdefault(ra, []).extend(self.reasons.pop(rb, []))

    def block_space(self, space: int, reason: str) -> None:
        reasons = self.reasons.setdefault(self.root(space), [])
        if reason not in reasons:
            reasons.append(reason)

    def block(self, layout: Layout | None, reason: str) -> None:
        if layout is not None:
            for segment in layout.segments:
                self.block_space(segment.space, reason)

    def coarsen(self, space: int, factor: int) -> bool:
        """Make the channels of ``space``'s class units of ``factor`` consecutive channels (attention
        heads): every layout and action over the class gets ``block * factor``. False (nothing
        changed) when a layout mixes the class with other spaces, has a block, or sizes do not divide."""
        root = self.root(space)
        members = {s for s in range(len(self.sizes)) if self.root(s) == root}
        if any(self.sizes[s] % factor for s in members):
            return False
        touched = [l for l in [*self.layouts.values(), *(a.layout for a in self.actions)] if any(seg.space in members for seg in l.segments)]
        if any(l.block != 1 or any(seg.space not in members for seg in l.segments) for l in touched):
            return False

        def coarse(layout: Layout) -> Layout:
            if not any(seg.space in members for seg in layout.segments):
                return layout
            return Layout(layout.axis, tuple(Segment(seg.space, seg.length // factor) for seg in layout.segments), factor)

        self.layouts = {value: coarse(layout) for value, layout in self.layouts.items()}
        self.actions = [dataclasses.replace(a, layout=coarse(a.layout)) for a in self.actions]
        for s in members:
            self.sizes[s] //= factor
        return True

    # -- groups ---------------------------------------------------------------------------------
    def groups(self) -> list[Group]:
        if self._groups is None:
            by_root: dict[int, Group] = {}
            for space in range(len(self.sizes)):
                root = self.root(space)
                group = by_root.setdefault(root, Group(root, self.sizes[root], [], list(self.reasons.get(root, [])), [], [], []))
                group.spaces.append(space)
            for action in self.actions:
                roots = {self.root(s.space) for s in action.layout.segments}
                for root in roots:
                    target = {"output": by_root[root].producers, "input": by_root[root].consumers}.get(action.kind, by_root[root].followers)
                    target.append(action)
            self._groups = sorted(by_root.values(), key=lambda g: g.id)
        return self._groups

    def group_of(self, space: int) -> Group:
        root = self.root(space)
        return next(g for g in self.groups() if g.id == root)


def analyze_model(model: ir.Model) -> ChannelAnalysis:
    analysis = ChannelAnalysis()
    graph = model.graph
    initializers = set(graph.initializers.values())
    for value in graph.inputs:
        if value in initializers:
            continue
        dims = static_shape(value)
        if dims is not None and len(dims) >= 2:
            space = analysis.new_space(dims[1], f"input {value.name}", f"graph input '{value.name}'")
            analysis.layouts[value] = Layout(1, (Segment(space, dims[1]),))
    for node in graph:
        _Rules(analysis, node).apply()
    for value in graph.outputs:
        analysis.block(analysis.layouts.get(value), f"reaches graph output '{value.name}'")
    return analysis


def node_label(node: ir.Node) -> str:
    if node.name:
        return f"{node.op_type} '{node.name}'"
    output = node.outputs[0].name if node.outputs else "?"
    return f"{node.op_type} -> '{output}'"


class _Rules:
    """The rule for one node: records actions, merges spaces and sets the outputs' layouts."""

    def __init__(self, analysis: ChannelAnalysis, node: ir.Node):
        self.a = analysis
        self.node = node
        self.op = node.op_type
        self.label = node_label(node)
        self.tracked = [(i, analysis.layouts[v]) for i, v in enumerate(node.inputs) if v is not None and v in analysis.layouts]

    def apply(self) -> None:
        node = self.node
        if not self.tracked and self.op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            return
        if node.domain not in ("", "ai.onnx"):
            return self.refuse(f"read by custom op {node.domain}::{self.label}")
        if any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values()):
            return self.refuse(f"read by {self.label}, which has subgraphs")
        handler = getattr(self, f"_{self.op}", None)
        if handler is not None:
            return handler()
        if self.op in PASS_THROUGH:
            return self.pass_through()
        if self.op in ELEMENTWISE:
            return self.elementwise()
        if self.op in NORMALIZATIONS:
            return self.normalization()
        if self.op in REDUCTIONS:
            return self.reduction()
        return self.refuse(f"read by {self.label}, an op the analysis does not model")

    # -- helpers ---------------------------------------------------------------------------------
    def refuse(self, reason: str) -> None:
        for _, layout in self.tracked:
            self.a.block(layout, reason)

    def data(self) -> Layout | None:
        """The layout of input 0; other tracked inputs (e.g. a Clip bound) are refused."""
        layout = self.a.layouts.get(self.node.inputs[0]) if self.node.inputs else None
        for index, other in self.tracked:
            if index != 0:
                self.a.block(other, f"used as a parameter of {self.label}")
        return layout

    def set_output(self, layout: Layout | None, index: int = 0) -> None:
        if layout is not None and index < len(self.node.outputs):
            self.a.layouts[self.node.outputs[index]] = layout

    def action(self, kind: str, layout: Layout, index: int = 1, axis: int = 0) -> None:
        self.a.actions.append(Action(kind, self.node, layout, index, axis))

    def rank(self, index: int = 0) -> int | None:
        dims = static_shape(self.node.inputs[index]) if index < len(self.node.inputs) else None
        return None if dims is None else len(dims)

    def int_list(self, name: str) -> list[int] | None:
        attr = self.node.attributes.get(name)
        return None if attr is None else list(attr.value)

    # -- rules: pass-through ----------------------------------------------------------------------
    def pass_through(self) -> None:
        layout = self.data()
        self.set_output(layout)

    def normalization(self) -> None:
        layout = self.data()
        if layout is None:
            return
        if layout.axis != 1 or layout.block != 1:
            return self.refuse(f"{self.label} normalizes along axis 1, not the tracked channel axis")
        count = NORMALIZATIONS[self.op]
        if not all(is_weight(v) for v in self.node.inputs[1:count]):
            return self.refuse(f"{self.label} has non-constant parameters")
        for index in range(1, min(count, len(self.node.inputs))):
            self.action("constant", layout, index, 0)
        self.set_output(layout)

    def _Resize(self) -> None:
        layout = self.data()
        if layout is None:
            return
        node = self.node
        at = 1 if self.op == "Upsample" else 2  # Upsample (opset < 10): (X, scales); Resize: (X, roi, scales, sizes)
        scales = weight_array(node.inputs[at]) if len(node.inputs) > at and node.inputs[at] is not None else None
        sizes = weight_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None
        if scales is not None and scales.size and scales.size > layout.axis and scales[layout.axis] == 1:
            return self.set_output(layout)
        if sizes is not None and sizes.size > layout.axis and layout.block == 1:
            self.action("shape", layout, 3, layout.axis)
            return self.set_output(layout)
        return self.refuse(f"{self.label} has no constant scale of 1 on the channel axis")

    _Upsample = _Resize

    def _Pad(self) -> None:
        layout = self.data()
        if layout is None:
            return
        pads = weight_array(self.node.inputs[1]) if len(self.node.inputs) > 1 else None
        if pads is None:
            pads = self.int_list("pads")
        rank = self.rank()
        if pads is None or rank is None or len(self.node.inputs) > 3:
            return self.refuse(f"{self.label} has non-constant pads")
        pads = np.asarray(pads).reshape(-1)
        if pads[layout.axis] != 0 or pads[layout.axis + rank] != 0:
            return self.refuse(f"{self.label} pads the channel axis")
        self.set_output(layout)

    def _Softmax(self) -> None:
        layout = self.data()
        rank = self.rank()
        axis = self.node.attributes.get_int("axis", -1)
        if layout is None:
            return
        if rank is None or axis % rank == layout.axis:
            return self.refuse(f"{self.label} normalizes over the channel axis")
        self.set_output(layout)

    _LogSoftmax = _Softmax

    def _LRN(self) -> None:
        self.refuse(f"{self.label} mixes neighbouring channels")

    def _LayerNormalization(self) -> None:
        layout = self.data()
        rank = self.rank()
        if layout is None:
            return
        axis = self.node.attributes.get_int("axis", -1)
        if rank is None or layout.axis >= axis % rank:
            return self.refuse(f"{self.label} normalizes over the channel axis")
        self.set_output(layout)

    def reduction(self) -> None:
        layout = self.data()
        rank = self.rank()
        if layout is None:
            return
        axes = self.int_list("axes") if self.op.startswith("Arg") is False else None
        if self.op.startswith("Arg"):
            axes = [self.node.attributes.get_int("axis", 0)]
        if axes is None and len(self.node.inputs) > 1 and self.node.inputs[1] is not None:
            array = weight_array(self.node.inputs[1])
            axes = None if array is None else [int(x) for x in array.reshape(-1)]
        if rank is None or axes is None or layout.axis in {a % rank for a in axes}:
            return self.refuse(f"{self.label} reduces over the channel axis")
        keep = self.node.attributes.get_int("keepdims", 1)
        shift = 0 if keep else sum(1 for a in axes if a % rank < layout.axis)
        self.set_output(layout.moved(layout.axis - shift))

    # -- rules: layers -----------------------------------------------------------------------------
    def _Conv(self) -> None:
        node = self.node
        layout = self.a.layouts.get(node.inputs[0])
        weight = static_shape(node.inputs[1])
        out_dims = static_shape(node.outputs[0])
        group = node.attributes.get_int("group", 1)
        for index, other in self.tracked:
            if index != 0:
                self.a.block(other, f"used as a weight of {self.label}")
        if weight is None or not all(is_weight(v) for v in node.inputs[1:] if v is not None) or out_dims is None:
            self.refuse(f"{self.label} has a non-constant weight or unknown shapes")
            return self._blocked_output(weight[0] if weight else None, "non-constant weight or unknown shape")
        if layout is not None and (layout.axis != 1 or layout.block != 1):
            self.refuse(f"{self.label} reads the channels on another axis")
            layout = None
        in_channels = weight[1] * group
        if group == 1:
            if layout is not None:
                self.action("input", layout, 1, 1)
            space = self.a.new_space(weight[0], self.label)
            out = Layout(1, (Segment(space, weight[0]),))
            self.action("output", out, 1, 0)
            return self.set_output(out)
        if group == in_channels == weight[0] and layout is not None:
            self.action("constant", layout, 1, 0)
            if len(node.inputs) > 2 and node.inputs[2] is not None:
                self.action("constant", layout, 2, 0)
            self.action("group", layout)
            return self.set_output(layout)
        self.a.block(layout, f"grouped {self.label} (group={group}) couples channels group-wise")
        self._blocked_output(weight[0], f"grouped convolution (group={group}) couples channels group-wise")

    def _batched_matmul(self, a_layout, b_layout, out_dims) -> bool:
        """MatMul of two activations (attention scores, context) over tracked heads on a batch axis:
        both operands keep the heads on the same axis (merged), the product has them there too."""
        ranks = (self.rank(0), self.rank(1))
        layouts = [l for l in (a_layout, b_layout) if l is not None]
        if out_dims is None or None in ranks or ranks[0] != ranks[1] or ranks[0] != len(out_dims) or not layouts:
            return False
        if a_layout is None or b_layout is None:
            return False  # an untracked operand would keep its heads
        if any(l.axis >= ranks[0] - 2 or l.block != 1 for l in layouts) or a_layout.axis != b_layout.axis:
            return False
        if [s.length for s in a_layout.segments] != [s.length for s in b_layout.segments]:
            return False
        for mine, theirs in zip(a_layout.segments, b_layout.segments):
            self.a.merge(mine.space, theirs.space)
        self.set_output(a_layout)
        return True

    def _blocked_output(self, channels: int | None, reason: str) -> None:
        dims = static_shape(self.node.outputs[0])
        channels = channels or (dims[1] if dims and len(dims) > 1 else None)
        if channels:
            space = self.a.new_space(channels, self.label, f"{self.label}: {reason}")
            self.set_output(Layout(1, (Segment(space, channels),)))

    def _ConvTranspose(self) -> None:
        node = self.node
        layout = self.a.layouts.get(node.inputs[0])
        weight = static_shape(node.inputs[1])
        group = node.attributes.get_int("group", 1)
        if weight is None or not all(is_weight(v) for v in node.inputs[1:] if v is not None) or group != 1:
            self.refuse(f"{self.label}: grouped or non-constant weight")
            return self._blocked_output(None, "grouped or non-constant weight")
        # An output_shape attribute holds spatial sizes only: the channels come from the weight.
        if layout is not None and (layout.axis != 1 or layout.block != 1):
            self.refuse(f"{self.label} reads the channels on another axis")
            layout = None
        if layout is not None:
            self.action("input", layout, 1, 0)
        space = self.a.new_space(weight[1], self.label)
        out = Layout(1, (Segment(space, weight[1]),))
        self.action("output", out, 1, 1)
        self.set_output(out)

    def _Gemm(self) -> None:
        node = self.node
        layout = self.a.layouts.get(node.inputs[0])
        weight = weight_array(node.inputs[1]) if len(node.inputs) > 1 else None
        trans_b = node.attributes.get_int("transB", 0)
        for index, other in self.tracked:
            if index != 0:
                self.a.block(other, f"used as an operand of {self.label}")
        if weight is None or weight.ndim != 2 or node.attributes.get_int("transA", 0):
            self.refuse(f"{self.label} has a non-constant weight or transposed input")
            return self._blocked_output(None, "non-constant weight")
        if layout is not None:
            if layout.axis != 1:
                self.refuse(f"{self.label} reads the channels on another axis")
            else:
                self.action("input", layout, 1, 1 if trans_b else 0)
        features = weight.shape[0] if trans_b else weight.shape[1]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if bias is not None and not is_weight(bias):
            return self._blocked_output(features, "non-constant bias")
        space = self.a.new_space(features, self.label)
        out = Layout(1, (Segment(space, features),))
        self.action("output", out, 1, 0 if trans_b else 1)
        self.set_output(out)

    def _MatMul(self) -> None:
        node = self.node
        a_layout = self.a.layouts.get(node.inputs[0])
        b_layout = self.a.layouts.get(node.inputs[1])
        a_rank, out_dims = self.rank(0), static_shape(node.outputs[0])
        weight = static_shape(node.inputs[1]) if is_weight(node.inputs[1]) else None
        if weight is None and not is_weight(node.inputs[1]) and self._batched_matmul(a_layout, b_layout, out_dims):
            return
        if weight is None or len(weight) != 2 or b_layout is not None or a_rank is None or a_rank < 2 or out_dims is None:
            reason = f"contracted by {self.label} of two activations (attention)"
            self.refuse(reason)
            return
        if a_layout is not None:
            if a_layout.axis == a_rank - 1:
                self.action("input", a_layout, 1, 0)
            else:
                self.a.block(a_layout, f"{self.label} reads it on a batch or row axis")
        space = self.a.new_space(weight[1], self.label)
        out = Layout(len(out_dims) - 1, (Segment(space, weight[1]),))
        self.action("output", out, 1, 1)
        self.set_output(out)

    # -- rules: elementwise and data movement -----------------------------------------------------
    def elementwise(self) -> None:
        node = self.node
        out_dims = static_shape(node.outputs[0])
        if out_dims is None:
            return self.refuse(f"{self.label} has an unknown output shape")
        rank = len(out_dims)
        axes = {}
        for index, layout in self.tracked:
            in_rank = self.rank(index)
            if in_rank is None:
                return self.refuse(f"{self.label} has an input of unknown shape")
            axes[index] = layout.axis + rank - in_rank
        full = [(i, l) for i, l in self.tracked if l.channels * l.block == out_dims[axes[i]]]
        if not full:
            return self.refuse(f"{self.label} broadcasts the channels")
        axis = axes[full[0][0]]
        first = full[0][1]
        if any(axes[i] != axis for i, _ in full) or any(l.block != first.block for _, l in full):
            return self.refuse(f"{self.label} joins channels on different axes")
        for index, layout in full[1:]:
            if [s.length for s in layout.segments] != [s.length for s in first.segments]:
                return self.refuse(f"{self.label} joins differently concatenated channels")
            for mine, theirs in zip(first.segments, layout.segments):
                self.a.merge(mine.space, theirs.space)
        for index, value in enumerate(node.inputs):
            if value is None or any(i == index for i, _ in full):
                continue
            dims = static_shape(value)
            if dims is None:
                return self.refuse(f"{self.label} has an input of unknown shape")
            own_axis = axis - (rank - len(dims))
            if own_axis < 0 or dims[own_axis] == 1:
                continue
            if not is_weight(value):
                return self.refuse(f"{self.label} combines it with untracked channels")
            self.action("constant", first, index, own_axis)
        self.set_output(first.moved(axis))

    def _Where(self) -> None:
        self.refuse(f"read by {self.label}, an op the analysis does not model")

    def _Concat(self) -> None:
        node = self.node
        out_dims = static_shape(node.outputs[0])
        if out_dims is None:
            return self.refuse(f"{self.label} has an unknown output shape")
        axis = node.attributes.get_int("axis", 0) % len(out_dims)
        layouts = [self.a.layouts.get(v) for v in node.inputs]
        tracked = [l for l in layouts if l is not None]
        if any(l.axis != tracked[0].axis for l in tracked):
            return self.refuse(f"{self.label} joins channels on different axes")
        if tracked[0].axis != axis:
            # Concatenation along another axis (e.g. the sequence): the channels must agree.
            if len(tracked) != len(layouts):
                return self.refuse(f"{self.label} concatenates it with untracked channels")
            self.tracked = [(i, l) for i, l in enumerate(layouts)]
            for layout in tracked[1:]:
                if [s.length for s in layout.segments] != [s.length for s in tracked[0].segments]:
                    return self.refuse(f"{self.label} joins differently concatenated channels")
                for mine, theirs in zip(tracked[0].segments, layout.segments):
                    self.a.merge(mine.space, theirs.space)
            return self.set_output(tracked[0])
        if len(tracked) != len(layouts) or any(l.block != 1 for l in tracked):
            return self.refuse(f"{self.label} concatenates it with untracked channels")
        self.set_output(Layout(axis, tuple(s for l in tracked for s in l.segments)))

    def _Transpose(self) -> None:
        layout = self.data()
        rank = self.rank()
        if layout is None:
            return
        perm = self.int_list("perm") or (list(range(rank))[::-1] if rank else None)
        if perm is None:
            return self.refuse(f"{self.label} has an unknown rank")
        self.set_output(layout.moved(perm.index(layout.axis)))

    def _Squeeze(self) -> None:
        self._static_reshape()

    def _Unsqueeze(self) -> None:
        self._static_reshape()

    def _Flatten(self) -> None:
        self._static_reshape()

    def _static_reshape(self) -> None:
        """An op that only regroups dimensions, its output shape known: follow the channel axis like a Reshape."""
        layout = self.data()
        if layout is None:
            return
        in_dims, out_dims = static_shape(self.node.inputs[0]), static_shape(self.node.outputs[0])
        if in_dims is None or out_dims is None:
            return self.refuse(f"{self.label} has unknown shapes")
        self._reshape_like(layout, in_dims, out_dims, rewrite_index=None)

    def _Reshape(self) -> None:
        layout = self.data()
        if layout is None:
            return
        in_dims, out_dims = static_shape(self.node.inputs[0]), static_shape(self.node.outputs[0])
        if in_dims is None or out_dims is None or not is_weight(self.node.inputs[1]):
            return self.refuse(f"{self.label} has a computed target shape")
        self._reshape_like(layout, in_dims, out_dims, rewrite_index=1)

    def _reshape_like(self, layout: Layout, in_dims, out_dims, rewrite_index: int | None) -> None:
        before = int(np.prod(in_dims[: layout.axis]))
        after = int(np.prod(in_dims[layout.axis + 1 :]))
        length = in_dims[layout.axis]
        prefix = 1
        for axis, dim in enumerate(out_dims):
            if prefix == before and dim % length == 0 and dim > 0:
                factor = dim // length
                if after == factor * int(np.prod(out_dims[axis + 1 :])):
                    new = Layout(axis, layout.segments, layout.block * factor)
                    if rewrite_index is not None:
                        target = weight_array(self.node.inputs[rewrite_index]).reshape(-1)
                        if target[axis] not in (0, -1):
                            self.action("shape", new, rewrite_index, axis)
                        elif target[axis] == 0 and axis != layout.axis:
                            return self.refuse(f"{self.label} copies a dimension into the channel axis")
                    return self.set_output(new)
            prefix *= dim
            if prefix > before:
                break
        if rewrite_index is not None and self._split_heads(layout, in_dims, out_dims, rewrite_index):
            return
        self.refuse(_reshape_reason(self.label, in_dims, out_dims, layout.axis))

    def _split_heads(self, layout: Layout, in_dims, out_dims, rewrite_index: int) -> bool:
        """[.., H*dh, ..] -> [.., H, dh, ..] of one layer's features: the channels become H heads of dh
        (``coarsen``), tracked on the H axis; a head is then removed whole. Only for a constant H entry."""
        before, after = int(np.prod(in_dims[: layout.axis])), int(np.prod(in_dims[layout.axis + 1 :]))
        spaces = {self.a.root(seg.space) for seg in layout.segments}
        prefix = 1
        for axis in range(len(out_dims) - 1):
            heads, size = out_dims[axis], out_dims[axis + 1]
            if prefix == before and heads * size == in_dims[layout.axis] and int(np.prod(out_dims[axis + 2 :])) == after:
                target = weight_array(self.node.inputs[rewrite_index]).reshape(-1)
                if heads < 2 or size < 2 or len(spaces) != 1 or layout.block != 1 or target[axis] in (0, -1):
                    return False
                if not self.a.coarsen(layout.segments[0].space, size):
                    return False
                heads_layout = Layout(axis, self.a.layouts[self.node.inputs[0]].segments)
                self.action("shape", heads_layout, rewrite_index, axis)
                self.set_output(heads_layout)
                return True
            prefix *= out_dims[axis]
        return False

    def _Split(self) -> None:
        layout = self.data()
        rank = self.rank()
        if layout is None:
            return
        axis = self.node.attributes.get_int("axis", 0)
        if rank is None:
            return self.refuse(f"{self.label} has an unknown rank")
        if axis % rank != layout.axis:
            for index in range(len(self.node.outputs)):
                self.set_output(layout, index)
            return
        sizes = weight_array(self.node.inputs[1]) if len(self.node.inputs) > 1 and self.node.inputs[1] is not None else None
        if sizes is None or layout.block != 1:
            # Sizes in an attribute (opset < 13) or implied equal parts cannot be rewritten per piece.
            return self.refuse(f"{self.label} splits the channel axis without a constant split input")
        pieces, start = [], 0
        for size in (int(v) for v in sizes.reshape(-1)):
            segments = offsets.segments_between(layout, start, start + size)
            if segments is None:
                return self.refuse(f"{self.label} splits the channel axis inside one layer's channels")
            pieces.append(Layout(layout.axis, segments))
            start += size
        for index, piece in enumerate(pieces):
            self.action("shape", piece, 1, index)
            self.set_output(piece, index)

    def _Slice(self) -> None:
        layout = self.data()
        rank = self.rank()
        if layout is None:
            return
        inputs = [weight_array(v) if v is not None else None for v in self.node.inputs[1:5]] + [None] * 4
        starts, ends, axes, steps = inputs[:4]
        if len(self.node.inputs) < 3 or starts is None or ends is None or (axes is None and len(self.node.inputs) > 3 and self.node.inputs[3] is not None):
            return self.refuse(f"{self.label} slices with computed or attribute offsets")
        if rank is None:
            return self.refuse(f"{self.label} has an unknown rank")
        axes = list(range(len(starts.reshape(-1)))) if axes is None else [int(a) % rank for a in axes.reshape(-1)]
        if layout.axis not in axes:
            return self.set_output(layout)
        entry = axes.index(layout.axis)
        start, end = int(starts.reshape(-1)[entry]), int(ends.reshape(-1)[entry])
        step = 1 if steps is None else int(steps.reshape(-1)[entry])
        channels = layout.channels * layout.block
        segments = offsets.segments_between(layout, start, min(end, channels)) if layout.block == 1 and start >= 0 and end >= 0 and step == 1 else None
        if segments is None:
            return self.refuse(f"{self.label} slices the channel axis inside one layer's channels (or with a step or negative offset)")
        if start > 0:
            self.action("shape", offsets.prefix(layout, start), 1, entry)
        if end < channels:  # an end at or past the last channel stays valid as channels go
            self.action("shape", offsets.prefix(layout, end), 2, entry)
        self.set_output(Layout(layout.axis, segments))

    def _Gather(self) -> None:
        layout = self.data()
        rank = self.rank()
        if layout is None:
            return
        axis = self.node.attributes.get_int("axis", 0)
        indices = static_shape(self.node.inputs[1])
        if rank is None or indices is None or axis % rank == layout.axis:
            return self.refuse(f"{self.label} gathers along the channel axis")
        shift = len(indices) - 1 if axis % rank < layout.axis else 0
        self.set_output(layout.moved(layout.axis + shift))

    def _Shape(self) -> None:
        self.refuse(f"its shape is read by {self.label}")

    def _Expand(self) -> None:
        layout = self.data()
        in_dims, out_dims = static_shape(self.node.inputs[0]), static_shape(self.node.outputs[0]) if self.node.inputs else None
        if layout is None:
            return
        if in_dims is None or out_dims is None:
            return self.refuse(f"{self.label} has unknown shapes")
        axis = layout.axis + len(out_dims) - len(in_dims)
        if out_dims[axis] != in_dims[layout.axis]:
            return self.refuse(f"{self.label} broadcasts the channels")
        self.set_output(layout.moved(axis))


def _reshape_reason(label: str, in_dims, out_dims, axis: int) -> str:
    """Why a Reshape ends tracking. Splitting C into factors is how attention heads (also fused
    q/k/v: 3 x H x dh) and channel shuffles start; merging C with a preceding axis ends a shuffle."""
    before = int(np.prod(in_dims[:axis]))
    prefix = 1
    for index in range(len(out_dims)):
        if prefix == before:
            product, end = 1, index
            while end < len(out_dims) and product < in_dims[axis]:
                product *= out_dims[end]
                end += 1
            # Unit factors (a batch of 1 ahead of the split) split nothing: name the real ones.
            factors = [d for d in out_dims[index:end] if d != 1]
            if product == in_dims[axis] and len(factors) >= 2:
                parts = " x ".join(str(d) for d in factors)
                return (f"{label} splits the channel axis into {parts} (attention heads or a channel shuffle) "
                        "in a way whole heads cannot be tracked")
        prefix *= out_dims[index]
        if prefix > before:
            break
    return f"{label} mixes the channel axis with other axes (e.g. the merge ending a channel shuffle): the new channel order is not modeled"
