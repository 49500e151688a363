"""The compress pipeline: teacher → structure learning with KD → prune → finetune with KD → report.

Input: a resolved recipe with a ``structure`` section (and optionally a teacher run directory, a target
name that is recorded for the later compile/bench stages). The pipeline builds the cost models structure
learning optimises (:func:`structure_cost_models`: FLOPs and weight params) and hands them to the learner;
a recipe asking for a kind with no model (``structure.cost: latency``) is refused before anything runs.
Output: a run directory

    RUN/teacher/        the dense teacher (only when it had to be trained here)
    RUN/learn/          structure-learning checkpoints and metrics.jsonl (per-block cost vs budget per epoch)
    RUN/pruned/         model.pt + arch.json right after pruning (before finetuning)
    RUN/finetune/       finetuning checkpoints and metrics
    RUN/model.pt        the compact model (loads with edgekd.models.io.load_model, no recipe needed)
    RUN/model.pt2       the same as a torch.export program (loads without the network's builder code)
    RUN/arch.json       per-layer widths and kept channels of every group
    RUN/report.json     the CompressResult below (also what ``edgekd compress --json`` prints)

The learn → prune → finetune sequence is :func:`learn_and_prune` then :func:`finetune`, reusable on their
own (``scripts/bench_compression.py`` runs its baselines through them with in-memory recipes).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.atomic import atomic_write_json
from edgekd.config.devices import Device, DeviceStore
from edgekd.config.recipe import PhaseConfig, Recipe, TrainingConfig
from edgekd.config.target import TargetProfile, load_target
from edgekd.data import Loaders, build_loaders
from edgekd.device.bench import BenchOptions
from edgekd.errors import CheckpointError, ConfigError
from edgekd.learn.engine import Trainer, evaluate, seed_everything
from edgekd.learn.runs import resolve_run_dir, write_recipe
from edgekd.models.counting import count_model
from edgekd.models.io import ModelArch, for_inference, load_model, save_model, save_program
from edgekd.pipeline.latency import latency_cost_for, resolve_latency_budget, wants_latency
from edgekd.pipeline.measure import bench_tagged, check_deploy_trials, compile_for_board, summarize
from edgekd.pipeline.train import build_model, load_teacher, model_arch, objective_for, teacher_source
from edgekd.results.store import ResultsStore
from edgekd.structure.budgets import check_cost_models
from edgekd.structure.costs import CostModel, FlopCost, ParamCost, network_cost
from edgekd.structure.learner import StructureLearner, no_weight_decay
from edgekd.structure.prune import PruneResult, masked_copy, prune_model, save_arch_spec
from edgekd.structure.report import block_report, controller_report
from edgekd.structure.saliency import taylor_saliency
from edgekd.structure.verify import verify_pruning

__all__ = ["CompressResult", "MeasureOptions", "StructureRun", "choose_by_taylor", "compress", "finetune",
           "finetune_deferred", "learn_and_prune", "learn_structure", "on_target_grid", "phase_config",
           "structure_cost_models"]


@dataclass
class CompressResult:
    run_dir: str
    target: str | None
    teacher: dict[str, Any]
    student: dict[str, Any]
    blocks: list[dict[str, Any]]
    pruning: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # RUN/model.pt (rebuilds with the network's builder)
    program: str | None = None  # RUN/model.pt2 (torch.export program: no builder code needed)
    round_to: int = 1  # the channel multiple widths were rounded to (the target's, unless the recipe set one)
    group_steps: dict[str, int] = field(default_factory=dict)  # per-group steps a tuned latency model demanded
    measured: dict[str, Any] | None = None  # compress --device: the compact network benched on the board

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VERIFY_IMAGES = 32  # real test images the pruned network is checked on (every module's output is held at once)


# Structure learning clips the gradients' norm unless the recipe says how: as the proximal step empties channels,
# a BatchNorm fed a constant input has a 1/√ε gain, and one step's gradient norm jumps from ~1 to ~1e5 (measured on
# a hard latency budget, docs/benchmarks.md); momentum then carries γ's upstream to ~1e5, a network float32 cannot
# prune exactly. A trained network's steps here measure 0.5–2, so 10 leaves ordinary steps alone.
LEARN_CLIP_GRAD_NORM = 10.0


def phase_config(training: TrainingConfig, phase: PhaseConfig) -> TrainingConfig:
    """The recipe's training config with a phase's epochs / lr / schedule / step cap / gradient clip (no
    warmup)."""
    update: dict[str, Any] = {"epochs": phase.epochs, "warmup_epochs": 0.0}
    for key in ("lr", "schedule", "max_steps_per_epoch", "clip_grad_norm"):
        if getattr(phase, key) is not None:
            update[key] = getattr(phase, key)
    return training.model_copy(update=update)


def structure_cost_models(recipe: Recipe, latency: CostModel | None = None) -> dict[str, CostModel]:
    """The cost models structure learning optimises and reports, by kind: FLOPs, conv/linear weights and, when
    one is handed in, the latency model measured on the board (:func:`edgekd.pipeline.latency.latency_cost_for`);
    without it a recipe asking for latency is refused by :func:`~edgekd.structure.budgets.check_cost_models`."""
    models: dict[str, CostModel] = {"flops": FlopCost(), "params": ParamCost()}
    if latency is not None:
        models["latency"] = latency
    return models


def learn_structure(recipe: Recipe, student: nn.Module, teacher: nn.Module | None, loaders: Loaders,
                    run_dir: Path, resume: bool = False, cost_models: dict[str, CostModel] | None = None,
                    ) -> tuple[StructureLearner, dict[str, Any]]:
    """Train ``student`` with Σ λ_b·R_b (+ KD when ``teacher`` is given) at the learn phase's fixed lr,
    under ``cost_models`` (default :func:`structure_cost_models`).

    The learn phase keeps its final weights (no best-validation rollback: the structure is what the
    controller reached at the end)."""
    cost_models = structure_cost_models(recipe) if cost_models is None else cost_models
    check_cost_models(recipe.structure, cost_models, recipe.source)  # the message names the recipe file
    learner = StructureLearner(student, recipe.structure, loaders.input_shape, cost_models=cost_models)
    cfg = phase_config(recipe.training, recipe.structure.learn)
    if cfg.clip_grad_norm is None:
        cfg = cfg.model_copy(update={"clip_grad_norm": LEARN_CLIP_GRAD_NORM})
    objective = learner.objective(objective_for(recipe, teacher, student, loaders))
    no_val = dataclasses.replace(loaders, val=None)
    trainer = Trainer(student, no_val, cfg, run_dir, objective=objective, callbacks=[learner.callback],
                      seed=recipe.seed, no_weight_decay=no_weight_decay, recipe=recipe.dump(), resume=resume,
                      description="learn")
    result = trainer.fit()
    return learner, {"epochs": result.epochs, "seconds": result.seconds, "test_acc_unmasked": result.test_acc,
                     "steps": trainer.global_step, "controller": controller_report(learner.controller)}


TAYLOR_BATCHES = 32  # training batches the Taylor saliency sums over (2048 CIFAR images at batch 64)


def choose_by_taylor(recipe: Recipe, student: nn.Module, loaders: Loaders,
                     cost_models: dict[str, CostModel] | None = None,
                     ) -> tuple[StructureLearner, list[torch.Tensor], dict[str, Any]]:
    """The masks within every block's budget that keep the most first-order Taylor saliency of ``student``
    (:func:`~edgekd.structure.saliency.taylor_saliency` over :data:`TAYLOR_BATCHES` training batches), fitted
    greedily per unit of budget from the whole network on the learner's grid; no training step is taken."""
    started = time.monotonic()
    cost_models = structure_cost_models(recipe) if cost_models is None else cost_models
    learner = StructureLearner(student, recipe.structure, loaders.input_shape, cost_models=cost_models)
    scores = taylor_saliency(student, learner.graph, loaders.train, TAYLOR_BATCHES)
    whole = [torch.ones(group.size, dtype=torch.bool) for group in learner.graph.groups]
    masks = learner.controller.fit_masks(whole, learner.grid, saliency=scores)
    info = {"saliency": "taylor", "batches": TAYLOR_BATCHES, "epochs": 0, "steps": 0,
            "seconds": time.monotonic() - started, "controller": controller_report(learner.controller)}
    return learner, masks, info


@dataclass
class StructureRun:
    """What :func:`learn_and_prune` leaves: the learner (graph, ownership, controller), the structure-learned
    student before pruning (CPU, eval), the pruned network (and its masks and arch spec) and the learn phase's
    summary."""

    learner: StructureLearner
    student: nn.Module
    pruned: PruneResult
    learn: dict[str, Any]


def learn_and_prune(recipe: Recipe, student: nn.Module, teacher: nn.Module | None, loaders: Loaders,
                    run_dir: Path, resume: bool = False, cost_models: dict[str, CostModel] | None = None,
                    ) -> StructureRun:
    """Structure learning in ``RUN/learn`` (:func:`learn_structure`), then pruning at the one τ with the
    learner's grid (the recipe's ``round_to``, and a tuned latency model's per-group steps); the pruned network is
    written to ``RUN/pruned/`` (model.pt + arch.json). With ``structure.saliency: taylor`` nothing is learnt: the
    channels are chosen on ``student`` as it is (the teacher's weights) by :func:`choose_by_taylor`."""
    if recipe.structure.saliency == "taylor":
        learner, masks, info = choose_by_taylor(recipe, student, loaders, cost_models)
    else:
        learner, info = learn_structure(recipe, student, teacher, loaders, run_dir / "learn", resume, cost_models)
        masks = learner.final_masks()
    student = for_inference(student)
    pruned = prune_model(student, learner.graph, masks, ownership=learner.ownership)
    save_model(run_dir / "pruned" / "model.pt", pruned.model, model_arch(recipe.teacher.model, loaders),
               extra={"stage": "pruned"})
    save_arch_spec(run_dir / "pruned" / "arch.json", pruned.spec, recipe.structure.round_to,
                   learner.grid.named_steps(learner.graph))
    return StructureRun(learner, student, pruned, info)


def _model_summary(model: nn.Module, loaders: Loaders, device: torch.device | None = None) -> dict[str, Any]:
    count = count_model(model, loaders.input_shape)
    acc = evaluate(model, loaders.test, device).acc
    return {"test_acc": acc, "flops": count.flops, "params": count.params, "weight_params": count.weight_params}


def compress(recipe: Recipe, out: str | Path | None = None, teacher: str | Path | None = None,
             target: str | None = None, resume: bool = False, device: str | None = None,
             warm_start: str | Path | None = None, measure: MeasureOptions | None = None,
             finetune_now: bool = True, latency_mode: str = "untuned") -> CompressResult:
    """Run the whole pipeline (see the module docstring); returns and writes ``report.json``.

    ``target``: the target profile the network is for (validated; widths are rounded to its channel multiple unless
    the recipe sets ``structure.round_to``). ``device``: the board whose latency model a latency budget is learnt
    under (its target is the target), its ``latency_mode`` model (``untuned``, or ``tuned``: the deployed kernels'
    milliseconds). ``measure`` (with ``device``): compile the compact network for the board and
    bench it there, rows linked to this run (``RUN/artifact/``, ``measured`` in the report). ``warm_start``: a
    structure-learning checkpoint (an earlier run's ``learn/checkpoint.pt``) whose student weights, γ's already
    shrunk, replace the dense teacher's as the starting point (``edgekd tune``'s later rounds shave from where the
    last one stopped). ``finetune_now=False``: the pruned network is the run's model, its finetune deferred to
    :func:`finetune_deferred` (``edgekd tune`` measures a round's latency — the architecture's — before it knows
    whether that round's network is the one worth finetuning)."""
    if recipe.structure is None:
        raise ConfigError(f"{recipe.source}: structure: missing; compress needs a structure section "
                          "(blocks with budgets, or a global budget)")
    if warm_start is not None and recipe.structure.saliency == "taylor":
        raise ConfigError(f"{recipe.source}: structure.saliency=taylor chooses channels on the teacher's weights: "
                          "a warm start from learnt weights does not apply")
    entry, profile = _board_and_target(target, device, measure is not None)
    if measure is not None:
        check_deploy_trials("compress", latency_mode, measure.tune_trials)
    recipe = on_target_grid(recipe, profile)
    loaders = build_loaders(recipe.data, recipe.seed)  # uses no global RNG: seeding comes before the teacher
    latency = None
    if wants_latency(recipe):
        latency = latency_cost_for(recipe, device, latency_mode, loaders=loaders)
        recipe = resolve_latency_budget(recipe, latency, loaders)
    cost_models = structure_cost_models(recipe, latency)
    check_cost_models(recipe.structure, cost_models, recipe.source)  # before any run directory or training
    run_dir = resolve_run_dir(recipe, "compress", out, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_recipe(run_dir, recipe)
    seed_everything(recipe.seed)
    dense = load_teacher(recipe, teacher_source(recipe, teacher, run_dir, resume), loaders).model.eval()
    spec = recipe.teacher.model
    student = build_model(spec, loaders)
    # the student starts as the dense teacher, or where an earlier structure learning stopped
    student.load_state_dict(dense.state_dict() if warm_start is None else _learned_weights(warm_start))
    learned = learn_and_prune(recipe, student, dense, loaders, run_dir, resume, cost_models)
    prune_info = _pruning_info(learned, loaders)  # before finetuning changes the pruned network
    pruned = learned.pruned
    start = _finetune_start(recipe, learned, dense, run_dir, loaders)
    prune_info["finetune_from"] = recipe.structure.finetune_from
    prune_info["start_test_acc"] = (prune_info["pruned_test_acc"] if start is pruned.model
                                    else evaluate(start, loaders.test).acc)
    if finetune_now:
        compact, finetune_info = finetune(recipe, start, dense, loaders, run_dir / "finetune", resume)
    else:
        compact, finetune_info = start, {"epochs": 0, "deferred": True}
    learner = learned.learner
    group_steps = learner.grid.named_steps(learner.graph)
    _save_compact(run_dir, compact, model_arch(spec, loaders), pruned.spec, recipe.structure.round_to, group_steps)
    result = CompressResult(
        run_dir=str(run_dir), target=profile.name if profile is not None else None,
        teacher=_model_summary(dense, loaders), student=_model_summary(compact, loaders),
        blocks=block_report(learner.controller, pruned.masks, learner.grid),
        pruning=prune_info, phases={"learn": learned.learn, "finetune": finetune_info},
        model=str(run_dir / "model.pt"), program=str(run_dir / "model.pt2"), round_to=recipe.structure.round_to,
        group_steps=group_steps,
    )
    atomic_write_json(run_dir / "report.json", result.to_dict())
    if measure is not None:
        artifact = compile_for_board(run_dir / "model.pt", entry, profile, run_dir / "artifact", measure.tune_trials)
        options = BenchOptions(runs=measure.runs, min_seconds=measure.min_seconds)
        [results] = bench_tagged(entry, [artifact], [{"compress_run": str(run_dir)}], measure.repeats, options,
                                 ResultsStore(measure.results))
        result.measured = asdict(summarize(results))
        atomic_write_json(run_dir / "report.json", result.to_dict())
    return result


def _finetune_start(recipe: Recipe, learned: StructureRun, dense: nn.Module, run_dir: Path,
                    loaders: Loaders) -> nn.Module:
    """The network finetuning starts from (``structure.finetune_from``): the pruned student, or the dense teacher
    pruned to the same channels — then written over ``RUN/pruned/model.pt`` (same shapes), which a deferred or
    resumed finetune reads; the learned weights stay in ``RUN/learn/checkpoint.pt``."""
    if recipe.structure.finetune_from == "learned":
        return learned.pruned.model
    learner = learned.learner
    source = copy.deepcopy(dense).eval().requires_grad_(True)  # the frozen teacher's: pruning traces autograd
    start = prune_model(source, learner.graph, learned.pruned.masks, ownership=learner.ownership).model
    save_model(run_dir / "pruned" / "model.pt", start, model_arch(recipe.teacher.model, loaders),
               extra={"stage": "pruned", "weights": "teacher"})
    return start


def _save_compact(run_dir: Path, compact: nn.Module, arch: ModelArch, spec: dict[str, Any], round_to: int,
                  group_steps: dict[str, int] | None = None) -> None:
    save_model(run_dir / "model.pt", compact, arch, extra={"stage": "compress", "arch": spec})
    # For inference without the builder's code (a user's net.py): the traced program of the same network.
    save_program(run_dir / "model.pt2", compact, arch, extra={"stage": "compress"})
    save_arch_spec(run_dir / "arch.json", spec, round_to, group_steps)


def finetune_deferred(recipe: Recipe, run_dir: str | Path, teacher: str | Path, resume: bool = False
                      ) -> CompressResult:
    """Finetune the pruned network of a compress run made with ``finetune_now=False`` (``RUN/pruned/``), as compress
    would have, with KD from ``teacher``: rewrites ``model.pt``, ``model.pt2`` and ``report.json`` (``student``,
    ``phases.finetune``). ``resume`` continues an interrupted finetune from ``RUN/finetune/``."""
    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    loaders = build_loaders(recipe.data, recipe.seed)
    seed_everything(recipe.seed)
    dense = load_teacher(recipe, teacher, loaders).model.eval()
    pruned = load_model(run_dir / "pruned")
    spec = json.loads((run_dir / "pruned" / "arch.json").read_text())
    spec.pop("channel_multiple", None)  # save_arch_spec's additions, not the spec's
    spec.pop("group_steps", None)
    compact, info = finetune(recipe, pruned.model, dense, loaders, run_dir / "finetune", resume)
    _save_compact(run_dir, compact, pruned.arch, spec, report.get("round_to", 1), report.get("group_steps"))
    report["student"], report["phases"]["finetune"] = _model_summary(compact, loaders), info
    atomic_write_json(run_dir / "report.json", report)
    return CompressResult(**report)


def on_target_grid(recipe: Recipe, profile: TargetProfile | None) -> Recipe:
    """``recipe`` with widths rounded to ``profile``'s channel multiple, unless it sets ``structure.round_to``."""
    if profile is None or recipe.structure is None or recipe.structure.round_to != 1 or profile.channel_multiple <= 1:
        return recipe
    rounded = recipe.model_copy(deep=True)
    rounded.structure.round_to = profile.channel_multiple
    return rounded


@dataclass(frozen=True)
class MeasureOptions:
    """``compress --device``: how the compact network is compiled and benched on the board."""

    tune_trials: int = 0
    repeats: int = 3
    runs: int = 50
    min_seconds: float = 1.0
    results: str | None = None  # the results store (default: the user's)


def _board_and_target(target: str | None, device: str | None, measure: bool
                      ) -> tuple[Device | None, TargetProfile | None]:
    """The board (when measuring on one or budgeting its latency) and the target profile, validated: an unknown
    target or device, an emulated board to measure on, a target that is not the board's — one line each."""
    profile = load_target(target) if target is not None else None
    if device is None:
        return None, profile
    entry = DeviceStore().get(device)
    if measure and entry.emulated:
        raise ConfigError(f"device {entry.name} is emulated: its timings are the emulator's, not latency; compress "
                          "--device measures on a real board (or this host: --device local)")
    board_target = load_target(entry.target)
    if profile is not None and profile.name != board_target.name:
        raise ConfigError(f"compress: --target {profile.name} is not device {entry.name}'s target "
                          f"({board_target.name}); give one of them")
    return entry, board_target


def _learned_weights(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The student weights at the end of an earlier structure-learning phase (its trainer checkpoint)."""
    path = Path(checkpoint)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)["model"]
    except (OSError, KeyError, TypeError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path}: not a structure-learning checkpoint to warm-start from "
                              f"({type(err).__name__})") from None


def _pruning_info(learned: StructureRun, loaders: Loaders) -> dict:
    learner, pruned = learned.learner, learned.pruned
    masked = masked_copy(learned.student, learner.graph, pruned.masks)
    verified = _verify_surgery(masked, learned, loaders)
    info = {"verified": verified, "threshold": learner.controller.threshold, "deviation": pruned.deviation,
            "masked_test_acc": evaluate(masked, loaders.test).acc,
            "pruned_test_acc": evaluate(pruned.model, loaders.test).acc,
            "cost_model_flops": network_cost(learner.graph, learner.controller.cost_models["flops"], pruned.masks)}
    latency = learner.controller.cost_models.get("latency")
    if latency is not None:  # what the board's model predicts for the pruned network, and whose model it is
        info["predicted_latency_ms"] = latency.network_ms(learner.graph, pruned.masks)
        info["latency_model"] = latency.model.summary()
    return info


def _verify_surgery(masked: nn.Module, learned: StructureRun, loaders: Loaders) -> dict[str, Any]:
    """Refuse (one line, exit 2) a pruned network that does not compute what the masked one did on real images,
    naming the first module that differs; otherwise how closely they agree."""
    images = next(iter(loaders.test))[0][:VERIFY_IMAGES]
    pruned = learned.pruned
    masked, compact = masked.eval(), pruned.model.eval()
    verify_pruning(masked, compact, images, graph=learned.learner.graph, masks=pruned.masks)
    with torch.no_grad():
        difference = (masked(images) - compact(images)).abs().max().item()
    return {"images": len(images), "max_abs_diff": difference}


def finetune(recipe: Recipe, model: nn.Module, teacher: nn.Module | None, loaders: Loaders, run_dir: Path,
             resume: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` (a pruned network, in place) for the recipe's finetune phase, with KD from ``teacher``
    (cross-entropy when None); the best-validation weights, for inference. On resume the network is rebuilt
    from ``run_dir``'s sibling ``pruned/`` (the shapes of the checkpoint's weights)."""
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
