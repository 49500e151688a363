"""BatchNorm folding before export: what is folded, what is left alone, and that the output does not change."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.compile.build import fold_batch_norms
from edgekd.models import create_model
from edgekd.testing.models import randomise_bn


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_every_batch_norm_of_mobilenetv2_folds_and_the_output_stays():
    torch.manual_seed(0)
    model = randomise_bn(create_model("mobilenetv2_cifar", width_mult=0.25)).eval()
    example = torch.randn(2, 3, 32, 32)
    folded = fold_batch_norms(model, example)
    assert _batch_norms(model) > 0 and _batch_norms(folded) == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(example), model(example), rtol=1e-4, atol=1e-5)
    assert _batch_norms(model) == _batch_norms(create_model("mobilenetv2_cifar", width_mult=0.25))  # a copy


class _Shared(nn.Module):
    """The convolution's output feeds the BatchNorm and the sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _Untraceable(nn.Module):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


def test_a_batch_norm_whose_input_is_shared_is_kept():
    model = randomise_bn(_Shared()).eval()
    example = torch.randn(1, 3, 8, 8)
    folded = fold_batch_norms(model, example)
    assert _batch_norms(folded) == 1
    with torch.no_grad():
        torch.testing.assert_close(folded(example), model(example))


def test_an_untraceable_network_is_returned_as_it_is():
    model = randomise_bn(_Untraceable()).eval()
    assert fold_batch_norms(model, torch.randn(1, 3, 8, 8)) is model
