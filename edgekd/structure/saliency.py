"""First-order Taylor saliency of every channel group: what removing a channel would cost the loss.

A channel c of a BatchNorm is removed by zeroing its affine output, γ_c·x̂ + β_c; the first-order change of the loss
is then −(γ_c·∂L/∂γ_c + β_c·∂L/∂β_c). Its square, summed over batches, is the channel's saliency (Molchanov et al.
2019, "Importance Estimation for Neural Network Pruning"; HALP ranks channels by it per unit of latency). A group's
channel is written by every BatchNorm of the group (a residual stream: each block's projection), so its saliency
is the sum over them — the counterpart of a latency slope that sums over every op reading or writing the group.

Input: the network (its weights as they are: the dense teacher's), its :class:`~edgekd.structure.groups.ChannelGraph`
and labelled batches; output: one tensor per group (zeros for groups that are not prunable).
:meth:`~edgekd.structure.controller.BudgetController.fit_masks` ranks channels by it instead of |γ|.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.structure.groups import ChannelGraph

__all__ = ["taylor_saliency"]


def taylor_saliency(model: nn.Module, graph: ChannelGraph, batches: Iterable, count: int) -> list[torch.Tensor]:
    """Σ over ``count`` batches of (γ·∂L/∂γ + β·∂L/∂β)², L the cross-entropy of ``model`` in eval mode (the
    network as deployed, its BatchNorm statistics fixed), summed over each group's BatchNorms."""
    bns = {id(m.module): m.module for g in graph.groups if g.prunable for m in g.bns}
    scores = {key: torch.zeros(bn.num_features) for key, bn in bns.items()}
    was_training = model.training
    model.eval()
    seen = 0
    for images, labels in batches:
        if seen == count:
            break
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        with torch.no_grad():
            for key, bn in bns.items():
                scores[key] += (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).pow(2).cpu()
        seen += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if seen == 0:
        raise ValueError("taylor_saliency: no batches")
    saliency = []
    for group in graph.groups:
        total = torch.zeros(group.size)
        if group.prunable:
            for member in group.bns:
                total.index_add_(0, member.group_idx.long().cpu(), scores[id(member.module)][member.module_idx.cpu()])
        saliency.append(total)
    return saliency
