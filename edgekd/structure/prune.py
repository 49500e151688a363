"""Physical pruning with bias folding, width rounding and an architecture spec.

Inputs: a trained network, its :class:`ChannelGraph`, per-group alive masks (|γ| > τ, one τ) and, when
blocks were assigned, their :class:`~edgekd.structure.ownership.BlockOwnership` (frozen groups stay whole;
the arch spec records each group's block).
Outputs: :class:`PruneResult` — a physically smaller ``nn.Module`` (no masks), the arch spec (per-layer
widths and the kept channel indices of every group, JSON) and the measured deviation from the masked
network (the same network with γ = 0 on dead channels).

A dead channel still emits a constant: its BatchNorm bias through the activation (and whatever follows:
pooling, residual adds). We measure that constant on the masked network and compute, per reading op, its
exact contribution: ``Σ_dead W[:, c]·v_c`` for a 1×1 conv or linear layer; for a zero-padded k×k conv a map
over output positions (the kernel overhangs the padding at the borders). The per-channel part (the map's
spatial mean) is folded into the op's bias — or, when a BatchNorm follows, into its running mean, so no new
bias parameter appears. The border remainder is kept exactly by swapping the conv for a
:class:`~edgekd.models.layers.BorderCorrectedConv2d` (``border_correction=True``, the default); without it
the pruned network differs at the borders and the measured ``deviation`` says by how much. Surgery is
Torch-Pruning's, rooted at a BatchNorm of each group.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from edgekd.atomic import atomic_write_json
from edgekd.errors import StructureError
from edgekd.models.io import set_submodule
from edgekd.models.layers import BorderCorrectedConv2d
from edgekd.structure.groups import ChannelGraph, OpInfo, first_failure
from edgekd.structure.ownership import BlockOwnership
from edgekd.structure.widths import WidthGrid

__all__ = ["PruneResult", "final_masks", "masked_copy", "prune_model", "arch_spec", "save_arch_spec",
           "fold_deltas", "Fold"]

SPEC_VERSION = 1


@dataclass
class PruneResult:
    model: nn.Module
    masks: list[torch.Tensor]
    spec: dict[str, Any]
    deviation: dict[str, float] = field(default_factory=dict)


def final_masks(graph: ChannelGraph, threshold: float, grid: WidthGrid | int = 1,
                ownership: BlockOwnership | None = None) -> list[torch.Tensor]:
    """Alive masks with widths rounded up to the ``grid`` (a :class:`WidthGrid`, or one multiple for every group;
    largest |γ| revived first) and at least one channel per group (a layer is never emptied). Groups
    ``ownership`` freezes stay whole; without it every prunable group counts."""
    ownership = ownership or BlockOwnership.free(graph)
    grid = WidthGrid.of(grid)
    masks = []
    for group, alive in zip(graph.groups, ownership.alive_masks(graph, threshold), strict=True):
        alive = alive.clone()
        if ownership.learnable(group):
            r = group.saliency().detach().cpu()
            want = grid.up(group.id, int(alive.sum()), group.size)
            order = torch.argsort(r, descending=True, stable=True)
            alive = torch.zeros_like(alive)
            alive[order[:want]] = True
        masks.append(alive)
    return masks


def masked_copy(model: nn.Module, graph: ChannelGraph, masks: list[torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` with γ = 0 on every BatchNorm channel of a dead group channel — and β = 0
    too in a gated group (read through ``x · g``, e.g. squeeze-excite), where only x = 0 makes the product
    independent of the input."""
    masked = copy.deepcopy(model)
    modules = dict(masked.named_modules())
    with torch.no_grad():
        for group, alive in zip(graph.groups, masks, strict=True):
            if bool(alive.all()):
                continue
            for member in group.bns:
                dead = ~alive[member.group_idx]
                modules[member.name].weight[member.module_idx[dead]] = 0.0
                if group.gated and modules[member.name].bias is not None:
                    modules[member.name].bias[member.module_idx[dead]] = 0.0
    return masked


def _dead_inputs(op: OpInfo, masks: list[torch.Tensor]) -> torch.Tensor:
    if op.kind in ("dwconv", "gconv"):
        return torch.zeros(0, dtype=torch.long)  # removed together with its outputs / never pruned
    dead = [s.module_idx[~masks[s.group][s.group_idx]] for s in op.in_segments]
    return torch.cat(dead) if dead else torch.zeros(0, dtype=torch.long)


def _record_inputs(model: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [modules[n].register_forward_pre_hook(
        lambda _m, inputs, n=n: seen.__setitem__(n, inputs[0].detach())) for n in names]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return seen


class _NotConstant(StructureError, ValueError):
    """A dead input channel that varies with the input (a StructureError, and a ValueError as before)."""


@dataclass
class Fold:
    """What the constant dead inputs of one reading op contributed to its output.

    ``delta`` (per output channel) goes into the op's bias or its BatchNorm's running mean. ``border``
    (``C_out × H × W``, or None where ``delta`` is exact) is the rest: at zero-padded borders a k×k kernel
    sees fewer constant taps than in the interior.
    """

    delta: torch.Tensor
    border: torch.Tensor | None = None


def fold_deltas(masked: nn.Module, graph: ChannelGraph, masks: list[torch.Tensor],
                example: torch.Tensor) -> dict[str, Fold]:
    """Per reading op, the output shift that the constant dead input channels contributed.

    Raises StructureError (a ValueError too) naming the reading op when a dead channel is not constant (a
    path the group analysis missed, e.g. an op that mixes channels)."""
    dead = {op.name: _dead_inputs(op, masks) for op in graph.ops}
    dead = {name: idx for name, idx in dead.items() if idx.numel()}
    inputs = _record_inputs(masked, list(dead), example)
    modules = dict(masked.named_modules())
    folds = {}
    for name, idx in dead.items():
        values = inputs[name][:, idx].float()
        flat = values.transpose(0, 1).reshape(idx.numel(), -1)
        spread = (flat.amax(1) - flat.amin(1)).abs().max()
        if float(spread) > 1e-5 * max(1.0, float(flat.abs().max())):
            raise _NotConstant(f"{name} ({type(modules[name]).__name__}): its removed input channels are not "
                               f"constant in the masked network (spread {float(spread):.2e}): something between "
                               f"their BatchNorm and this op mixes channels or gates them")
        constant = flat[:, 0]
        module = modules[name]
        weight = module.weight.detach()
        if isinstance(module, nn.Linear):
            folds[name] = Fold(weight[:, idx] @ constant)
        else:
            folds[name] = _conv_fold(module, weight[:, idx], constant, inputs[name].shape[-2:])
    return folds


def _conv_fold(conv: nn.Conv2d, weight: torch.Tensor, constant: torch.Tensor, size: torch.Size) -> Fold:
    """Constant input channels through a conv: the exact contribution map, split into a per-channel shift
    (its spatial mean, the least-squares choice when no border map is kept) and the border remainder."""
    plane = constant.view(1, -1, 1, 1).expand(1, -1, *size).to(weight.dtype)
    contribution = F.conv2d(plane, weight, None, conv.stride, conv.padding, conv.dilation)[0]
    delta = contribution.mean((1, 2))
    border = contribution - delta.view(-1, 1, 1)
    exact = float(border.abs().max()) <= 1e-6 * max(1.0, float(contribution.abs().max()))
    return Fold(delta, None if exact else border)


def _apply_delta(model: nn.Module, graph: ChannelGraph, name: str, delta: torch.Tensor) -> None:
    modules = dict(model.named_modules())
    module = modules[name]
    with torch.no_grad():
        if getattr(module, "bias", None) is not None:
            module.bias += delta
            return
        successor = _single_bn_successor(graph, graph.op(name).module)
        if successor is not None:
            modules[successor].running_mean -= delta
            return
        module.bias = nn.Parameter(delta.clone())


def _single_bn_successor(graph: ChannelGraph, module: nn.Module) -> str | None:
    dep = graph.dependency_graph
    names = {m: n for n, m in graph.model.named_modules()}
    node = dep.module2node.get(module)
    if node is None or len(node.outputs) != 1:
        return None
    follower = node.outputs[0].module
    if isinstance(follower, nn.BatchNorm2d | nn.BatchNorm1d) and follower.track_running_stats:
        return names.get(follower)
    return None


def prune_model(model: nn.Module, graph: ChannelGraph, masks: list[torch.Tensor],
                example: torch.Tensor | None = None, border_correction: bool = True,
                ownership: BlockOwnership | None = None) -> PruneResult:
    """Build the physically pruned network (the input model is left untouched).

    With ``border_correction`` (default) a conv whose removed inputs reached it through zero padding becomes
    a :class:`~edgekd.models.layers.BorderCorrectedConv2d`, and the pruned network equals the masked one
    at the input size of ``example`` / the graph. Without it only the per-channel spatial mean is folded and
    the border deviation is reported in ``deviation``. ``ownership`` only labels the spec's groups with
    their blocks.
    """
    device = next(model.parameters()).device
    if example is None:
        example = torch.randn((2, *graph.input_shape[1:]), device=device)
    masked = masked_copy(model, graph, masks).eval()
    folds = fold_deltas(masked, graph, masks, example)
    pruned = copy.deepcopy(masked)
    for name, fold in folds.items():
        _apply_delta(pruned, graph, name, fold.delta)
    dep = tp.DependencyGraph().build_dependency(pruned, example_inputs=example[:1], verbose=False)
    modules = dict(pruned.named_modules())
    for group, alive in zip(graph.groups, masks, strict=True):
        if bool(alive.all()) or not group.bns:
            continue
        member = group.bns[0]
        idxs = member.module_idx[~alive[member.group_idx]].tolist()
        try:
            tp_group = dep.get_pruning_group(modules[member.name], tp.prune_batchnorm_out_channels, idxs=idxs)
            tp_group.prune()
        except Exception as exc:  # noqa: BLE001 - Torch-Pruning's surgery failing is one line, not a traceback
            raise StructureError(f"pruning channel group {group.id} (BatchNorm {member.name}, producers "
                                 f"{', '.join(group.producers) or '-'}) failed in Torch-Pruning: "
                                 f"{type(exc).__name__}: {exc}") from exc
    if border_correction:
        _attach_borders(pruned, graph, masks, folds)
    pruned.eval()
    try:
        deviation = _deviation(masked, pruned, example)
    except Exception as exc:  # noqa: BLE001 - e.g. a forward that hard-codes a channel count
        raise StructureError(f"the pruned network no longer runs{first_failure(pruned, example)}: "
                             f"{type(exc).__name__}: {exc}") from exc
    return PruneResult(pruned, masks, arch_spec(pruned, graph, masks, ownership), deviation)


def _kept_outputs(op: OpInfo, masks: list[torch.Tensor]) -> torch.Tensor:
    keep = torch.ones(op.out_channels, dtype=torch.bool)
    for segment in op.out_segments:
        keep[segment.module_idx] = masks[segment.group][segment.group_idx]
    return keep


def _attach_borders(pruned: nn.Module, graph: ChannelGraph, masks: list[torch.Tensor],
                    folds: dict[str, Fold]) -> None:
    """Swap each conv with a border remainder for a border-corrected copy (rows of the kept outputs)."""
    for name, fold in folds.items():
        if fold.border is None:
            continue
        conv = pruned.get_submodule(name)
        offset = fold.border[_kept_outputs(graph.op(name), masks)]
        set_submodule(pruned, name, BorderCorrectedConv2d.from_conv(conv, offset))


def _deviation(masked: nn.Module, pruned: nn.Module, example: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        a, b = masked.eval()(example), pruned.eval()(example)
    diff = (a - b).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "output_scale": float(a.abs().max())}


def arch_spec(pruned: nn.Module, graph: ChannelGraph, masks: list[torch.Tensor],
              ownership: BlockOwnership | None = None) -> dict[str, Any]:
    """Per-layer widths of the pruned network and the kept channel indices (and block) of every group."""
    ownership = ownership or BlockOwnership.free(graph)
    layers = {}
    for name, module in pruned.named_modules():
        if isinstance(module, nn.Conv2d):
            layers[name] = {"type": "conv2d", "in": module.in_channels, "out": module.out_channels,
                            "groups": module.groups, "kernel": list(module.kernel_size),
                            "bias": module.bias is not None,
                            "border_offset": isinstance(module, BorderCorrectedConv2d)}
        elif isinstance(module, nn.Linear):
            layers[name] = {"type": "linear", "in": module.in_features, "out": module.out_features}
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            layers[name] = {"type": "batchnorm", "out": module.num_features}
    groups = [{"id": g.id, "block": ownership.block_of(g), "size": g.size, "kept": torch.nonzero(m).flatten().tolist(),
               "members": [b.name for b in g.bns], "producers": g.producers}
              for g, m in zip(graph.groups, masks, strict=True)]
    return {"version": SPEC_VERSION, "layers": layers, "groups": groups}


def save_arch_spec(path: str | Path, spec: dict[str, Any], channel_multiple: int | None = None,
                   group_steps: dict[str, int] | None = None) -> Path:
    """Write ``arch.json``; ``channel_multiple``: the grid the widths were pruned on (the target's, or round_to);
    ``group_steps``: per-group steps that replaced it (group name → step: a tuned latency model's coarse grid)."""
    extra = {} if channel_multiple is None else {"channel_multiple": channel_multiple}
    if group_steps:
        extra["group_steps"] = dict(group_steps)
    return atomic_write_json(path, {**spec, **extra})
