"""MorphNet costs: dense and pruned FLOPs / weights equal torch's counts; regularizer gradients match the
formulas; the roofline prior shares the interface."""

from __future__ import annotations

import pytest
import torch

from edgekd.models import create_model
from edgekd.models.counting import count_model, torch_flop_count
from edgekd.structure.costs import FlopCost, ParamCost, Roofline, RooflineCost, network_cost, op_terms
from edgekd.structure.groups import dense_masks, trace_groups
from edgekd.structure.prune import final_masks, prune_model
from edgekd.testing.models import kill_channels, randomise_bn
from tests.structure.test_groups import ConcatNet

MODELS = [("mobilenetv2_cifar", {"width_mult": 0.5}), ("resnet56_cifar", {}), ("vgg16_bn_cifar", {})]


@pytest.mark.parametrize(("name", "kwargs"), MODELS)
def test_pruned_cost_equals_flop_counter_and_weight_count(name, kwargs):
    model = randomise_bn(create_model(name, **kwargs))
    graph = trace_groups(model)
    dense = dense_masks(graph)
    assert network_cost(graph, FlopCost(), dense) == torch_flop_count(model)
    kill_channels(graph, 0.4)
    masks = final_masks(graph, 1e-2, grid=4)
    pruned = prune_model(model, graph, masks).model
    flops, weights = network_cost(graph, FlopCost(), masks), network_cost(graph, ParamCost(), masks)
    assert flops < 0.8 * network_cost(graph, FlopCost(), dense)  # something was really removed
    assert flops == torch_flop_count(pruned)
    count = count_model(pruned)
    assert weights == count.weight_params
    assert count.params > count.weight_params  # the full count (BN, biases) is reported beside it


def test_concat_pruned_cost_matches():
    model = randomise_bn(ConcatNet(), image_shape=(3, 8, 8))
    graph = trace_groups(model, (1, 3, 8, 8))
    kill_channels(graph, 0.5, seed=3)
    masks = final_masks(graph, 1e-2)
    result = prune_model(model, graph, masks)
    assert network_cost(graph, FlopCost(), masks) == torch_flop_count(result.model, (1, 3, 8, 8))
    assert result.deviation["max_abs"] < 1e-5  # 1×1 reader: the fold is exact


def test_depthwise_cost_and_regularizer_follow_morphnet():
    graph = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))
    op = graph.op("features.8.conv.1.0")
    coef = 2 * op.out_hw[0] * op.out_hw[1] * 9
    assert FlopCost().cost(op, 40.0, 40.0) == coef * 40
    assert FlopCost().regularizer(op, 40.0, 3.0, 40.0, 3.0) == coef * 6.0
    assert ParamCost().cost(op, 40.0, 40.0) == 9 * 40


def test_regularizer_gradient_is_the_bilinear_formula():
    graph = trace_groups(create_model("resnet20_cifar"))
    op = graph.op("layer2.1.conv2")
    alive = dense_masks(graph)
    r = [torch.rand(g.size, requires_grad=True) for g in graph.groups]
    terms = op_terms(graph, alive, r)[graph.ops.index(op)]
    reg = FlopCost().regularizer(op, terms.a_in, terms.r_in, terms.a_out, terms.r_out)
    reg.backward()
    coef = 2 * op.out_hw[0] * op.out_hw[1] * 9
    (inp,), (out,) = op.in_segments, op.out_segments
    assert torch.allclose(r[inp.group].grad, torch.full((32,), coef * 32.0))  # ∂/∂r_in = C·A_out
    assert torch.allclose(r[out.group].grad[:4], torch.full((4,), coef * 32.0))  # ∂/∂r_out = C·A_in


def test_roofline_has_the_same_interface_and_picks_the_bound():
    graph = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))
    compute_bound = RooflineCost(Roofline(peak_flops=1e9, bandwidth=1e15))
    memory_bound = RooflineCost(Roofline(peak_flops=1e15, bandwidth=1e9))
    dense = dense_masks(graph)
    flops = network_cost(graph, FlopCost(), dense)
    assert network_cost(graph, compute_bound, dense) == pytest.approx(flops / 1e9)
    op = graph.op("features.8.conv.0.0")
    assert memory_bound.cost(op, 10.0, 20.0) > memory_bound.cost(op, 10.0, 10.0)
    reg = memory_bound.regularizer(op, 10.0, torch.tensor(1.0), 20.0, torch.tensor(2.0))
    assert float(reg) > 0
