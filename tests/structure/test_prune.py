"""Pruning: the physically smaller network computes what the masked one did (exactly for MobileNetV2,
up to a reported border deviation for zero-padded 3×3 readers), and it reloads without the recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgekd.models import create_model
from edgekd.models.io import ModelArch, load_model, save_model
from edgekd.models.layers import BorderCorrectedConv2d
from edgekd.structure.groups import trace_groups
from edgekd.structure.prune import final_masks, masked_copy, prune_model, save_arch_spec
from edgekd.testing.models import kill_channels, randomise_bn


def _setup(name, **kwargs):
    model = randomise_bn(create_model(name, **kwargs))
    graph = trace_groups(model)
    kill_channels(graph, 0.4)
    masks = final_masks(graph, 1e-2)
    return model, graph, masks


def _real_images(shared_data, count=400):
    return _labelled(shared_data, "test", count)[0]


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


def _labelled(shared_data, split: str, count: int):
    with np.load(shared_data / "cifar10-mini.npz") as data:
        images, labels = data[f"{split}_images"][:count], data[f"{split}_labels"][:count]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25, torch.from_numpy(labels).long()


def _fit_head(model, masked, images, labels):
    """Train the linear head (on the masked network's features) so accuracy is far above chance and the
    logits have real margins: a random head makes top-1 comparisons meaningless."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    head = model.get_submodule(name)
    features = []
    hook = masked.get_submodule(name).register_forward_pre_hook(
        lambda _m, inputs: features.append(inputs[0]))
    with torch.no_grad():
        for chunk in images.split(500):
            masked(chunk)
    hook.remove()
    f = torch.cat(features)
    mean, std = f.mean(0), f.std(0).clamp_min(0.05)  # dead features are constant: no huge weights on them
    weight = torch.zeros(10, f.shape[1], requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(((f - mean) / std) @ weight.T + bias, labels) + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        head.weight.copy_(weight / std)
        head.bias.copy_(bias - (weight / std) @ mean)


def _accuracy(model, images, labels):
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(500)])
    return logits, (logits.argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("name", ["resnet56_cifar", "vgg16_bn_cifar"])
def test_padded_readers_border_correction(name, shared_data):
    """Dead channels feed zero-padded 3×3 convs: with border correction the pruned network equals the
    masked one; without it the border deviation is measured and reported (and it is large on VGG's 2×2 maps,
    which have no interior)."""
    torch.manual_seed(0)
    model, graph, masks = _setup(name)
    train_x, train_y = _labelled(shared_data, "train", 2000)
    test_x, test_y = _labelled(shared_data, "test", 1000)
    _fit_head(model, masked_copy(model, graph, masks), train_x, train_y)
    masked = masked_copy(model, graph, masks)
    reference, masked_acc = _accuracy(masked, test_x, test_y)
    assert masked_acc > 0.2  # non-vacuous: far above chance (0.1), so flips would cost accuracy
    assert (reference[:500] - reference[500:]).abs().max() > 1e-2

    exact = prune_model(model, graph, masks)
    assert any(isinstance(m, BorderCorrectedConv2d) for m in exact.model.modules())
    logits, pruned_acc = _accuracy(exact.model, test_x, test_y)
    scale = reference.abs().max().item()
    assert (logits - reference).abs().max().item() <= 1e-4 * max(1.0, scale)
    assert exact.deviation["max_abs"] <= 1e-4 * max(1.0, exact.deviation["output_scale"])
    assert abs(pruned_acc - masked_acc) <= 0.005

    approximate = prune_model(model, graph, masks, border_correction=False)
    assert not any(isinstance(m, BorderCorrectedConv2d) for m in approximate.model.modules())
    assert approximate.deviation["max_abs"] > 1e-3  # the border deviation is measured and reported
    _, approximate_acc = _accuracy(approximate.model, test_x, test_y)
    print(f"{name}: masked acc {masked_acc:.3f}; border-corrected {pruned_acc:.3f}; mean-folded "
          f"{approximate_acc:.3f} (max |Δlogit| {approximate.deviation['max_abs']:.3g})")


def test_border_corrected_model_saves_and_reloads(tmp_path):
    torch.manual_seed(0)
    model, graph, masks = _setup("resnet20_cifar")
    result = prune_model(model, graph, masks)
    corrected = [n for n, m in result.model.named_modules() if isinstance(m, BorderCorrectedConv2d)]
    assert corrected and all(result.spec["layers"][n]["border_offset"] for n in corrected)
    save_model(tmp_path / "model.pt", result.model, ModelArch("resnet20_cifar"))
    loaded = load_model(tmp_path).model
    assert [n for n, m in loaded.named_modules() if isinstance(m, BorderCorrectedConv2d)] == corrected
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-6)
    with pytest.raises(ValueError, match="input size it was pruned for"):
        loaded(torch.randn(1, 3, 64, 64))


def test_round_to_and_at_least_one_channel():
    model = randomise_bn(create_model("resnet20_cifar"))
    graph = trace_groups(model)
    kill_channels(graph, 0.97)
    masks = final_masks(graph, 1e-2, grid=8)
    for group, mask in zip(graph.groups, masks, strict=True):
        kept = int(mask.sum())
        assert kept >= 1
        if group.prunable:
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
