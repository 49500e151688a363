"""Helpers for the compile tests: small networks whose outputs depend on their inputs, raw tensor files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.testing.models import randomise_bn


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
    return randomise_bn(SmallNet(), seed)


def read_float32(path: Path, shape: list[int]) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(shape)
