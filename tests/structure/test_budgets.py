"""Budgets: resolution against the dense block, ownership rule, one-line errors, the λ controller."""

from __future__ import annotations

import pytest
import torch

from edgekd.config.recipe import BlockBudget, StructureConfig
from edgekd.errors import ConfigError
from edgekd.models import create_model
from edgekd.structure.controller import BudgetController
from edgekd.structure.costs import FlopCost, ParamCost
from edgekd.structure.groups import trace_groups

S3 = ["features.4", "features.5", "features.6"]
MODELS = {"flops": FlopCost(), "params": ParamCost()}


def _controller(blocks, **kwargs):
    graph = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))
    return BudgetController(graph, StructureConfig(blocks=blocks, **kwargs), MODELS)


def test_fraction_resolves_against_the_dense_block_and_ownership_rule():
    controller = _controller([BlockBudget(name="s3", modules=S3, flops=0.5),
                              BlockBudget(name="s4", modules=["features.7"], frozen=True)])
    state = controller.states["s3"]
    assert state.budget["flops"] == pytest.approx(0.5 * state.dense["flops"])
    graph, owner = controller.graph, controller.ownership
    residual = graph.groups[graph.op("features.5.conv.2").out_segments[0].group]
    assert owner.block_of(residual) == "s3" and owner.learnable(residual)  # first producer: features.4's projection
    expansion = graph.groups[graph.op("features.7.conv.0.0").out_segments[0].group]
    assert not owner.learnable(expansion) and expansion.prunable  # written by a frozen block
    stem = graph.groups[graph.op("features.0.0").out_segments[0].group]
    assert not owner.learnable(stem) and owner.block_of(stem) is None  # uncovered, default: frozen


@pytest.mark.parametrize(("block", "message"), [
    (BlockBudget(name="x", modules=["features.99"], flops=0.5), "matches no module"),
    (BlockBudget(name="x", modules=S3, flops="1G"), "above the dense block"),
    (BlockBudget(name="x", modules=S3, params=2.0), "unreachable"),
])
def test_impossible_budgets_are_one_line_errors(block, message):
    with pytest.raises(ConfigError, match=message) as info:
        _controller([block])
    assert "\n" not in str(info.value)


def test_negative_budget_is_rejected_by_the_schema():
    with pytest.raises(ValueError, match="positive"):
        BlockBudget(name="x", modules=S3, flops=-0.5)


def test_global_budget_is_one_block_over_everything():
    from edgekd.config.recipe import GlobalBudget

    graph = trace_groups(create_model("resnet20_cifar"))
    controller = BudgetController(graph, StructureConfig(global_budget=GlobalBudget(flops=0.5)), MODELS)
    assert list(controller.states) == ["global"]
    state = controller.states["global"]
    assert state.budget["flops"] == pytest.approx(0.5 * state.dense["flops"])


def test_lambda_grows_while_over_budget_and_state_round_trips():
    controller = _controller([BlockBudget(name="s3", modules=S3, flops=0.5)], update_every=1, lambda_rate=0.5)
    controller.init_lambdas()
    start = controller.states["s3"].lam
    assert start > 0
    for _ in range(3):
        controller.step(lr=0.0)  # lr 0: γ's unchanged, block stays at 2× its budget
    assert controller.states["s3"].lam == pytest.approx(start * torch.exp(torch.tensor(1.5)).item(), rel=1e-5)
    saved = controller.state_dict()
    other = _controller([BlockBudget(name="s3", modules=S3, flops=0.5)], update_every=1)
    other.load_state_dict(saved)
    assert other.states["s3"].lam == controller.states["s3"].lam and other.step_count == 3
