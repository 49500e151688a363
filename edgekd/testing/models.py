"""Model helpers for tests and benchmark scripts: networks whose outputs depend on their inputs, and
channel groups with a known fraction of dead channels.

* :func:`randomise_bn` — random BatchNorm γ/β, running statistics calibrated on random inputs, and a
  linear head with a real logit spread: a freshly initialised deep CNN's activations vanish (its output
  ignores its input), and a CIFAR head starts near zero;
* :func:`small_net` — a four-layer conv net with calibrated BatchNorm (compiles and tunes in seconds);
* :func:`kill_channels` — |γ| = 1e-4 (below τ = 1e-2) on a random fraction of every prunable group's
  channels, as if structure learning had removed them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SmallNet", "randomise_bn", "small_net", "kill_channels"]


def randomise_bn(model: nn.Module, seed: int = 0, image_shape: Sequence[int] = (3, 32, 32),
                 batches: int = 3, batch_size: int = 16) -> nn.Module:
    """Random γ ~ U(0.5, 1.5), β ~ N(0, 0.1²); running statistics measured (cumulative average, then the
    default momentum again) on ``batches`` random batches of ``image_shape``; linear layers N(0, 1/fan_in).
    Deterministic in ``seed``; returns ``model`` in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = torch.randn(n, generator=generator) * 0.1
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
        elif isinstance(module, nn.Linear):  # CIFAR heads start near zero; give the logits a real spread
            nn.init.normal_(module.weight, 0.0, module.in_features ** -0.5, generator=generator)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn((batch_size, *image_shape), generator=generator))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return model.eval()


def kill_channels(graph, fraction: float = 0.4, seed: int = 0) -> None:
    """Set |γ| = 1e-4 (below τ = 1e-2) on a random ``fraction`` of every prunable group's channels of a
    :class:`~edgekd.structure.groups.ChannelGraph` (its model's BatchNorms, in place)."""
    generator = torch.Generator().manual_seed(seed)
    for group in graph.groups:
        if not group.prunable:
            continue
        dead = torch.rand(group.size, generator=generator) < fraction
        with torch.no_grad():
            for member in group.bns:
                member.module.weight[member.module_idx[dead[member.group_idx]]] = 1e-4


class SmallNet(nn.Module):
    """conv → BN → ReLU → conv(stride 2) → BN → ReLU → global pool → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def small_net(seed: int = 0) -> nn.Module:
    """:class:`SmallNet` with seeded weights and calibrated BatchNorm, in eval mode."""
    torch.manual_seed(seed)
    return randomise_bn(SmallNet(), seed)
