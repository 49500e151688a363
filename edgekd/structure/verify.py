"""The guard against silently wrong surgery: does the pruned network compute what the masked one did?

Input: the masked network (γ = 0 on dead channels, :func:`~edgekd.structure.prune.masked_copy`), the
physically pruned one, a batch of real inputs and — so that layers whose width changed can be compared —
the :class:`~edgekd.structure.groups.ChannelGraph` and the masks pruning used. Output: nothing, or a
one-line :class:`~edgekd.errors.PruningError` naming the **first module, in execution order**, whose
output differs beyond tolerance, and by how much.

How the first module is found (:func:`first_divergence`): forward hooks record every module call's output
in both networks (innermost first — a child finishes before its container), matched by module path and
call number. A module whose width did not change is compared directly; one whose width changed is compared
on its kept channels: a conv / linear op's kept outputs and a BatchNorm's kept channels come from the graph
and masks, and any other module (activation, pooling, a container) inherits the kept channels of its input
tensor when it keeps that tensor's width. A conv / linear op that has no bias in either network is compared
up to a constant per channel: pruning folds the constant contribution of removed inputs into the op's bias
or, when it has none, into the running mean of the BatchNorm after it, and that BatchNorm is then compared
exactly. The network's output is always compared.
A module whose outputs cannot be matched is skipped, never guessed. Every module output of both networks
is held at once: a few dozen images are enough (the CIFAR tests use 32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.errors import PruningError
from edgekd.structure.groups import ChannelGraph, first_failure

__all__ = ["Divergence", "kept_channels", "record_outputs", "first_divergence", "verify_pruning",
           "first_failure"]

OUTPUT = "(output)"


@dataclass(frozen=True)
class Divergence:
    """The first module call whose pruned output differs from the masked one."""

    module: str  # module path, or "(output)" for the network's output
    kind: str  # the module's class name
    call: int  # 1 for the first call of a module used several times
    max_abs: float  # max |pruned − masked| over the compared channels
    tolerance: float
    channels: int  # how many channels were compared

    def describe(self) -> str:
        call = f" (call {self.call})" if self.call > 1 else ""
        return (f"{self.module} ({self.kind}){call}: max |Δ| {self.max_abs:.3g} > {self.tolerance:.3g} "
                f"over {self.channels} kept channels")


def kept_channels(graph: ChannelGraph, masks: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Module path → boolean mask of its output channels that pruning kept, for every conv / linear op and
    every BatchNorm of a channel group (channels no group covers are kept)."""
    kept: dict[str, torch.Tensor] = {}
    for op in graph.ops:
        keep = torch.ones(op.out_channels, dtype=torch.bool)
        for segment in op.out_segments:
            keep[segment.module_idx] = masks[segment.group][segment.group_idx]
        kept[op.name] = keep
    for group, mask in zip(graph.groups, masks, strict=True):
        for member in group.bns:
            keep = kept.setdefault(member.name, torch.ones(member.module.num_features, dtype=torch.bool))
            keep[member.module_idx] = mask[member.group_idx]
    return kept


@dataclass
class _Call:
    name: str
    kind: str
    call: int
    input_id: int | None
    output_id: int
    output: torch.Tensor
    shiftable: bool  # a conv / linear op without bias: its folded constant may sit in the next BatchNorm


def record_outputs(model: nn.Module, batch: torch.Tensor) -> list[_Call]:
    """Every module call's (first tensor) output, in the order the calls finish, then the network's output
    (named :data:`OUTPUT`). Runs ``model`` in eval mode without gradients."""
    calls: list[_Call] = []
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module, inputs, output):
            out = output[0] if isinstance(output, tuple | list) and output else output
            if not isinstance(out, torch.Tensor):
                return
            counts[name] = counts.get(name, 0) + 1
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            calls.append(_Call(name or OUTPUT, type(module).__name__, counts[name],
                               id(first) if first is not None else None, id(out), out,
                               isinstance(module, nn.Conv2d | nn.Linear) and module.bias is None))
        return record

    param = next(model.parameters(), None)
    if param is not None:
        batch = batch.to(param.device)
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            model.eval()(batch)
    finally:
        for handle in handles:
            handle.remove()
    return calls


# Relative to each module's output: float32 roundoff through a fold of large constants into a heavily pruned
# network reached 1.3e-4 of the output (a tune round at 0.38x dense, stop 35); a wrong surgery is O(1).
ATOL = 1e-3


def first_divergence(masked: nn.Module, pruned: nn.Module, batch: torch.Tensor,
                     graph: ChannelGraph | None = None, masks: Sequence[torch.Tensor] | None = None,
                     atol: float = ATOL) -> Divergence | None:
    """The first module call (execution order of the masked network) whose pruned output differs by more
    than ``atol`` × max(1, |masked output|), or None. Without ``graph`` and ``masks`` only modules whose width
    did not change (and the network's output) are compared."""
    kept = kept_channels(graph, masks) if graph is not None and masks is not None else {}
    reference = record_outputs(masked, batch)
    candidate = {(c.name, c.call): c for c in record_outputs(pruned, batch)}
    by_tensor: dict[int, torch.Tensor | None] = {}  # id of a masked output → its kept channels (None: all)
    for ref in reference:
        other = candidate.get((ref.name, ref.call))
        keep = _keep_of(ref, kept, by_tensor)
        by_tensor[ref.output_id] = keep  # the recorded calls keep every output alive: ids stay unique
        if other is None:
            continue
        a, b = ref.output, other.output.to(ref.output.device)
        if keep is not None and a.dim() >= 2 and a.shape[1] == keep.numel() and b.shape[1] == int(keep.sum()):
            a = a[:, keep.to(a.device)]
        if a.shape != b.shape:
            continue  # cannot be matched: skipped, never guessed
        diff = (b.float() - a.float())
        if ref.shiftable and other.shiftable and diff.dim() >= 2:  # the fold went into the next BatchNorm
            dims = [0, *range(2, diff.dim())]
            diff = diff - diff.mean(dims, keepdim=True)
        error = float(diff.abs().max()) if diff.numel() else 0.0
        tolerance = atol * max(1.0, float(a.abs().max()) if a.numel() else 0.0)
        if error > tolerance or error != error:
            return Divergence(ref.name, ref.kind, ref.call, error, tolerance, int(a.shape[1]) if a.dim() > 1 else 1)
    return None


def _keep_of(ref: _Call, kept: dict[str, torch.Tensor], by_tensor: dict[int, torch.Tensor | None]):
    if ref.name in kept and ref.output.dim() >= 2 and ref.output.shape[1] == kept[ref.name].numel():
        return kept[ref.name]
    inherited = by_tensor.get(ref.input_id) if ref.input_id is not None else None
    if inherited is not None and ref.output.dim() >= 2 and ref.output.shape[1] == inherited.numel():
        return inherited  # an activation, pooling or container that keeps its input's channels
    return None


def verify_pruning(masked: nn.Module, pruned: nn.Module, batch: torch.Tensor, atol: float = ATOL,
                   graph: ChannelGraph | None = None, masks: Sequence[torch.Tensor] | None = None) -> None:
    """Refuse (:class:`~edgekd.errors.PruningError`, exit code 2) a pruned network that does not compute
    what the masked one did on ``batch`` (real images), naming the first module whose output differs.
    Pass the ``graph`` and ``masks`` pruning used so that narrowed layers are compared too."""
    try:
        divergence = first_divergence(masked, pruned, batch, graph, masks, atol)
    except Exception as exc:  # noqa: BLE001 - a pruned forward that crashes is a refusal, not a traceback
        raise PruningError(f"the pruned network does not run on the masked network's input"
                           f"{first_failure(pruned, batch)}: {type(exc).__name__}: {exc}") from exc
    if divergence is not None:
        raise PruningError(f"the pruned network differs from the masked one on {batch.shape[0]} real inputs; "
                           f"first at {divergence.describe()}: the surgery is wrong there")
