"""The controller's parts: cost models handed in (and refused when missing), block ownership owned by the
controller (never written on the shared graph), the λ policy, reporting, and resume through the trainer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edgekd.cli import main
from edgekd.config.recipe import BlockBudget, DataConfig, GlobalBudget, StructureConfig, TrainingConfig
from edgekd.errors import ConfigError
from edgekd.models import create_model
from edgekd.structure.budgets import check_cost_models
from edgekd.structure.controller import BudgetController
from edgekd.structure.costs import FlopCost, ParamCost, RooflineCost, block_regularizers
from edgekd.structure.groups import trace_groups
from edgekd.structure.ownership import DEFAULT_BLOCK, assign_blocks
from edgekd.structure.policy import LambdaPolicy
from edgekd.structure.report import block_report, controller_report, epoch_metrics

S3 = ["features.4", "features.5", "features.6"]
S4 = ["features.7", "features.8", "features.9", "features.10"]
BASIC = {"flops": FlopCost(), "params": ParamCost()}


@pytest.fixture(scope="module")
def mbv2_graph():
    return trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))


# ---------------------------------------------------------------------------------------- cost models


def test_cli_refuses_latency_without_a_measured_model_before_training(monkeypatch, tmp_path, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("compress got past the cost-model check")

    monkeypatch.chdir(tmp_path)  # a run directory would appear under ./runs
    monkeypatch.setenv("EDGEKD_PROGRESS", "0")
    monkeypatch.setattr("edgekd.pipeline.compress.teacher_source", no_training)
    monkeypatch.setattr("edgekd.learn.engine.Trainer.fit", no_training)
    code = main(["compress", "--recipe", "quickstart", "--set", "structure.cost=latency"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("edgekd: error: ")
    for fragment in ("quickstart.yaml", "structure.cost", "latency", "compress --device D", "edgekd latency profile"):
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "runs").exists()  # refused up front, before a run directory or a teacher


def test_a_budget_kind_with_no_model_is_refused_naming_its_field(mbv2_graph):
    flops_only = {"flops": FlopCost()}
    blocks = StructureConfig(blocks=[BlockBudget(name="s3", modules=S3, params=0.5)])
    with pytest.raises(ConfigError, match=r"structure\.blocks\[s3\]\.params='params': no params cost model") as info:
        BudgetController(mbv2_graph, blocks, flops_only)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^r\.yaml: structure\.global\.params="):
        check_cost_models(StructureConfig(global_budget=GlobalBudget(params=0.5)), flops_only, "r.yaml")
    with pytest.raises(ConfigError, match=r"structure\.cost='params'"):
        check_cost_models(StructureConfig(cost="params", blocks=[BlockBudget(name="s3", modules=S3, flops=0.5)]),
                          flops_only)


def test_the_roofline_prior_never_answers_for_latency(mbv2_graph):
    structure = StructureConfig(cost="latency", blocks=[BlockBudget(name="s3", modules=S3, flops=0.5)])
    with pytest.raises(ConfigError, match="structure.cost='latency'.*roofline is a prior"):
        BudgetController(mbv2_graph, structure, {**BASIC, "roofline": RooflineCost()})
    with pytest.raises(ValueError, match="measures 'roofline', not 'latency'"):
        BudgetController(mbv2_graph, structure, {**BASIC, "latency": RooflineCost()})


@dataclasses.dataclass(frozen=True)
class FakeLatency:
    """Stands in for a model measured on a board: any object with the CostModel interface and its kind."""

    seconds_per_flop: float = 1e-9
    name: str = "latency"

    def cost(self, op, a_in, a_out):
        return FlopCost().cost(op, a_in, a_out) * self.seconds_per_flop

    def regularizer(self, op, a_in, r_in, a_out, r_out):
        return FlopCost().regularizer(op, a_in, r_in, a_out, r_out) * self.seconds_per_flop


def test_the_controller_measures_and_optimises_the_models_it_is_handed(mbv2_graph):
    structure = StructureConfig(blocks=[BlockBudget(name="s3", modules=S3, flops=0.5)])
    basic = BudgetController(mbv2_graph, structure, BASIC)
    doubled = BudgetController(mbv2_graph, structure, {"flops": FlopCost(), "params": ParamCost(),
                                                       "latency": FakeLatency(2e-9)})
    assert doubled.states["s3"].dense["latency"] == pytest.approx(2e-9 * basic.states["s3"].dense["flops"])
    assert "block/s3/latency" in epoch_metrics(doubled)
    assert "dense_latency" in block_report(doubled, doubled.alive_masks())[0]
    # a latency model that is handed in makes `cost: latency` legal, and the free pseudo-block is
    # regularised by it — a later measured model plugs in the same way
    free = structure.model_copy(update={"cost": "latency", "default": "free"})
    controller = BudgetController(mbv2_graph, free, {**BASIC, "latency": FakeLatency()})
    assert controller.regularised_kinds(controller.states[DEFAULT_BLOCK]) == ["latency"]
    controller.init_lambdas()
    assert controller.states[DEFAULT_BLOCK].lam > 0


def test_cost_params_regularises_the_free_pseudo_block_with_params():
    graph = trace_groups(create_model("resnet20_cifar"))
    structure = StructureConfig(cost="params", default="free",
                                blocks=[BlockBudget(name="l2", modules=["layer2"], flops=0.5)])
    controller = BudgetController(graph, structure, BASIC)
    state = controller.states[DEFAULT_BLOCK]
    assert controller.regularised_kinds(state) == ["params"]
    regs = block_regularizers(graph, ParamCost(), controller.alive_masks(), controller.ownership.saliencies(graph),
                              controller.ownership)
    expected = regs[DEFAULT_BLOCK] / state.dense["params"]
    assert torch.allclose(controller.normalised_regularizers()[DEFAULT_BLOCK], expected)
    controller.init_lambdas()  # used to raise KeyError: 'params'
    assert state.lam == pytest.approx(0.1 / float(expected.detach()))


# ---------------------------------------------------------------------------------------- ownership


def _graph_snapshot(graph) -> list:
    """Every plain attribute of every group and op (tensors as lists; modules by identity)."""
    def plain(obj):
        out = {}
        for key, value in vars(obj).items():
            if isinstance(value, torch.nn.Module):
                out[key] = id(value)
            elif isinstance(value, list):
                out[key] = [plain(v) if dataclasses.is_dataclass(v) else v for v in value]
            elif isinstance(value, torch.Tensor):
                out[key] = value.tolist()
            else:
                out[key] = value
        return out
    return [plain(g) for g in graph.groups] + [plain(o) for o in graph.ops]


def test_two_controllers_on_one_graph_keep_their_own_ownership(mbv2_graph):
    before = _graph_snapshot(mbv2_graph)
    learn_s3 = StructureConfig(blocks=[BlockBudget(name="s3", modules=S3, flops=0.5)], default="free")
    freeze_s3 = StructureConfig(blocks=[BlockBudget(name="s3", modules=S3, frozen=True),
                                        BlockBudget(name="s4", modules=S4, params=0.6)])
    a = BudgetController(mbv2_graph, learn_s3, BASIC)
    a_owner, a_costs = a.ownership, a.costs()
    b = BudgetController(mbv2_graph, freeze_s3, BASIC)
    assert _graph_snapshot(mbv2_graph) == before  # neither controller wrote on the graph
    assert a.ownership is a_owner and a.costs() == a_costs
    # each ownership is what a controller alone on a fresh graph gets
    fresh = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))
    assert a.ownership == BudgetController(fresh, learn_s3, BASIC).ownership
    assert b.ownership == BudgetController(fresh, freeze_s3, BASIC).ownership
    residual = mbv2_graph.groups[mbv2_graph.op("features.5.conv.2").out_segments[0].group]
    assert a.ownership.learnable(residual) and not b.ownership.learnable(residual)
    expansion = mbv2_graph.groups[mbv2_graph.op("features.8.conv.0.0").out_segments[0].group]
    assert a.ownership.block_of(expansion) == DEFAULT_BLOCK and b.ownership.block_of(expansion) == "s4"
    assert a.ownership.op_block["features.8.conv.0.0"] == DEFAULT_BLOCK
    assert b.ownership.op_block["features.8.conv.0.0"] == "s4"
    assert set(a.states) == {"s3", DEFAULT_BLOCK} and set(b.states) == {"s3", "s4"}
    assert a.ownership != b.ownership


def test_assign_blocks_returns_a_mapping_and_leaves_the_graph_alone(mbv2_graph):
    before = _graph_snapshot(mbv2_graph)
    owner = assign_blocks(mbv2_graph, [BlockBudget(name="s3", modules=S3, flops=0.5)])
    assert _graph_snapshot(mbv2_graph) == before
    assert owner.charged["s3"] and all(owner.op_block[name] == "s3" for name in owner.charged["s3"])
    stem = mbv2_graph.groups[mbv2_graph.op("features.0.0").out_segments[0].group]
    assert stem.prunable and not owner.learnable(stem)  # default: frozen
    assert bool(owner.alive_masks(mbv2_graph, 10.0)[stem.id].all())  # frozen groups stay whole


# ---------------------------------------------------------------------------------------- policy and report


def test_lambda_policy_is_plain_arithmetic():
    policy = LambdaPolicy(init=None, rate=0.5, update_every=3)
    assert policy.initial(4.0) == 0.25 and policy.initial(4.0, controlled=False) == pytest.approx(0.025)
    assert policy.initial(0.0) == 0.0 and LambdaPolicy(init=2.0).initial(4.0) == 2.0
    assert [policy.due(s) for s in (1, 2, 3, 6)] == [False, False, True, True]
    assert policy.updated(1.0, 2.0) == pytest.approx(torch.exp(torch.tensor(0.5)).item())
    assert policy.updated(1.0, 10.0) == policy.updated(1.0, 3.0)  # bounded
    assert policy.met(1.0) and not policy.met(1.0001)
    # no windup: while the regularizer still falls by min_progress an update, λ stays where it is
    assert policy.updated(3.0, 2.0, progress=policy.min_progress) == 3.0
    assert policy.updated(3.0, 2.0, progress=0.01) == policy.updated(3.0, 2.0) > 3.0


def test_a_huge_proximal_step_never_empties_a_group_and_its_last_channel_carries_signal(mbv2_graph):
    """The regression behind a PruningError at a hard latency budget: a λ grown large zeroed every γ of a group at
    once, the next BatchNorm saw a constant, its 1/√ε gain sent a gradient of ~1e5 upstream and γ's ran to 1e5."""
    model = create_model("mobilenetv2_cifar", width_mult=0.5)
    graph = trace_groups(model)
    structure = StructureConfig(global_budget=GlobalBudget(flops=0.2), threshold=0.01)
    controller = BudgetController(graph, structure, BASIC)
    controller.init_lambdas()
    controller.states["global"].lam = 1e12  # every channel's shrink dwarfs its |γ|
    controller.prox_step(lr=1.0)
    floor = controller.threshold * 1.02
    learnable = [g for g in graph.groups if controller.ownership.learnable(g)]
    assert learnable and all(int(a.sum()) == 1 for g, a in zip(graph.groups, controller.alive_masks(), strict=True)
                             if g in learnable)
    for group in learnable:
        channel = int(group.saliency().argmax())
        for member in group.bns:  # every BatchNorm the kept channel passes, not only the largest
            gammas = member.module.weight.detach()[member.module_idx[member.group_idx == channel]]
            assert bool((gammas.abs() >= floor - 1e-9).all()), (member.name, gammas)


def test_block_report_covers_the_free_pseudo_block(mbv2_graph):
    structure = StructureConfig(blocks=[BlockBudget(name="s3", modules=S3, flops=0.5)], default="free")
    controller = BudgetController(mbv2_graph, structure, BASIC)
    rows = {row["name"]: row for row in block_report(controller, controller.alive_masks())}
    free = rows[DEFAULT_BLOCK]  # used to raise KeyError: 'flops'
    assert free["dense_flops"] == free["flops"] > 0 and free["budget"] == {}
    assert rows["s3"]["channels_before"] == rows["s3"]["channels_after"] > 0
    assert [r["name"] for r in controller_report(controller)] == ["s3", DEFAULT_BLOCK]


# ---------------------------------------------------------------------------------------- resume


def _learn(run_dir, epochs: int, resume: bool = False):
    """Structure learning, 4 steps an epoch, in which block s4 meets its budget during epoch 2."""
    from edgekd.data import build_loaders
    from edgekd.learn.distill import CrossEntropyObjective
    from edgekd.learn.engine import Trainer
    from edgekd.structure.learner import StructureLearner, no_weight_decay

    torch.manual_seed(0)
    loaders = build_loaders(DataConfig(dataset="shapes", train_subset=64, val_size=0, test_subset=16,
                                       batch_size=16, workers=0), 0)
    loaders = dataclasses.replace(loaders, val=None)
    student = create_model("mobilenetv2_cifar", width_mult=0.25)
    structure = StructureConfig(blocks=[BlockBudget(name="s4", modules=S4, flops=0.5)], update_every=1,
                                lambda_rate=1.0)
    learner = StructureLearner(student, structure, loaders.input_shape, cost_models=BASIC)
    cfg = TrainingConfig(epochs=epochs, lr=0.2, schedule="constant", max_steps_per_epoch=4, channels_last=False)
    Trainer(student, loaders, cfg, run_dir, objective=learner.objective(CrossEntropyObjective()),
            callbacks=[learner.callback], no_weight_decay=no_weight_decay, resume=resume).fit()
    return learner.controller


EPOCHS = 4  # 16 steps in all


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the per-test fixture is not active yet; results depend on the thread count
    try:
        controller = _learn(tmp_path_factory.mktemp("straight"), epochs=EPOCHS)
    finally:
        torch.set_num_threads(threads)
    # Non-vacuous: met after the first checkpoint and before the last one, so that one resume starts before the
    # block met its budget (λ grown) and one after (held). The exact step depends on the CPU's float rounding.
    assert 4 < controller.states["s4"].met_step <= 4 * (EPOCHS - 1)
    return controller


@pytest.mark.parametrize("when", ["before", "after"])  # the block has not met / has met its budget
def test_controller_state_resumes_from_the_trainer_checkpoint(tmp_path, straight, when):
    met_step = straight.states["s4"].met_step
    stop_after = (met_step - 1) // 4 if when == "before" else -(-met_step // 4)
    _learn(tmp_path, epochs=stop_after)
    resumed = _learn(tmp_path, epochs=EPOCHS, resume=True)
    assert resumed.step_count == straight.step_count == 4 * EPOCHS
    assert resumed.state_dict()["states"] == straight.state_dict()["states"]
    assert set(resumed.held) == set(straight.held) and straight.held
    assert all(torch.equal(resumed.held[g], straight.held[g]) for g in straight.held)
    assert all(torch.equal(x, y) for x, y in zip(resumed.prev_alive, straight.prev_alive, strict=True))
    for a, b in zip(resumed.graph.groups, straight.graph.groups, strict=True):
        assert torch.equal(a.saliency().detach(), b.saliency().detach())
