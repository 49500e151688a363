"""The guard against wrong surgery names the first module whose output differs (planted faults), and
layers the dependency graph cannot handle are one-line errors naming the module path and the op."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.errors import EdgekdError, PruningError, StructureError
from edgekd.structure.groups import trace_groups
from edgekd.structure.prune import final_masks, masked_copy, prune_model
from edgekd.structure.verify import first_divergence, verify_pruning
from edgekd.testing.models import kill_channels
from edgekd.testing.topologies import build


@pytest.fixture(scope="module")
def images(shared_data):
    with np.load(shared_data / "cifar10-mini.npz") as data:
        x = torch.from_numpy(data["test_images"][:32]).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25


@pytest.fixture
def pruned_residual():
    model = build("residual")
    graph = trace_groups(model)
    kill_channels(graph, 0.4)
    masks = final_masks(graph, 1e-2)
    result = prune_model(model, graph, masks)
    return masked_copy(model, graph, masks), result.model, graph, masks


def _refusal(masked, pruned, images, graph, masks) -> str:
    with pytest.raises(PruningError) as info:
        verify_pruning(masked, pruned, images, graph=graph, masks=masks)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    return message


def test_correct_surgery_passes(pruned_residual, images):
    masked, pruned, graph, masks = pruned_residual
    verify_pruning(masked, pruned, images, graph=graph, masks=masks)
    assert pruned.conv1[0].out_channels < masked.conv1[0].out_channels  # compared on narrowed layers


@pytest.mark.parametrize(("where", "expected"), [
    ("conv1.0", "conv1.0 (Conv2d)"),  # a narrowed conv inside the residual branch
    ("conv2.0", "conv2.0 (Conv2d)"),  # a conv writing the residual group
    ("out.0", "out.0 (Conv2d)"),  # after the add
])
def test_a_corrupted_conv_is_named(pruned_residual, images, where, expected):
    masked, pruned, graph, masks = pruned_residual
    with torch.no_grad():
        pruned.get_submodule(where).weight[0, 0] += 0.5
    assert first_divergence(masked, pruned, images, graph, masks).module == where
    message = _refusal(masked, pruned, images, graph, masks)
    assert f"first at {expected}" in message and "max |Δ|" in message, message


def test_wrongly_picked_channels_are_named(pruned_residual, images):
    """Surgery that keeps the right number of channels but the wrong ones: swap two kept output rows."""
    masked, pruned, graph, masks = pruned_residual
    with torch.no_grad():
        weight = pruned.conv1[0].weight
        weight[[0, 1]] = weight[[1, 0]].clone()
    assert "first at conv1.0 (Conv2d)" in _refusal(masked, pruned, images, graph, masks)


def test_a_wrong_constant_fold_is_named_at_the_batchnorm(pruned_residual, images):
    """A per-channel shift on a conv may legitimately sit in the next BatchNorm's running mean; a wrong
    one shows at that BatchNorm."""
    masked, pruned, graph, masks = pruned_residual
    with torch.no_grad():
        pruned.conv1[1].running_mean[0] += 1.0
    assert "first at conv1.1 (BatchNorm2d)" in _refusal(masked, pruned, images, graph, masks)


def test_without_masks_the_first_same_width_layer_is_named(pruned_residual, images):
    masked, pruned, _, _ = pruned_residual
    with torch.no_grad():
        pruned.head.bias[3] += 1.0
    found = first_divergence(masked, pruned, images)
    assert found is not None and found.module == "head" and found.max_abs == pytest.approx(1.0, rel=1e-3)


def test_a_pruned_network_that_no_longer_runs_is_refused_naming_the_layer(pruned_residual, images):
    masked, pruned, graph, masks = pruned_residual
    pruned.out[0] = nn.Conv2d(pruned.out[0].in_channels + 1, pruned.out[0].out_channels, 3, 2, 1, bias=False)
    message = _refusal(masked, pruned, images, graph, masks)
    assert "does not run" in message and "out.0 (Conv2d)" in message, message


@pytest.mark.parametrize(("name", "fragments"), [
    ("custom_op", ["flip (ChannelFlip)", "custom autograd op _ChannelFlip"]),
    ("channel_mix", ["mixer (ChannelMix)", "'mix'", "(16, 16)"]),
])
def test_layers_the_graph_cannot_handle_are_named(name, fragments):
    with pytest.raises(StructureError) as info:
        trace_groups(build(name))
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, EdgekdError) and info.value.exit_code == 2
    for fragment in fragments:
        assert fragment in message, message


def test_an_index_map_torch_pruning_cannot_build_is_named_with_its_op():
    """torchvision's ShuffleNetV2: Torch-Pruning 1.6 fails on a channel shuffle's view (ZeroDivisionError)."""
    torchvision = pytest.importorskip("torchvision")
    with pytest.raises(StructureError) as info:
        trace_groups(torchvision.models.shufflenet_v2_x0_5(num_classes=10), (1, 3, 64, 64))
    message = str(info.value)
    assert "\n" not in message
    assert "ShuffleNetV2 at stage4.1 (InvertedResidual), op ViewBackward0: ZeroDivisionError" in message, message


class _Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


class _BrokenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.bad = _Broken()

    def forward(self, x):
        return self.bad(self.stem(x))


def test_a_model_that_cannot_be_traced_is_one_line_naming_the_layer():
    with pytest.raises(StructureError, match=r"at bad \(_Broken\): RuntimeError: boom") as info:
        trace_groups(_BrokenNet())
    assert "\n" not in str(info.value)


class _SigmoidGate(nn.Module):
    """A squeeze-excite gate on a sigmoid-activated tensor: a dead channel is σ(0) = ½, not 0, so x·g still
    follows the input and cannot be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Sigmoid())
        self.excite = nn.Conv2d(8, 8, 1)
        self.out = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x * torch.sigmoid(self.excite(x.mean((2, 3), keepdim=True)))
        return self.head(self.out(x).mean((2, 3)))


def test_a_dead_channel_that_is_not_constant_is_named_at_its_reader():
    from edgekd.testing.models import randomise_bn

    torch.manual_seed(0)
    model = randomise_bn(_SigmoidGate())
    graph = trace_groups(model)
    kill_channels(graph, 0.5)
    with pytest.raises(StructureError, match=r"out\.0 \(Conv2d\): its removed input channels are not constant"):
        prune_model(model, graph, final_masks(graph, 1e-2))
