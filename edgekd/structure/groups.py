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
group (a channel with no γ can never be shown dead) and no grouped (non-depthwise) conv, split/chunk or
layer type we do not model touches it; otherwise :attr:`ChannelGroup.fixed` says why it stays whole.
A channel gate (``x · g``, e.g. squeeze-excite) makes a group *gated*: the op writing ``g`` needs no
BatchNorm, and a dead channel of a gated group is masked with γ = β = 0 (``x = 0``, so ``x · g = 0`` whatever
the gate says; see :func:`~edgekd.structure.prune.masked_copy`).

Layers the dependency graph cannot see through — a custom ``torch.autograd.Function``, or a bare
``nn.Parameter`` with more than one channel-sized dimension (Torch-Pruning would cut only one of them) —
are refused with a one-line :class:`~edgekd.errors.StructureError` naming the module path and the op.

The graph is what the model *is*; it knows nothing of recipes. Which block owns a group, and which groups
a block configuration freezes, is a separate mapping (:mod:`edgekd.structure.ownership`) that never
modifies the graph, so one graph can serve several block configurations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode

from edgekd.errors import StructureError

__all__ = ["Segment", "BNMember", "ChannelGroup", "OpInfo", "ChannelGraph", "trace_groups", "dense_masks",
           "saliencies_on_host", "alive_on_host", "first_failure"]


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
    fixed: str = ""  # why the group is not prunable ("" when it is)
    gated: bool = False  # read through a channel gate x·g: dead channels are masked with γ = β = 0

    def saliency(self) -> torch.Tensor:
        """r_c = max over member BatchNorms of |γ_c| (differentiable; zeros when not prunable)."""
        if not self.prunable:
            return torch.zeros(self.size)
        values = [_scatter_max(m.module.weight.abs()[m.module_idx], m.group_idx, self.size) for m in self.bns]
        return torch.stack(values).amax(0) if len(values) > 1 else values[0]


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
        return alive_on_host(self.groups, [g.prunable for g in self.groups], threshold)


def saliencies_on_host(groups: Sequence[ChannelGroup]) -> list[torch.Tensor]:
    """Each (prunable) group's r, detached, on the CPU — read back in one transfer: the structure controller reads
    every group after every step, and a read per group stalls a GPU's step once per group."""
    if not groups:
        return []
    with torch.no_grad():
        values = [g.saliency().detach() for g in groups]
        flat = torch.cat([v.to(values[0].device) for v in values]).cpu()
    return list(flat.split([v.numel() for v in values]))


def alive_on_host(groups: Sequence[ChannelGroup], counted: Sequence[bool], threshold: float) -> list[torch.Tensor]:
    """Per group r > τ on the CPU where ``counted``, all True elsewhere (one transfer for every group)."""
    read = [g for g, c in zip(groups, counted, strict=True) if c]
    r = dict(zip((g.id for g in read), saliencies_on_host(read), strict=True))
    return [r[g.id] > threshold if g.id in r else torch.ones(g.size, dtype=torch.bool) for g in groups]


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
        dep = tp.DependencyGraph()
        with _Owners(model) as owners:
            try:
                with torch.enable_grad(), _ReshapeShapes() as reshapes:
                    dep.build_dependency(model, example_inputs=example, verbose=False)
            except Exception as exc:  # noqa: BLE001 - whatever the tracer trips on becomes one line
                where = _index_mapping_failure(dep, owners) or first_failure(model, example)
                raise StructureError(f"cannot trace the channel graph of {type(model).__name__}{where}: "
                                     f"{type(exc).__name__}: {exc}") from exc
            _refuse_opaque_layers(model, dep, owners)
        _repair_splits(dep)
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
        group = _build_group(len(groups), tp_group, dep, names, ops)
        _fix_channel_reshapes(group, tp_group, reshapes.shapes, owners)
        groups.append(group)
    for group in groups:
        group.producers.sort(key=order.__getitem__)
        if group.prunable and not group.bns:
            _fix(group, "no BatchNorm γ to learn from")
        elif group.prunable and (unnormed := _producer_without_bn(group, dep, names, ops)):
            _fix(group, f"{unnormed} writes it without a BatchNorm γ")
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


def _fix(group: ChannelGroup, reason: str) -> None:
    """Keep ``group`` whole; the first reason found is the one reported."""
    group.prunable = False
    group.fixed = group.fixed or reason


def _is_gate(node) -> bool:
    """A product (or quotient) of two traced tensors: ``x · g`` with g computed from the network."""
    grad_fn = getattr(node, "grad_fn", None)
    name = grad_fn.name() if hasattr(grad_fn, "name") else ""
    computed = [n for n in node.inputs if n.type != tp.ops.OPTYPE.PARAMETER]  # x · learned scale is no gate
    return node.type == tp.ops.OPTYPE.ELEMENTWISE and name.startswith(("MulBackward", "DivBackward")) \
        and len(computed) >= 2


class _ReshapeShapes(TorchFunctionMode):
    """Records input and output shape of every view / reshape / flatten by the autograd node it creates."""

    NAMES = frozenset({"view", "reshape", "flatten", "unflatten"})

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in self.NAMES and args and isinstance(args[0], torch.Tensor) \
                and isinstance(out, torch.Tensor) and out.grad_fn is not None:
            self.shapes[out.grad_fn] = (tuple(args[0].shape), tuple(out.shape))
        return out


def _fix_channel_reshapes(group: ChannelGroup, tp_group, shapes: dict, owners: _Owners) -> None:
    """Keep a group whole when its channels go through a reshape that splits or merges the channel
    dimension (a channel shuffle's view): Torch-Pruning's index map for it does not follow the channels."""
    for item in tp_group:
        node = item.dep.target
        if node.type != tp.ops.OPTYPE.RESHAPE or node.grad_fn not in shapes:
            continue
        before, after = shapes[node.grad_fn]
        kept = len(before) < 2 or len(after) < 2 or before[:2] == after[:2]
        flatten = len(after) == 2 and after[0] == before[0] and math.prod(before[1:]) == after[1]
        if not (kept or flatten):
            _fix(group, f"{owners.owner(node.grad_fn)} reshapes the channel dimension ({node.grad_fn.name()} "
                        f"{list(before)} → {list(after)}, e.g. a channel shuffle)")
            return


def _build_group(gid: int, tp_group, dep: tp.DependencyGraph, names: dict, ops: dict[str, OpInfo]) -> ChannelGroup:
    size = len(tp_group[0].root_idxs)
    group = ChannelGroup(gid, size)
    for item in tp_group:
        node = item.dep.target
        module = node.module
        name = names.get(module) if isinstance(module, nn.Module) else None
        if name is None:  # functional nodes (add, relu, flatten, concat) and per-channel parameters: no weights
            if node.type in (tp.ops.OPTYPE.SPLIT, tp.ops.OPTYPE.UNBIND):
                # the forward code holds the split sizes, so pruning would change where it cuts (and
                # Torch-Pruning 1.6 maps chunk() outputs in trace order, not output order)
                _fix(group, "split/chunk/unbind: the forward code fixes the sizes it cuts at")
            elif _is_gate(node):
                group.gated = True
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
                _fix(group, f"grouped conv {name} (groups={op.groups})")
            if out_fn:
                op.out_segments.append(segment)
                group.producers.append(name)
                if op.kind == "dwconv":  # a depthwise conv's input channels are its output channels
                    op.in_segments.append(segment)
                    group.consumers.append(name)
            elif op.kind != "dwconv":  # its input slice was recorded with its output above
                op.in_segments.append(segment)
                group.consumers.append(name)
        else:  # a layer type we do not model (LayerNorm, PReLU...): keep it whole
            _fix(group, f"{name} ({type(module).__name__}) is a layer type edgekd does not prune")
    return group


def _producer_without_bn(group: ChannelGroup, dep: tp.DependencyGraph, names: dict,
                         ops: dict[str, OpInfo]) -> str | None:
    """The first producer whose only successor is not a BatchNorm member of this group (γ = 0 must make
    every written channel constant), or None. In a gated group an op that only feeds the gate side of
    ``x · g`` is exempt: with x = 0 the product is 0 whatever it writes."""
    members = {m.name for m in group.bns}
    for producer in group.producers:
        node = dep.module2node[ops[producer].module]
        successors = [names.get(n.module) if isinstance(n.module, nn.Module) else None for n in node.outputs]
        if len(successors) == 1 and successors[0] in members:
            continue
        if group.gated and _only_gates(node):
            continue
        return producer
    return None


def _only_gates(node) -> bool:
    """Every path from ``node`` goes through one-input element-wise ops (σ, hard-σ) into a gate product."""
    stack, seen = list(node.outputs), set()
    while stack:
        nxt = stack.pop()
        if id(nxt) in seen:
            continue
        seen.add(id(nxt))
        if _is_gate(nxt):
            continue
        if nxt.type != tp.ops.OPTYPE.ELEMENTWISE or len(nxt.inputs) != 1 or not nxt.outputs:
            return False
        stack.extend(nxt.outputs)
    return True


def _repair_splits(dep: tp.DependencyGraph) -> None:
    """Torch-Pruning 1.6 infers a channel split's sizes from what its consumers read and pairs the split's
    outputs with its consumers in trace order; with ``chunk`` on torch 2.x both come out wrong (the consumer
    of the first half is given the second). Take the sizes from the autograd node, order the consumers by the
    output each one reads (its ``next_functions`` entry), and redo the index maps. A split along another
    dimension, or with a consumer reading several of its outputs, is left as Torch-Pruning built it."""
    from torch_pruning.dependency import index_mapping

    repaired = False
    for node in list(dep.module2node.values()):
        fn = node.grad_fn
        if node.type != tp.ops.OPTYPE.SPLIT or getattr(fn, "_saved_dim", None) != 1:
            continue
        if hasattr(fn, "_saved_split_sizes"):
            sizes = [int(s) for s in fn._saved_split_sizes]
        elif hasattr(fn, "_saved_split_size") and hasattr(fn, "_saved_self_sym_sizes"):
            total, step = int(fn._saved_self_sym_sizes[1]), int(fn._saved_split_size)
            sizes = [min(step, total - start) for start in range(0, total, step)]
        else:
            continue
        reads = [[k for f, k in getattr(out.grad_fn, "next_functions", ()) if f is fn] for out in node.outputs]
        if any(len(r) != 1 for r in reads) or sorted(r[0] for r in reads) != list(range(len(sizes))):
            continue
        node.outputs[:] = [out for _, out in sorted(zip((r[0] for r in reads), node.outputs, strict=True),
                                                    key=lambda pair: pair[0])]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        node.module.split_sizes, node.module.offsets = sizes, offsets
        repaired = True
    if repaired:
        for node in dep.module2node.values():
            if node.type == tp.ops.OPTYPE.CONCAT:
                node.module.concat_sizes = None  # inferred from the wrong split sizes: infer again
        index_mapping.update_index_mapping(dep)


def _refuse_opaque_layers(model: nn.Module, dep: tp.DependencyGraph, owners: _Owners) -> None:
    """Raise StructureError for what the dependency graph would silently get wrong."""
    opaque = [node.grad_fn for node in dep.module2node.values()
              if isinstance(node.grad_fn, torch.autograd.function.BackwardCFunction)]
    if opaque:
        op = type(opaque[0]).__name__.removesuffix("Backward")
        raise StructureError(f"{owners.owner(opaque[0])}: custom autograd op {op}: Torch-Pruning's dependency "
                             f"graph cannot see which channels it reads and writes; write it with torch ops "
                             f"or freeze the block")
    param_names = {p: n for n, p in model.named_parameters()}
    for param, _dim in dep.unwrapped_parameters:
        if sum(1 for s in param.shape if s > 1) > 1:
            path = param_names.get(param, "?")
            owner, _, attr = path.rpartition(".")
            kind = type(model.get_submodule(owner)).__name__ if owner else type(model).__name__
            raise StructureError(f"{owner or '(model)'} ({kind}): parameter {attr!r} of shape {tuple(param.shape)} "
                                 f"is not inside a layer Torch-Pruning knows, and it would prune only one of its "
                                 f"dimensions; use a Conv2d/Linear, or a per-channel parameter")


def _index_mapping_failure(dep: tp.DependencyGraph, owners: _Owners) -> str:
    """' at <path> (<type>), op <autograd op>' for the node whose channel index map Torch-Pruning could
    not build (a channel shuffle's view/transpose, say), or ''."""
    from torch_pruning.dependency import index_mapping

    updates = {tp.ops.OPTYPE.CONCAT: index_mapping.update_concat_index_mapping,
               tp.ops.OPTYPE.SPLIT: index_mapping.update_split_index_mapping,
               tp.ops.OPTYPE.RESHAPE: index_mapping.update_reshape_index_mapping,
               tp.ops.OPTYPE.UNBIND: index_mapping.update_unbind_index_mapping,
               tp.ops.OPTYPE.EXPAND: index_mapping.update_expand_index_mapping,
               tp.ops.OPTYPE.SLICE: index_mapping.update_slice_index_mapping}
    for node in list(getattr(dep, "module2node", {}).values()):
        update = updates.get(node.type)
        if update is None:
            continue
        try:
            update(dep, node)
        except Exception:  # noqa: BLE001 - this is the node it failed on
            fn = node.grad_fn
            op = fn.name() if hasattr(fn, "name") else type(fn).__name__
            return f" at {owners.owner(fn)}, op {op}"
    return ""


class _Owners:
    """While active, remembers each module call's input and output autograd nodes, so that any node of the
    traced graph can be attributed to the innermost module whose forward created it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.calls: list[tuple[str, str, set, list]] = []  # finished calls, innermost first
        self._inputs: dict[int, list[set]] = {}
        self._handles: list = []

    def __enter__(self) -> _Owners:
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    @staticmethod
    def _fns(values) -> list:
        values = values if isinstance(values, tuple | list) else (values,)
        return [v.grad_fn for v in values if isinstance(v, torch.Tensor) and v.grad_fn is not None]

    def _pre(self, module, inputs) -> None:
        self._inputs.setdefault(id(module), []).append(set(self._fns(inputs)))

    def _post(self, name: str):
        def record(module, inputs, output) -> None:
            stack = self._inputs.get(id(module)) or [set()]
            self.calls.append((name, type(module).__name__, stack.pop(), self._fns(output)))
        return record

    def owner(self, target) -> str:
        """'<path> (<type>)' of the innermost module call that created autograd node ``target``."""
        for name, kind, stop, outputs in self.calls:
            stack, seen = list(outputs), set()
            while stack:
                fn = stack.pop()
                if fn is None or fn in stop or id(fn) in seen:
                    continue
                if fn is target:
                    return f"{name or '(model)'} ({kind})"
                seen.add(id(fn))
                stack.extend(f for f, _ in getattr(fn, "next_functions", ()))
        return f"(model) ({type(self.model).__name__})"


def first_failure(model: nn.Module, batch: torch.Tensor) -> str:
    """' at <path> (<type>)' for the innermost module whose forward raises on ``batch``, or ''."""
    entered: list[str] = []
    finished: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        label = f"{name} ({type(module).__name__})"
        handles.append(module.register_forward_pre_hook(lambda _m, _i, label=label: entered.append(label)))
        handles.append(module.register_forward_hook(lambda _m, _i, _o, label=label: finished.add(label)))
    try:
        with torch.no_grad():
            model.eval()(batch)
    except Exception:  # noqa: BLE001 - the last module entered and not finished raised
        open_ = [label for label in entered if label not in finished]
        return f" at {open_[-1]}" if open_ else ""
    finally:
        for handle in handles:
            handle.remove()
    return ""


def _scatter_max(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    if index.numel() == size and torch.equal(index, torch.arange(size)):
        return values
    out = values.new_zeros(size)
    return out.scatter_reduce(0, index.to(values.device), values, reduce="amax", include_self=True)
