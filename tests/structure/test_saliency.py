"""Taylor saliency (edgekd/structure/saliency.py) and the controller fitting masks by it: a removed channel is
worth nothing, a residual stream's channel sums over every BatchNorm writing it, and the fit keeps the salient
channels within the budget whatever their |γ|."""

from __future__ import annotations

import pytest
import torch

from edgekd.config.recipe import GlobalBudget, StructureConfig
from edgekd.models import create_model
from edgekd.structure.controller import BudgetController
from edgekd.structure.costs import FlopCost, ParamCost, network_cost
from edgekd.structure.groups import trace_groups
from edgekd.structure.saliency import taylor_saliency
from edgekd.testing.models import randomise_bn

BASIC = {"flops": FlopCost(), "params": ParamCost()}


def _batches(count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 32, 32, generator=generator), torch.randint(0, 10, (8,), generator=generator))
            for _ in range(count)]


@pytest.fixture(scope="module")
def network():
    model = randomise_bn(create_model("mobilenetv2_cifar", width_mult=0.25), seed=0)
    return model, trace_groups(model)


def test_a_channel_already_removed_has_no_saliency_and_a_stream_sums_its_writers(network):
    model, graph = network
    stream = max((g for g in graph.groups if g.prunable), key=lambda g: len(g.bns))  # a residual stream
    assert len(stream.bns) > 1
    member = stream.bns[0]
    channel = int(member.group_idx[0])
    saved = [(m.module.weight.detach().clone(), m.module.bias.detach().clone()) for m in stream.bns]
    with torch.no_grad():  # channel removed everywhere it is written: γ = β = 0
        for m in stream.bns:
            hit = m.group_idx == channel
            m.module.weight[m.module_idx[hit]] = 0.0
            m.module.bias[m.module_idx[hit]] = 0.0
    try:
        scores = taylor_saliency(model, graph, _batches(3), count=2)
    finally:
        with torch.no_grad():
            for m, (weight, bias) in zip(stream.bns, saved, strict=True):
                m.module.weight.copy_(weight)
                m.module.bias.copy_(bias)
    assert [s.shape[0] for s in scores] == [g.size for g in graph.groups]
    assert scores[stream.id][channel] == 0 and scores[stream.id].sum() > 0
    assert all(s.sum() == 0 for s, g in zip(scores, graph.groups, strict=True) if not g.prunable)
    assert not model.training and all(p.grad is None for p in model.parameters())  # left as it was

    # one batch by hand: the stream's score is the sum over its writers of (γ·∂L/∂γ + β·∂L/∂β)²
    [(images, labels)] = _batches(1, seed=1)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    expected = torch.zeros(stream.size)
    for m in stream.bns:
        bn = m.module
        term = (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).detach().pow(2)
        expected.index_add_(0, m.group_idx.long(), term[m.module_idx])
    model.zero_grad(set_to_none=True)
    got = taylor_saliency(model, graph, [(images, labels)], count=1)[stream.id]
    assert torch.allclose(got, expected, rtol=1e-5, atol=0) and got.sum() > 0


def test_fit_masks_keeps_the_salient_channels_whatever_their_gamma(network):
    model, graph = network
    structure = StructureConfig(global_budget=GlobalBudget(flops=0.5), default="free")
    controller = BudgetController(graph, structure, BASIC)
    whole = [torch.ones(g.size, dtype=torch.bool) for g in graph.groups]
    dense = network_cost(graph, FlopCost(), whole)
    # saliency the reverse of |γ| in every group: |γ|'s fit and saliency's fit keep opposite channels
    gammas = [g.saliency().detach() for g in graph.groups]
    reverse = [(-r).argsort().argsort().float() if g.prunable else torch.zeros(g.size)
               for r, g in zip(gammas, graph.groups, strict=True)]
    by_gamma = controller.fit_masks(whole, 1)
    by_saliency = controller.fit_masks(whole, 1, saliency=reverse)
    for masks in (by_gamma, by_saliency):
        assert network_cost(graph, FlopCost(), masks) <= 0.5 * dense * (1 + 1e-9)
    kept_by_saliency = [float(reverse[g.id][by_saliency[g.id]].sum()) for g in graph.groups if g.prunable]
    kept_by_gamma = [float(reverse[g.id][by_gamma[g.id]].sum()) for g in graph.groups if g.prunable]
    assert sum(kept_by_saliency) > sum(kept_by_gamma)
    # within a group that lost channels, the kept ones are the most salient
    for g in graph.groups:
        kept = by_saliency[g.id]
        if g.prunable and 0 < int(kept.sum()) < g.size:
            assert reverse[g.id][kept].min() >= reverse[g.id][~kept].max()
