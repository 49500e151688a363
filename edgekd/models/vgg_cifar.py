"""VGG-16 with BatchNorm for CIFAR (Simonyan & Zisserman, 2015; the CIFAR variant used in the
network-slimming and Torch-Pruning literature): 13 conv-BN-ReLU layers, 5 max-pools, one linear head.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VGGCifar"]

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGGCifar(nn.Module):
    def __init__(self, num_classes: int = 10, config: tuple = VGG16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(in_ch, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
            in_ch = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)
        self.num_features = in_ch
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def stage_modules(self) -> dict[str, list[str]]:
        stages: dict[str, list[str]] = {}
        stage, names = 1, []
        for index, module in enumerate(self.features):
            names.append(f"features.{index}")
            if isinstance(module, nn.MaxPool2d):
                stages[f"stage{stage}"], stage, names = names, stage + 1, []
        stages["head"] = ["classifier"]
        return stages
