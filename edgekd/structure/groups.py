"""Channel groups of any CNN, traced with Torch-Pruning's dependency graph (DepGraph).

Input: an ``nn.Module`` and an example input shape. Output: a :class:`ChannelGraph` holding

* :class:`ChannelGroup` s — channels that must be removed together (the outputs joined by a residual
  add, a depthwise conv's input and output, a concatenation's slices, the classifier input). Each group
  knows its BatchNorm γ's (``bns``), the ops that write it (``producers``) and read it (``consumers``);
  its regularisation vector is r = max over member |γ| and its alive mask is r > τ (= OR over members).
* :class:`OpInfo` s — every conv / linear op with its kernel, spatial sizes and the group slices of its
  input and output channels (``in_segments`` / ``out_segments``); channels no group covers (the network
  input, the classifier output) are fixed.

A group is *prunable* only when every op that writes it is directly followed by a BatchNorm of the same
group (a channel with no γ can never be shown dead) and no grouped (non-depthwise) conv touches it.

The graph is what the model *is*; it knows nothing of recipes. Which block owns a group, and which groups
a block configuration freezes, is a separate mapping (:mod:`edgekd.structure.ownership`) that never
modifies the graph, so one graph can serve several block configurations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

__all__ = ["Segment", "BNMember", "ChannelGroup", "OpInfo", "ChannelGraph", "trace_groups", "dense_masks"]


@dataclass
class Segment:
    """Channels ``module_idx`` of an op map to channels ``group_idx`` of group ``group``."""

    group: int
    module_idx: torch.Tensor
    group_idx: torch.Tensor


@dataclass
class BNMember:
    name: str
    module: nn.BatchNorm2d | nn.BatchNorm1d
    module_idx: torch.Tensor
    group_idx: torch.Tensor


@dataclass
class ChannelGroup:
    id: int
    size: int
    bns: list[BNMember] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)  # ops writing the group, module order
    consumers: list[str] = field(default_factory=list)  # ops reading it (depthwise convs are both)
    prunable: bool = True

    def saliency(self) -> torch.Tensor:
        """r_c = max over member BatchNorms of |γ_c| (differentiable; zeros when not prunable)."""
        if not self.prunable:
            return torch.zeros(self.size)
        values = [_scatter_max(m.module.weight.abs()[m.module_idx], m.group_idx, self.size) for m in self.bns]
        return torch.stack(values).amax(0) if len(values) > 1 else values[0]

    def alive(self, threshold: float) -> torch.Tensor:
        """Boolean mask: r_c > τ, i.e. any member's |γ| exceeds τ; all True when not prunable."""
        if not self.prunable:
            return torch.ones(self.size, dtype=torch.bool)
        with torch.no_grad():
            return self.saliency().detach().cpu() > threshold


@dataclass
class OpInfo:
    """One conv / linear op: geometry and the group slices of its input and output channels."""

    name: str
    module: nn.Module
    kind: str  # "conv", "dwconv", "gconv" (grouped, never pruned) or "linear"
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    groups: int = 1
    in_hw: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)
    in_segments: list[Segment] = field(default_factory=list)
    out_segments: list[Segment] = field(default_factory=list)
    order: int = 0


@dataclass
class ChannelGraph:
    model: nn.Module
    groups: list[ChannelGroup]
    ops: list[OpInfo]
    input_shape: tuple[int, ...]
    dependency_graph: tp.DependencyGraph

    def op(self, name: str) -> OpInfo:
        return next(o for o in self.ops if o.name == name)

    def group_of(self, module_name: str, out: bool = True) -> list[ChannelGroup]:
        op = self.op(module_name)
        return [self.groups[s.group] for s in (op.out_segments if out else op.in_segments)]

    def saliencies(self) -> list[torch.Tensor]:
        """Per group r (zeros for groups that are not prunable); frozen blocks: see BlockOwnership.saliencies."""
        return [g.saliency() for g in self.groups]

    def alive_masks(self, threshold: float) -> list[torch.Tensor]:
        """Per group r > τ (all True when not prunable); frozen blocks: see BlockOwnership.alive_masks."""
        return [g.alive(threshold) for g in self.groups]


def dense_masks(graph: ChannelGraph) -> list[torch.Tensor]:
    """Every channel of every group alive: the dense network."""
    return [torch.ones(g.size, dtype=torch.bool) for g in graph.groups]


def trace_groups(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> ChannelGraph:
    """Trace ``model`` (on the CPU, batch 1) into channel groups and ops. The model is not modified."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.randn((1, *tuple(input_shape)[1:]), device=device)
    was_training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    try:
        for param in frozen:  # Torch-Pruning silently skips layers whose weights need no grad
            param.requires_grad_(True)
        dep = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
        hw = _spatial_sizes(model, example)
    finally:
        model.train(was_training)
        for param in frozen:
            param.requires_grad_(False)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    ops = {names[m]: _op_info(names[m], m, hw, order[names[m]]) for m in model.modules()
           if isinstance(m, nn.Conv2d | nn.Linear) and names[m] in hw}
    groups: list[ChannelGroup] = []
    for tp_group in dep.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)):
        groups.append(_build_group(len(groups), tp_group, dep, names, ops))
    for group in groups:
        group.producers.sort(key=order.__getitem__)
        group.prunable = group.prunable and bool(group.bns) and _bn_follows_every_producer(group, dep, names, ops)
    return ChannelGraph(model, groups, sorted(ops.values(), key=lambda o: o.order), tuple(input_shape), dep)


def _spatial_sizes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    sizes: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}

    def hook(name: str):
        def record(_m, inputs, output):
            sizes[name] = (_hw(inputs[0]), _hw(output))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def _hw(tensor: torch.Tensor) -> tuple[int, int]:
    return (int(tensor.shape[-2]), int(tensor.shape[-1])) if tensor.dim() == 4 else (1, 1)


def _op_info(name: str, module: nn.Module, hw: dict, order: int) -> OpInfo:
    in_hw, out_hw = hw[name]
    if isinstance(module, nn.Linear):
        return OpInfo(name, module, "linear", module.in_features, module.out_features, order=order)
    depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
    kind = "dwconv" if depthwise else ("gconv" if module.groups > 1 else "conv")
    return OpInfo(name, module, kind, module.in_channels, module.out_channels, tuple(module.kernel_size),
                  module.groups, in_hw, out_hw, order=order)


def _build_group(gid: int, tp_group, dep: tp.DependencyGraph, names: dict, ops: dict[str, OpInfo]) -> ChannelGroup:
    size = len(tp_group[0].root_idxs)
    group = ChannelGroup(gid, size)
    for item in tp_group:
        module = item.dep.target.module
        name = names.get(module)
        if name is None:  # functional nodes (add, relu, flatten, concat): no weights
            continue
        module_idx = torch.as_tensor([int(i) for i in item.idxs], dtype=torch.long)
        group_idx = torch.as_tensor([int(i) for i in item.root_idxs], dtype=torch.long)
        out_fn = dep.is_out_channel_pruning_fn(item.dep.handler)
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            group.bns.append(BNMember(name, module, module_idx, group_idx))
        elif name in ops:
            op = ops[name]
            segment = Segment(gid, module_idx, group_idx)
            if op.kind == "gconv":
                group.prunable = False
            if out_fn:
                op.out_segments.append(segment)
                group.producers.append(name)
                if op.kind == "dwconv":  # a depthwise conv's input channels are its output channels
                    op.in_segments.append(segment)
                    group.consumers.append(name)
            elif op.kind != "dwconv":  # its input slice was recorded with its output above
                op.in_segments.append(segment)
                group.consumers.append(name)
        else:
            group.prunable = False  # a layer type we do not model (LayerNorm, PReLU...): keep it whole
    return group


def _bn_follows_every_producer(group: ChannelGroup, dep: tp.DependencyGraph, names: dict,
                               ops: dict[str, OpInfo]) -> bool:
    """Every producer's only successor is a BatchNorm member of this group (so γ = 0 ⇒ constant)."""
    members = {m.name for m in group.bns}
    for producer in group.producers:
        node = dep.module2node[ops[producer].module]
        successors = [names.get(n.module) for n in node.outputs]
        if len(successors) != 1 or successors[0] not in members:
            return False
    return True


def _scatter_max(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    if index.numel() == size and torch.equal(index, torch.arange(size)):
        return values
    out = values.new_zeros(size)
    return out.scatter_reduce(0, index.to(values.device), values, reduce="amax", include_self=True)

