"""In-place edits of a channel group's BatchNorm γ's — the only place structure learning writes weights.

* :func:`soft_threshold` — the proximal step: γ ← sign γ·max(|γ| − shrink_c, 0) on every member of group
  channel c;
* :func:`hold` — keep groups at their masks: dead channels γ = 0 on every member, alive channels with
  r = max member |γ| of at least ``floor``;
* :func:`keep_one_alive` — no group left without a channel at r ≥ ``floor``;
* :func:`raise_channel` — lift every member |γ| of one group channel to at least a value (keeping signs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from edgekd.structure.groups import ChannelGroup, saliencies_on_host

__all__ = ["soft_threshold", "hold", "keep_one_alive", "raise_channel"]


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
def hold(held: Sequence[tuple[ChannelGroup, torch.Tensor]], floor: float) -> None:
    """Each group at its mask: γ = 0 on the channels the mask marks dead (and β = 0 in a gated group, as the masked
    network has it); alive channels with r below ``floor`` raised to it. The groups' r are read back once for all."""
    for group, mask in held:
        for member in group.bns:
            weight = member.module.weight
            dead = ~mask[member.group_idx]
            weight[member.module_idx[dead].to(weight.device)] = 0.0
            if group.gated and member.module.bias is not None:
                member.module.bias[member.module_idx[dead].to(weight.device)] = 0.0
    for (group, mask), r in zip(held, saliencies_on_host([g for g, _ in held]), strict=True):
        for channel in torch.nonzero(mask & (r < floor)).flatten().tolist():
            raise_channel(group, channel, floor)


@torch.no_grad()
def keep_one_alive(groups: Sequence[ChannelGroup], floor: float) -> None:
    """Each group's strongest channel raised to r ≥ ``floor`` when the group would otherwise have none above it
    (the groups' r read back once for all)."""
    for group, r in zip(groups, saliencies_on_host(groups), strict=True):
        strongest = int(torch.argmax(r))
        if float(r[strongest]) < floor:
            raise_channel(group, strongest, floor)


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
