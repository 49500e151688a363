"""Structure learning optimises the latency model it is handed: a model in which one stage's channels are expensive
makes the real learner, under a network-level latency budget, prune that stage harder than a FLOP budget does."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekd.config.recipe import DataConfig, DistillConfig, GlobalBudget, StructureConfig, TrainingConfig
from edgekd.data import build_loaders
from edgekd.latency.cost import LatencyCost
from edgekd.latency.design import coarse_multiples, lattices
from edgekd.latency.kernels import op_shape
from edgekd.latency.model import LatencyModel, NetworkKey, Provenance, Table
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective
from edgekd.learn.engine import Trainer, seed_everything
from edgekd.models import create_model
from edgekd.structure.costs import FlopCost, ParamCost
from edgekd.structure.groups import trace_groups
from edgekd.structure.learner import StructureLearner, no_weight_decay
from edgekd.structure.widths import group_name

EXPENSIVE = ("features.14.", "features.15.", "features.16.")  # a stage FLOP budgets leave whole here


def flop_shaped_model(graph, expensive: tuple[str, ...], factor: float) -> LatencyModel:
    """A latency model whose time is the FLOP count (1 ms per MFLOP), ``factor`` times that in the ops named
    ``expensive`` (given their own families): what a board whose kernels for that stage are slow would measure."""
    tables, ops = {}, {}
    for plan in lattices(graph, grid=4, levels=5):
        for name in plan.ops:
            slow = name.startswith(expensive)
            family = f"{plan.family}{'-slow' if slow else ''}"
            ops[name] = family
            if family in tables:
                continue
            op = graph.op(name)
            scale = (factor if slow else 1.0) * 1e-6
            ms = [[scale * float(FlopCost().cost(op, b if plan.depthwise else a, b)) for b in plan.a_out]
                  for a in plan.a_in]
            tables[family] = Table(family=family, a_in=plan.a_in, a_out=plan.a_out, ms=ms)
    assert op_shape(graph.ops[0]).family in {f.removesuffix("-slow") for f in tables}
    return LatencyModel(network=NetworkKey(name="mobilenetv2_cifar", input_shape=[1, 3, 32, 32]), grid=4, ops=ops,
                        tables=tables, provenance=Provenance(device="stand-in", target="host", board="-", threads=1,
                                                             runtime={}, mode="untuned", created="-", edgekd="-"))


def stage_fraction(learner: StructureLearner, prefix: tuple[str, ...]) -> float:
    """Alive share of the channel groups first written by ops of the stage."""
    masks = learner.final_masks()
    alive = total = 0
    for group, mask in zip(learner.graph.groups, masks, strict=True):
        if group.prunable and group.producers and group.producers[0].startswith(prefix):
            alive, total = alive + int(mask.sum()), total + group.size
    return alive / total


def learn(teacher, loaders, structure, cost_models, tmp_path, name: str) -> StructureLearner:
    seed_everything(0)
    student = copy.deepcopy(teacher).requires_grad_(True)  # the distillation objective froze the teacher
    learner = StructureLearner(student, structure, cost_models=cost_models)
    objective = learner.objective(DistillationObjective(teacher.eval(), DistillConfig(), student,
                                                        torch.zeros(1, 3, 32, 32)))
    cfg = TrainingConfig(epochs=2, lr=0.02, schedule="constant", max_steps_per_epoch=25, channels_last=False)
    Trainer(student, loaders, cfg, tmp_path / name, objective=objective, callbacks=[learner.callback],
            no_weight_decay=no_weight_decay).fit()
    return learner


@pytest.mark.slow
def test_the_learner_prunes_harder_where_the_latency_model_says_channels_are_expensive(shared_data, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar10-mini.npz").symlink_to(shared_data / "cifar10-mini.npz")
    seed_everything(0)
    loaders = build_loaders(DataConfig(dataset="cifar10", root=str(tmp_path / "data"), val_size=0, batch_size=32,
                                       workers=0, test_subset=64), 0)
    teacher = create_model("mobilenetv2_cifar", width_mult=0.25)
    Trainer(teacher, loaders, TrainingConfig(epochs=1, lr=0.05, schedule="constant", max_steps_per_epoch=20,
                                             channels_last=False), tmp_path / "teacher",
            objective=CrossEntropyObjective()).fit()
    latency = LatencyCost(flop_shaped_model(trace_groups(teacher), EXPENSIVE, factor=8.0))
    basic = {"flops": FlopCost(), "params": ParamCost()}
    common = {"lambda_rate": 3.0, "update_every": 1, "threshold": 0.01, "default": "free"}
    by_flops = learn(teacher, loaders, StructureConfig(global_budget=GlobalBudget(flops=0.6), **common), basic,
                     tmp_path, "flops")
    by_latency = learn(teacher, loaders, StructureConfig(cost="latency", global_budget=GlobalBudget(latency=0.6),
                                                         **common), {**basic, "latency": latency}, tmp_path, "latency")
    flops_share, latency_share = stage_fraction(by_flops, EXPENSIVE), stage_fraction(by_latency, EXPENSIVE)
    print(f"expensive stage keeps {flops_share:.3f} of its channels under FLOPs, {latency_share:.3f} under latency")
    assert latency_share < flops_share - 0.03  # a learner blind to the model prunes both runs alike


def test_a_tuned_models_coarse_grid_is_where_the_learner_lands():
    """A tuned model measured every kernel of the networks on its per-group grid and none off it: the learner's
    final widths sit on those steps, still within the latency budget (the fit walks the coarse steps)."""
    torch.manual_seed(0)
    student = create_model("mobilenetv2_cifar", width_mult=0.5).eval()
    graph = trace_groups(student)
    model = flop_shaped_model(graph, (), factor=1.0)
    coarse = coarse_multiples(graph, grid=8, levels=3)
    steps = coarse.steps
    model.multiples = coarse.named_steps(graph)
    latency = LatencyCost(model)
    with torch.no_grad():  # saliencies to choose by: |γ| spread, none below the threshold (the fit prunes)
        for bn in (m for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.1, 1.0)
    structure = StructureConfig(cost="latency", global_budget=GlobalBudget(latency=0.6), threshold=0.01,
                                default="free", round_to=8)
    learner = StructureLearner(student, structure, graph=graph,
                               cost_models={"flops": FlopCost(), "params": ParamCost(), "latency": latency})
    masks = learner.final_masks()
    pruned = 0
    for group, mask in zip(graph.groups, masks, strict=True):
        if group.prunable:
            width = int(mask.sum())
            assert width in learner.grid.widths(group.id, group.size), (group_name(group), width)
            assert learner.grid.step_of(group.id) == steps[group.id]
            pruned += width < group.size
    assert pruned >= 3
    dense = latency.network_ms(graph, [torch.ones(g.size, dtype=torch.bool) for g in graph.groups])
    assert latency.network_ms(graph, masks) <= 0.6 * dense * (1 + 1e-6)
    on_fine_grid = learner.final_masks(grid=8)  # the recipe's grid alone: widths the model never measured
    assert any(int(m.sum()) not in learner.grid.widths(g.id, g.size)
               for g, m in zip(graph.groups, on_fine_grid, strict=True) if g.prunable)
