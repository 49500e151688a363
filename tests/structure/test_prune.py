"""Pruning: the physically smaller network computes what the masked one did (exactly for MobileNetV2,
up to a reported border deviation for zero-padded 3×3 readers), and it reloads without the recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.models import create_model
from edgekd.models.io import ModelArch, load_model, save_model
from edgekd.structure.groups import trace_groups
from edgekd.structure.prune import final_masks, masked_copy, prune_model, save_arch_spec
from tests.structure.conftest import kill_channels, randomise_bn


def _setup(name, **kwargs):
    model = randomise_bn(create_model(name, **kwargs))
    graph = trace_groups(model)
    kill_channels(graph, 0.4)
    masks = final_masks(graph, 1e-2)
    return model, graph, masks


def _real_images(shared_data, count=400):
    with np.load(shared_data / "cifar10-mini.npz") as data:
        images = data["test_images"][:count]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25


def test_mobilenetv2_pruned_equals_masked(shared_data):
    model, graph, masks = _setup("mobilenetv2_cifar", width_mult=0.5)
    result = prune_model(model, graph, masks)
    masked = masked_copy(model, graph, masks)
    images = _real_images(shared_data, 64)  # i.i.d. noise would pool to nearly the same features
    x1, x2 = images[:32], images[32:]
    with torch.no_grad():
        a1, b1, a2 = masked(x1), result.model(x1), masked(x2)
    assert (a1 - a2).abs().max() > 1e-2  # non-vacuous: the output depends on the input
    assert (a1 - b1).abs().max() < 1e-4
    assert sum(p.numel() for p in result.model.parameters()) < 0.8 * sum(p.numel() for p in model.parameters())
    assert result.deviation["max_abs"] < 1e-4


@pytest.mark.parametrize("name", ["resnet56_cifar", "vgg16_bn_cifar"])
def test_padded_readers_deviate_only_at_borders(name, shared_data):
    model, graph, masks = _setup(name)
    result = prune_model(model, graph, masks)
    masked = masked_copy(model, graph, masks)
    images = _real_images(shared_data)
    with torch.no_grad():
        a, b = masked(images), result.model(images)
    assert (a[:200] - a[200:]).abs().max() > 1e-2
    deviation = (a - b).abs().max().item()
    assert result.deviation["max_abs"] > 0  # the border deviation is measured and reported
    print(f"{name}: max |masked - pruned| = {deviation:.3g} (output scale {a.abs().max():.3g})")
    # |acc(masked) - acc(pruned)| <= fraction of images where their top-1 differs
    disagreement = (a.argmax(1) != b.argmax(1)).float().mean().item()
    print(f"{name}: top-1 disagreement {disagreement:.4f}")
    assert disagreement <= 0.005


def test_round_to_and_at_least_one_channel():
    model = randomise_bn(create_model("resnet20_cifar"))
    graph = trace_groups(model)
    kill_channels(graph, 0.97)
    masks = final_masks(graph, 1e-2, round_to=8)
    for group, mask in zip(graph.groups, masks, strict=True):
        kept = int(mask.sum())
        assert kept >= 1
        if group.learnable:
            assert kept % 8 == 0 or kept == group.size


def test_pruned_model_reloads_without_the_recipe(tmp_path):
    model, graph, masks = _setup("mobilenetv2_cifar", width_mult=0.5)
    result = prune_model(model, graph, masks)
    save_model(tmp_path / "model.pt", result.model, ModelArch("mobilenetv2_cifar", {"width_mult": 0.5}))
    spec_path = save_arch_spec(tmp_path / "arch.json", result.spec)
    loaded = load_model(tmp_path).model
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-6)
    layer = result.spec["layers"]["features.8.conv.0.0"]
    dense = model.features[8].conv[0][0].out_channels
    assert layer["out"] == loaded.features[8].conv[0][0].out_channels < dense
    assert spec_path.read_text().startswith("{")
