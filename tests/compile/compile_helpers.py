"""Helpers for the compile tests: small networks whose outputs depend on their inputs, raw tensor files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0, input_shape: tuple[int, ...] = (8, 3, 32, 32)) -> nn.Module:
    """Random BatchNorm affine parameters, and running statistics calibrated on random inputs.

    A freshly initialised deep CNN's activations vanish (its output ignores its input); calibrating the
    running statistics normalises every layer so the signal reaches the classifier.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                count = module.num_features
                module.weight.copy_(torch.rand(count, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(count, generator=generator) * 0.2)
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(2):
            model(torch.randn(input_shape, generator=generator))
    return model.eval()


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
    torch.manual_seed(seed)
    return randomize_batchnorm(SmallNet(), seed)


def read_float32(path: Path, shape: list[int]) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(shape)
