"""Helpers for structure tests: randomised BatchNorm statistics (so outputs depend on the input) and
killing a fraction of each group's channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def randomise_bn(model: nn.Module, seed: int = 0, shape=(3, 32, 32)) -> nn.Module:
    """Random γ, β; running statistics measured on random inputs (so activations neither vanish nor
    saturate, and the eval-mode output depends on the input)."""
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
        for _ in range(3):
            model(torch.randn((16, *shape), generator=generator))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return model.eval()


def kill_channels(graph, fraction: float = 0.4, seed: int = 0) -> None:
    """Set |γ| = 1e-4 (below τ = 1e-2) on a random ``fraction`` of every prunable group's channels."""
    generator = torch.Generator().manual_seed(seed)
    for group in graph.groups:
        group.frozen = False
        if not group.prunable:
            continue
        dead = torch.rand(group.size, generator=generator) < fraction
        with torch.no_grad():
            for member in group.bns:
                member.module.weight[member.module_idx[dead[member.group_idx]]] = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
