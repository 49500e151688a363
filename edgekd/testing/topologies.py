"""Tiny CNNs, one per awkward topology, in Torch-Pruning's test style (small ``nn.Module`` s with
BatchNorms, 3×32×32 inputs, a 10-way linear head). Used by the structure tests and by scripts that check
that pruning computes what the masked network did.

=========================  =======================================================================
:class:`ResidualNet`       a residual add (stem, two 3×3 convs, identity shortcut)
:class:`DepthwiseNet`      a depthwise 3×3 conv between pointwise convs
:class:`GroupedNet`        a grouped (4 groups, not depthwise) 3×3 conv
:class:`ConcatNet`         two branches of different widths concatenated
:class:`ResidualConcatNet` a residual add across a concatenation (x + cat(a, b))
:class:`SqueezeExciteNet`  an inverted residual with a squeeze-excite channel gate (x · σ(fc(pool x)))
:class:`SplitNet`          ``chunk`` into two halves, one convolved, concatenated back
:class:`ChannelScaleNet`   a bare per-channel ``nn.Parameter`` scale (layer scale) on a residual branch
:class:`ShuffleNet`        ShuffleNetV2's unit: ``chunk``, a branch, ``cat``, a channel shuffle (view/transpose)

Unsupported on purpose (tracing must name the layer, never a traceback):

* :class:`CustomOpNet` — a custom ``torch.autograd.Function`` (a channel reversal) the graph cannot see into;
* :class:`ChannelMixNet` — a bare ``nn.Parameter`` mixing channels (``einsum``) that Torch-Pruning cannot prune.

:func:`build` returns any of them seeded, with calibrated random BatchNorm statistics, in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.testing.models import randomise_bn

__all__ = ["TOPOLOGIES", "UNSUPPORTED", "build", "ResidualNet", "DepthwiseNet", "GroupedNet", "ConcatNet",
           "ResidualConcatNet", "SqueezeExciteNet", "SplitNet", "ChannelScaleNet", "CustomOpNet", "ChannelMixNet",
           "ShuffleNet"]


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Net(nn.Module):
    """A body then global pooling and a linear head."""

    width = 24

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.width, 10)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.body(x)), 1))


class ResidualNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.conv1 = _cbr(16, 12)
        self.conv2 = _cbr(12, 16, act=False)
        self.out = _cbr(16, 24, stride=2)

    def body(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.conv2(self.conv1(x)))
        return self.out(x)


class DepthwiseNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.dw = _cbr(16, 16, groups=16)
        self.pw = _cbr(16, 24, k=1)

    def body(self, x):
        return self.pw(self.dw(self.stem(x)))


class GroupedNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.grouped = _cbr(16, 16, groups=4)
        self.pw = _cbr(16, 24, k=1)

    def body(self, x):
        return self.pw(self.grouped(self.stem(x)))


class ConcatNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.left = _cbr(16, 8, k=1)
        self.right = _cbr(16, 12)
        self.fuse = _cbr(20, 24, k=1)

    def body(self, x):
        x = self.stem(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], 1))


class ResidualConcatNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.left = _cbr(16, 6, k=1, act=False)
        self.right = _cbr(16, 10, act=False)
        self.out = _cbr(16, 24, stride=2)

    def body(self, x):
        x = self.stem(x)
        x = torch.relu(x + torch.cat([self.left(x), self.right(x)], 1))
        return self.out(x)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(self.pool(x)))))


class SqueezeExciteNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.expand = _cbr(16, 32, k=1)
        self.dw = _cbr(32, 32, groups=32)
        self.se = SqueezeExcite(32, 8)
        self.project = _cbr(32, 16, k=1, act=False)
        self.out = _cbr(16, 24, stride=2)

    def body(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))
        return self.out(x)


class SplitNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.branch = _cbr(8, 8)
        self.fuse = _cbr(16, 24, k=1)

    def body(self, x):
        a, b = self.stem(x).chunk(2, dim=1)
        return self.fuse(torch.cat([self.branch(a), b], 1))


class ChannelScaleNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.conv = _cbr(16, 16, act=False)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 16).view(1, 16, 1, 1))
        self.out = _cbr(16, 24, stride=2)

    def body(self, x):
        x = self.stem(x)
        return self.out(x + self.scale * self.conv(x))


class _ChannelFlip(torch.autograd.Function):
    """Reverses the channel order: the dependency graph sees only an opaque backward node."""

    @staticmethod
    def forward(ctx, x):
        return x.flip(1)

    @staticmethod
    def backward(ctx, grad):
        return grad.flip(1)


class ChannelFlip(nn.Module):
    def forward(self, x):
        return _ChannelFlip.apply(x)


class CustomOpNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.flip = ChannelFlip()
        self.out = _cbr(16, 24, k=1)

    def body(self, x):
        return self.out(self.flip(self.stem(x)))


class ChannelMix(nn.Module):
    """A bare parameter mixing channels: ``y[:, d] = Σ_c x[:, c] · mix[c, d]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Parameter(torch.eye(channels) + 0.1 * torch.randn(channels, channels))

    def forward(self, x):
        return torch.einsum("bchw,cd->bdhw", x, self.mix)


class ChannelMixNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.mixer = ChannelMix(16)
        self.out = _cbr(16, 24, k=1)

    def body(self, x):
        return self.out(self.mixer(self.stem(x)))


class ShuffleUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = _cbr(channels // 2, channels // 2, k=1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 16)
        self.unit = ShuffleUnit(16)
        self.out = _cbr(16, 24, k=1)

    def body(self, x):
        return self.out(self.unit(self.stem(x)))


TOPOLOGIES: dict[str, type[nn.Module]] = {
    "residual": ResidualNet, "depthwise": DepthwiseNet, "grouped": GroupedNet, "concat": ConcatNet,
    "residual_concat": ResidualConcatNet, "squeeze_excite": SqueezeExciteNet, "split": SplitNet,
    "channel_scale": ChannelScaleNet, "channel_shuffle": ShuffleNet,
}
UNSUPPORTED: dict[str, type[nn.Module]] = {"custom_op": CustomOpNet, "channel_mix": ChannelMixNet}


def build(name: str, seed: int = 0) -> nn.Module:
    """The tiny model ``name`` (a key of :data:`TOPOLOGIES` or :data:`UNSUPPORTED`), seeded weights and
    calibrated random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomise_bn({**TOPOLOGIES, **UNSUPPORTED}[name](), seed)
