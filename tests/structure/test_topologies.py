"""One tiny network per awkward topology (residual add, depthwise and grouped convs, concatenation, a
residual across a concatenation, a squeeze-excite gate, chunk, a per-channel parameter, a channel shuffle):
traced, 40 % of each prunable group's channels killed, pruned — and the pruned network computes what the
masked one did on real CIFAR-10 images (≤ 1e-4), with fewer channels. Groups that must stay whole say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.structure.groups import trace_groups
from edgekd.structure.prune import final_masks, masked_copy, prune_model
from edgekd.structure.verify import first_divergence, verify_pruning
from edgekd.testing.models import kill_channels
from edgekd.testing.topologies import TOPOLOGIES, build

# topology → substrings of the reasons its fixed groups give (the classifier's input group: no γ, always)
FIXED = {
    "residual": [],
    "depthwise": [],
    "grouped": ["grouped conv grouped.0", "grouped conv grouped.0"],  # its input and its output
    "concat": [],
    "residual_concat": [],
    "squeeze_excite": ["no BatchNorm"],  # the squeeze (se.reduce) writes no BatchNorm
    "split": ["split/chunk", "split/chunk"],  # the chunked stem and the half concatenated with the branch
    "channel_scale": [],
    # the chunked stem, and the branch whose channels the shuffle's view interleaves with the other half
    "channel_shuffle": ["split/chunk", "unit (ShuffleUnit) reshapes the channel dimension (ViewBackward0"],
}


@pytest.fixture(scope="module")
def images(shared_data):
    with np.load(shared_data / "cifar10-mini.npz") as data:
        x = torch.from_numpy(data["test_images"][:64]).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25


def _widths(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def test_every_topology_has_a_tiny_model():
    assert set(FIXED) == set(TOPOLOGIES)


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_pruned_equals_masked_on_real_images(name, images):
    model = build(name)
    graph = trace_groups(model)
    head = graph.groups[graph.op("head").in_segments[0].group]
    fixed = sorted(g.fixed for g in graph.groups if not g.prunable and g is not graph.groups[
        graph.op("head").out_segments[0].group])
    assert head.prunable and not head.fixed  # the pooled features are prunable
    assert len(fixed) == len(FIXED[name]) and all(any(f in reason for reason in fixed) for f in FIXED[name]), fixed
    assert all(g.fixed == "" for g in graph.groups if g.prunable)

    kill_channels(graph, 0.4)
    masks = final_masks(graph, 1e-2)
    result = prune_model(model, graph, masks)
    masked = masked_copy(model, graph, masks)
    with torch.no_grad():
        reference, pruned = masked(images), result.model(images)
    assert (reference[:32] - reference[32:]).abs().max() > 1e-2  # non-vacuous: the output follows the input
    scale = max(1.0, float(reference.abs().max()))
    assert float((reference - pruned).abs().max()) <= 1e-4 * scale
    assert _widths(result.model) < _widths(model)  # physically fewer channels
    assert sum(p.numel() for p in result.model.parameters()) < sum(p.numel() for p in model.parameters())
    verify_pruning(masked, result.model, images, graph=graph, masks=masks)  # the guard agrees, layer by layer
    assert first_divergence(masked, result.model, images) is None  # and without the masks (same-width layers)


def test_squeeze_excite_gate_is_pruned_with_its_group(images):
    """The gate's channels go with the gated group: the excitation conv loses rows, the squeeze loses
    inputs, and dead channels are masked with β = 0 so that x·g does not depend on the gate."""
    model = build("squeeze_excite")
    graph = trace_groups(model)
    gated = [g for g in graph.groups if g.gated]
    assert len(gated) == 1 and gated[0].prunable and "se.expand" in gated[0].producers
    kill_channels(graph, 0.4)
    masks = final_masks(graph, 1e-2)
    result = prune_model(model, graph, masks)
    kept = int(masks[gated[0].id].sum())
    assert kept < 32
    assert result.model.se.expand.out_channels == result.model.se.reduce.in_channels == kept
    assert result.model.dw[0].out_channels == result.model.project[0].in_channels == kept
    masked = masked_copy(model, graph, masks)
    dead = ~masks[gated[0].id]
    assert bool((masked.dw[1].bias[dead] == 0).all()) and bool((masked.dw[1].weight[dead] == 0).all())
    assert bool((model.dw[1].bias[dead] != 0).any())  # the original is untouched


def test_residual_across_a_concatenation_prunes_each_slice_with_its_branch():
    model = build("residual_concat")
    graph = trace_groups(model)
    stem = graph.op("stem.0")
    # x + cat(left, right): the stem's channels 0-5 go with left's, 6-15 with right's
    by_group = {graph.groups[s.group].producers[-1]: s.module_idx.tolist() for s in stem.out_segments}
    assert by_group == {"left.0": list(range(6)), "right.0": list(range(6, 16))}
