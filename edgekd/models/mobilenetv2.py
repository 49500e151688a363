"""MobileNetV2 for 32×32 inputs (Sandler et al., 2018, arXiv:1801.04381), CIFAR variant.

As in the usual CIFAR adaptation, the stem and the second stage keep stride 1 so that a 32×32 image
ends at 4×4 before pooling. ``width_mult`` scales every layer (rounded to multiples of 8, as in the
paper), which is also the "uniform width" baseline for structure learning.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileNetV2Cifar", "InvertedResidual"]

# (expansion t, output channels c, repeats n, first stride s) — the paper's table 2 with CIFAR strides.
CIFAR_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` without dropping more than 10% (paper's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise (3×3) → project (1×1, linear); residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu(in_ch, hidden, 1, 1))
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2Cifar(nn.Module):
    """CIFAR MobileNetV2: ``features`` (stem, 17 inverted residuals, 1×1 head conv) → pool → ``classifier``.

    The stages are ``features.1`` .. ``features.17`` grouped as in ``CIFAR_SETTINGS``; see
    :meth:`stage_modules` for the names that recipes use as blocks.
    """

    def __init__(self, num_classes: int = 10, width_mult: float = 1.0, dropout: float = 0.2,
                 divisor: int = 8) -> None:
        super().__init__()
        stem = make_divisible(32 * width_mult, divisor)
        last = make_divisible(1280 * max(1.0, width_mult), divisor)
        layers: list[nn.Module] = [conv_bn_relu(3, stem, 3, 1)]
        in_ch = stem
        for expansion, channels, repeats, stride in CIFAR_SETTINGS:
            out_ch = make_divisible(channels * width_mult, divisor)
            for index in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1, expansion))
                in_ch = out_ch
        layers.append(conv_bn_relu(in_ch, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        self.num_features = last
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @staticmethod
    def stage_modules() -> dict[str, list[str]]:
        """Module-name prefixes of each named stage (stem, stage1..stage7, head)."""
        stages: dict[str, list[str]] = {"stem": ["features.0"]}
        index = 1
        for number, (_, _, repeats, _) in enumerate(CIFAR_SETTINGS, start=1):
            stages[f"stage{number}"] = [f"features.{i}" for i in range(index, index + repeats)]
            index += repeats
        stages["head"] = [f"features.{index}", "classifier"]
        return stages


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
