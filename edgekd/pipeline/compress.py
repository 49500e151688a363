"""The compress pipeline: teacher → structure learning with KD → prune → finetune with KD → report.

Input: a resolved recipe with a ``structure`` section (and optionally a teacher run directory, a target
name that is recorded for the later compile/bench stages). Output: a run directory

    RUN/teacher/        the dense teacher (only when it had to be trained here)
    RUN/learn/          structure-learning checkpoints and metrics.jsonl (per-block cost vs budget per epoch)
    RUN/pruned/         model.pt + arch.json right after pruning (before finetuning)
    RUN/finetune/       finetuning checkpoints and metrics
    RUN/model.pt        the compact model (loads with edgekd.models.io.load_model, no recipe needed)
    RUN/arch.json       per-layer widths and kept channels of every group
    RUN/report.json     the CompressResult below (also what ``edgekd compress --json`` prints)
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.atomic import atomic_write_json
from edgekd.config.recipe import PhaseConfig, Recipe, TrainingConfig
from edgekd.data import Loaders, build_loaders
from edgekd.errors import ConfigError
from edgekd.learn.engine import Trainer, evaluate, seed_everything
from edgekd.learn.runs import resolve_run_dir, write_recipe
from edgekd.models.counting import count_model
from edgekd.models.io import for_inference, load_model, save_model
from edgekd.pipeline.train import build_model, load_teacher, model_arch, objective_for, train
from edgekd.structure.budgets import KINDS, BudgetController
from edgekd.structure.costs import block_costs
from edgekd.structure.learner import StructureLearner, no_weight_decay
from edgekd.structure.prune import PruneResult, final_masks, masked_copy, prune_model, save_arch_spec

__all__ = ["CompressResult", "compress", "phase_config", "learn_structure", "block_report"]


@dataclass
class CompressResult:
    run_dir: str
    target: str | None
    teacher: dict[str, Any]
    student: dict[str, Any]
    blocks: list[dict[str, Any]]
    pruning: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def phase_config(training: TrainingConfig, phase: PhaseConfig) -> TrainingConfig:
    """The recipe's training config with a phase's epochs / lr / schedule / step cap (no warmup)."""
    update: dict[str, Any] = {"epochs": phase.epochs, "warmup_epochs": 0.0}
    for key in ("lr", "schedule", "max_steps_per_epoch"):
        if getattr(phase, key) is not None:
            update[key] = getattr(phase, key)
    return training.model_copy(update=update)


def learn_structure(recipe: Recipe, student: nn.Module, teacher: nn.Module | None, loaders: Loaders,
                    run_dir: Path, resume: bool = False) -> tuple[StructureLearner, dict[str, Any]]:
    """Train ``student`` with Σ λ_b·R_b (+ KD when ``teacher`` is given) at the learn phase's fixed lr.

    The learn phase keeps its final weights (no best-validation rollback: the structure is what the
    controller reached at the end)."""
    learner = StructureLearner(student, recipe.structure, loaders.input_shape)
    cfg = phase_config(recipe.training, recipe.structure.learn)
    objective = learner.objective(objective_for(recipe, teacher, student, loaders))
    no_val = dataclasses.replace(loaders, val=None)
    trainer = Trainer(student, no_val, cfg, run_dir, objective=objective, callbacks=[learner.callback],
                      seed=recipe.seed, no_weight_decay=no_weight_decay, recipe=recipe.dump(), resume=resume,
                      description="learn")
    result = trainer.fit()
    return learner, {"epochs": result.epochs, "seconds": result.seconds, "test_acc_unmasked": result.test_acc,
                     "steps": trainer.global_step, "controller": learner.controller.report()}


def block_report(controller: BudgetController, masks: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Per block: requested budget (absolute), alive FLOPs / weight params, channels before / after."""
    graph = controller.graph
    dense = [torch.ones(g.size, dtype=torch.bool) for g in graph.groups]
    costs = {k: block_costs(graph, m, masks) for k, m in KINDS.items()}
    rows = []
    for name, state in controller.states.items():
        owned = [g for g in graph.groups if g.block == name]
        rows.append({
            "name": name, "budget": {k: v for k, v in state.budget.items()}, "frozen": state.frozen,
            "flops": costs["flops"].get(name, 0.0), "params": costs["params"].get(name, 0.0),
            "dense_flops": state.dense["flops"], "dense_params": state.dense["params"],
            "channels_before": int(sum(int(dense[g.id].sum()) for g in owned)),
            "channels_after": int(sum(int(masks[g.id].sum()) for g in owned)),
            "lambda": state.lam, "met_step": state.met_step,
        })
    return rows


def _model_summary(model: nn.Module, loaders: Loaders, device: torch.device | None = None) -> dict[str, Any]:
    count = count_model(model, loaders.input_shape)
    acc = evaluate(model, loaders.test, device).acc
    return {"test_acc": acc, "flops": count.flops, "params": count.params, "weight_params": count.weight_params}


def _teacher(recipe: Recipe, teacher: str | Path | None, run_dir: Path, resume: bool) -> nn.Module:
    if teacher is None and recipe.teacher.checkpoint is None:
        trained = train(recipe, out=run_dir / "teacher", resume=resume and (run_dir / "teacher").exists())
        teacher = trained.run_dir
    return load_teacher(recipe, teacher).model


def compress(recipe: Recipe, out: str | Path | None = None, teacher: str | Path | None = None,
             target: str | None = None, resume: bool = False) -> CompressResult:
    """Run the whole pipeline (see the module docstring); returns and writes ``report.json``."""
    if recipe.structure is None:
        raise ConfigError(f"{recipe.source}: structure: missing; compress needs a structure section "
                          "(blocks with budgets, or a global budget)")
    run_dir = resolve_run_dir(recipe, "compress", out, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_recipe(run_dir, recipe)
    seed_everything(recipe.seed)
    loaders = build_loaders(recipe.data, recipe.seed)
    dense = _teacher(recipe, teacher, run_dir, resume).eval()
    spec = recipe.teacher.model
    student = build_model(spec, loaders)
    student.load_state_dict(dense.state_dict())  # the student starts as the dense teacher
    learner, learn_info = learn_structure(recipe, student, dense, loaders, run_dir / "learn", resume)
    student = for_inference(student)
    masks = final_masks(learner.graph, recipe.structure.threshold, recipe.structure.round_to)
    pruned = prune_model(student, learner.graph, masks)
    prune_info = _pruning_info(student, learner, pruned, loaders)
    arch = model_arch(spec, loaders)
    save_model(run_dir / "pruned" / "model.pt", pruned.model, arch, extra={"stage": "pruned"})
    save_arch_spec(run_dir / "pruned" / "arch.json", pruned.spec)
    compact, finetune_info = _finetune(recipe, pruned.model, dense, loaders, run_dir / "finetune", resume)
    save_model(run_dir / "model.pt", compact, arch, extra={"stage": "compress", "arch": pruned.spec})
    save_arch_spec(run_dir / "arch.json", pruned.spec)
    result = CompressResult(
        run_dir=str(run_dir), target=target, teacher=_model_summary(dense, loaders),
        student=_model_summary(compact, loaders), blocks=block_report(learner.controller, masks),
        pruning=prune_info, phases={"learn": learn_info, "finetune": finetune_info},
    )
    atomic_write_json(run_dir / "report.json", result.to_dict())
    return result


def _pruning_info(student: nn.Module, learner: StructureLearner, pruned: PruneResult, loaders: Loaders) -> dict:
    masked = masked_copy(student, learner.graph, pruned.masks)
    return {"threshold": learner.controller.threshold, "deviation": pruned.deviation,
            "masked_test_acc": evaluate(masked, loaders.test).acc,
            "pruned_test_acc": evaluate(pruned.model, loaders.test).acc,
            "cost_model_flops": sum(block_costs(learner.graph, KINDS["flops"], pruned.masks).values())}


def _finetune(recipe: Recipe, model: nn.Module, teacher: nn.Module, loaders: Loaders, run_dir: Path,
              resume: bool) -> tuple[nn.Module, dict[str, Any]]:
    cfg = phase_config(recipe.training, recipe.structure.finetune)
    if cfg.epochs == 0:
        return model, {"epochs": 0}
    if resume and (run_dir / "checkpoint.pt").exists():
        model = load_model(run_dir.parent / "pruned").model  # same shapes as the checkpoint's weights
    objective = objective_for(recipe, teacher, model, loaders)
    trainer = Trainer(model, loaders, cfg, run_dir, objective=objective, seed=recipe.seed, recipe=recipe.dump(),
                      resume=resume, description="finetune")
    result = trainer.fit()
    compact = for_inference(trainer.model)
    return compact, {"epochs": result.epochs, "seconds": result.seconds, "test_acc": result.test_acc}
