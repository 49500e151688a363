"""In-place edits of a channel group's BatchNorm γ's — the only place structure learning writes weights.

* :func:`soft_threshold` — the proximal step: γ ← sign γ·max(|γ| − shrink_c, 0) on every member of group
  channel c;
* :func:`hold` — keep a group at a mask: dead channels γ = 0 on every member, alive channels with
  r = max member |γ| of at least ``floor``;
* :func:`raise_channel` — lift the largest member |γ| of one group channel to a value (keeping its sign).
"""

from __future__ import annotations

import torch

from edgekd.structure.groups import ChannelGroup

__all__ = ["soft_threshold", "hold", "raise_channel"]


@torch.no_grad()
def soft_threshold(group: ChannelGroup, shrink: torch.Tensor) -> None:
    """Shrink every member |γ| of group channel c by ``shrink[c]`` (≥ 0), stopping at 0."""
    for member in group.bns:
        weight = member.module.weight
        idx = member.module_idx.to(weight.device)
        values = weight[idx]
        amount = shrink[member.group_idx.to(shrink.device)].to(values.device)
        weight[idx] = values.sign() * (values.abs() - amount).clamp_min(0)


@torch.no_grad()
def hold(group: ChannelGroup, mask: torch.Tensor, floor: float) -> None:
    """γ = 0 on the channels ``mask`` marks dead (and β = 0 in a gated group, as the masked network has it);
    alive channels with r below ``floor`` are raised to it."""
    for member in group.bns:
        weight = member.module.weight
        dead = ~mask[member.group_idx]
        weight[member.module_idx[dead].to(weight.device)] = 0.0
        if group.gated and member.module.bias is not None:
            member.module.bias[member.module_idx[dead].to(weight.device)] = 0.0
    r = group.saliency().detach().cpu()
    weak = torch.nonzero(mask & (r < floor)).flatten()
    for channel in weak.tolist():
        raise_channel(group, channel, floor)


@torch.no_grad()
def raise_channel(group: ChannelGroup, channel: int, value: float) -> None:
    """Set the largest member |γ| of group channel ``channel`` to ``value`` (keeping its sign)."""
    best, best_abs = None, -1.0
    for member in group.bns:
        hits = torch.nonzero(member.group_idx == channel).flatten()
        for hit in hits.tolist():
            index = int(member.module_idx[hit])
            magnitude = float(member.module.weight[index].abs())
            if magnitude > best_abs:
                best, best_abs = (member.module.weight, index), magnitude
    if best is not None:
        weight, index = best
        sign = 1.0 if float(weight[index]) >= 0 else -1.0
        weight[index] = sign * value
