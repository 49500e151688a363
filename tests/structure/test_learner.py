"""Structure learning with KD on real CIFAR-10 (mini): budgets 0.5, 0.7 and frozen on three MobileNetV2
stages; each block ends within ±5% of its budget with one τ for the whole network (no threshold search)."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekd.config.recipe import BlockBudget, DataConfig, DistillConfig, StructureConfig, TrainingConfig
from edgekd.data import build_loaders
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective
from edgekd.learn.engine import Trainer, seed_everything
from edgekd.models import create_model
from edgekd.structure.costs import FlopCost, ParamCost
from edgekd.structure.learner import StructureLearner, no_weight_decay
from edgekd.structure.report import block_report


@pytest.mark.slow
def test_block_budgets_are_met_within_5_percent(shared_data, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar10-mini.npz").symlink_to(shared_data / "cifar10-mini.npz")
    seed_everything(0)
    loaders = build_loaders(DataConfig(dataset="cifar10", root=str(tmp_path / "data"), val_size=0, batch_size=32,
                                       workers=0, test_subset=64), 0)
    teacher = create_model("mobilenetv2_cifar", width_mult=0.35)
    cfg = TrainingConfig(epochs=1, lr=0.05, schedule="constant", max_steps_per_epoch=40, channels_last=False)
    Trainer(teacher, loaders, cfg, tmp_path / "teacher", objective=CrossEntropyObjective()).fit()
    student = copy.deepcopy(teacher)
    structure = StructureConfig(blocks=[
        BlockBudget(name="s3", modules=["features.4", "features.5", "features.6"], frozen=True),
        BlockBudget(name="s4", modules=["features.7", "features.8", "features.9", "features.10"], flops=0.5),
        BlockBudget(name="s5", modules=["features.11", "features.12", "features.13"], flops=0.7),
    ], lambda_rate=1.0, update_every=5, threshold=0.01)
    learner = StructureLearner(student, structure, cost_models={"flops": FlopCost(), "params": ParamCost()})
    objective = learner.objective(DistillationObjective(teacher.eval(), DistillConfig(), student,
                                                        torch.zeros(1, 3, 32, 32)))
    learn = cfg.model_copy(update={"lr": 0.02, "epochs": 2, "max_steps_per_epoch": 60})
    Trainer(student, loaders, learn, tmp_path / "learn", objective=objective, callbacks=[learner.callback],
            no_weight_decay=no_weight_decay).fit()
    masks = learner.final_masks()  # the one τ; no per-block search
    rows = {row["name"]: row for row in block_report(learner.controller, masks)}
    assert len(learner.callback.log) == 2 and "block/s4/flops" in learner.callback.log[0]
    for name, fraction in (("s3", 1.0), ("s4", 0.5), ("s5", 0.7)):
        row = rows[name]
        ratio = row["flops"] / (fraction * row["dense_flops"])
        print(f"{name}: {row['flops']:.0f} FLOPs = {ratio:.3f} x budget, channels {row['channels_before']}"
              f" -> {row['channels_after']}")
        assert abs(ratio - 1) <= 0.05
    assert rows["s4"]["channels_after"] < rows["s4"]["channels_before"]
    # fitted: not one more channel of s4 or s5 fits in its budget; a frozen block has no step to take
    assert rows["s4"]["next_step_ratio"] > 1 and rows["s5"]["next_step_ratio"] > 1
    assert rows["s3"]["next_step_ratio"] is None
