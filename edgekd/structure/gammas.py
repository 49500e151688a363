"""In-place edits of a channel group's BatchNorm γ's — the only place structure learning writes weights.

* :func:`soft_threshold` — the proximal step: γ ← sign γ·max(|γ| − shrink_c, 0) on every member of group
  channel c;
* :func:`hold` — keep a group at a mask: dead channels γ = 0 on every member, alive channels with
  r = max member |γ| of at least ``floor``;
* :func:`raise_channel` — lift every member |γ| of one group channel to at least a value (keeping signs).
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
    """Lift every member |γ| of group channel ``channel`` that is below ``value`` to it (keeping its sign; a zero
    γ becomes +value): a channel kept alive carries signal through each BatchNorm it passes, not only through
    its largest one (an expand BN left at γ ≈ 0 behind a living depthwise BN feeds the rest a constant)."""
    for member in group.bns:
        hits = member.module_idx[member.group_idx == channel].to(member.module.weight.device)
        if hits.numel() == 0:
            continue
        weight = member.module.weight
        values = weight[hits]
        sign = torch.where(values < 0, -1.0, 1.0).to(values.dtype)
        weight[hits] = torch.where(values.abs() < value, sign * value, values)
