"""Honest compression baselines on CIFAR-10 at CPU scale, beside edgekd.

    .venv/bin/python scripts/bench_compression.py [--data ../shared/data] [--out runs/bench_compression]
                                                  [--seeds 0 1 2] [--steps 300] [--report-only]

Methods (MobileNetV2-CIFAR ×0.5 teacher, 2× FLOP reduction, every student gets the same number of
optimizer steps, 2·STEPS, batch 64):

* ``edgekd``            — student = teacher; STEPS structure learning with KD and per-stage budgets
                          (stages 2..7 + head, one fraction chosen so the whole network is at 0.5× FLOPs), prune,
                          STEPS finetuning with KD.
* ``uniform_kd``        — uniform width multiplier at matched FLOPs, 2·STEPS with KD from scratch.
* ``uniform``           — the same without KD.
* ``morphnet_nokd``     — MorphNet: one global λ-controlled FLOP budget, cross-entropy only, STEPS
                          learning, then the learned widths retrained from scratch for STEPS.

``edgekd`` and ``morphnet_nokd`` run through the compress pipeline's own functions
(:func:`edgekd.pipeline.compress.learn_and_prune`, :func:`~edgekd.pipeline.compress.finetune`) with an
in-memory recipe per cell, so the benchmark measures what ``edgekd compress`` does.

Each finished cell is written to ``OUT/cells/<method>-s<seed>.json`` (a rerun skips it), and the table
(test accuracy on the held-out split 40000..49999, FLOPs, params, wall time; mean ± std over seeds) is
rewritten into the ``## Compression`` section of ``docs/benchmarks.md`` (``--docs``) after every cell.
A smoke run that leaves the real report alone: ``--steps 2 --teacher-steps 4 --train-subset 1200
--test-subset 64 --seeds 0 --out /tmp/bc --docs /tmp/bc/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.atomic import atomic_write_json  # noqa: E402
from edgekd.config.recipe import (  # noqa: E402
    BlockBudget,
    DataConfig,
    DistillConfig,
    GlobalBudget,
    ModelSpec,
    PhaseConfig,
    Recipe,
    StructureConfig,
    TeacherConfig,
    TrainingConfig,
)
from edgekd.data import build_loaders  # noqa: E402
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective  # noqa: E402
from edgekd.learn.engine import Trainer, evaluate, seed_everything  # noqa: E402
from edgekd.models import create_model  # noqa: E402
from edgekd.models.counting import count_model  # noqa: E402
from edgekd.models.io import ModelArch, load_model, save_model  # noqa: E402
from edgekd.pipeline.compress import finetune, learn_and_prune, learn_structure  # noqa: E402
from edgekd.results.markdown import write_section  # noqa: E402
from edgekd.structure.costs import FlopCost, block_costs  # noqa: E402
from edgekd.structure.groups import dense_masks, trace_groups  # noqa: E402
from edgekd.structure.ownership import assign_blocks  # noqa: E402
from edgekd.structure.report import block_report  # noqa: E402

TEACHER = ("mobilenetv2_cifar", {"width_mult": 0.5})
METHODS = ("edgekd", "uniform_kd", "uniform", "morphnet_nokd")
TARGET = 0.5  # FLOPs of the student / FLOPs of the dense teacher
SECTION = "## Compression"


def training_cfg(steps: int, lr: float, schedule: str) -> TrainingConfig:
    return TrainingConfig(epochs=1, lr=lr, schedule=schedule, max_steps_per_epoch=steps, weight_decay=4e-5,
                          channels_last=True, warmup_epochs=0)


def teacher_model(args, loaders) -> nn.Module:
    path = args.out / "teacher" / "model.pt"
    if path.exists():
        return load_model(path).model
    seed_everything(0)
    model = create_model(TEACHER[0], **TEACHER[1])
    epochs = max(1, args.teacher_steps // len(loaders.train))
    cfg = TrainingConfig(epochs=epochs, lr=0.1, schedule="onecycle", weight_decay=4e-5, channels_last=True,
                         max_steps_per_epoch=min(len(loaders.train), args.teacher_steps))
    trainer = Trainer(model, loaders, cfg, args.out / "teacher", objective=CrossEntropyObjective(), resume=True)
    trainer.fit()
    model = trainer.model.cpu().to(memory_format=torch.contiguous_format).eval()
    save_model(path, model, ModelArch(TEACHER[0], TEACHER[1]))
    return model


def uniform_width(teacher_flops: int) -> dict:
    """The width multiplier (channels rounded to multiples of 8, else 4, else 2) whose FLOPs are closest to
    TARGET × the teacher's; the coarser rounding is kept when it already lands within ±1%."""
    best = None
    for divisor in (8, 4, 2):
        ratio, width = min(
            (abs(count_model(create_model(TEACHER[0], width_mult=w / 1000, divisor=divisor)).flops / teacher_flops
                 - TARGET), w) for w in range(250, 500, 5))
        if best is None or ratio < best[0]:
            best = (ratio, {"width_mult": width / 1000, "divisor": divisor})
        if best[0] <= 0.01 * TARGET:
            break
    return best[1]


def stage_blocks(teacher: nn.Module, teacher_flops: int) -> list[BlockBudget]:
    """Stages 2..7 and the head with one fraction, so that the whole network lands at TARGET × FLOPs.

    The stem and stage 1 (small, and first in line for every later op) stay dense: ops no block covers are
    frozen, and so is everything they write, so their cost is constant. Every other op is in a block — an
    op outside every block but reading a pruned group (the head conv reads stage 7) would shrink uncontrolled.
    """
    stages = {k: v for k, v in teacher.stage_modules().items() if k not in ("stem", "stage1")}
    blocks = [BlockBudget(name=k, modules=v, flops=1.0) for k, v in stages.items()]
    graph = trace_groups(teacher)
    costs = block_costs(graph, FlopCost(), dense_masks(graph), assign_blocks(graph, blocks))
    covered = sum(costs.get(k, 0.0) for k in stages)
    fraction = (TARGET * teacher_flops - (teacher_flops - covered)) / covered
    return [BlockBudget(name=k, modules=v, flops=round(fraction, 4)) for k, v in stages.items()]


def bench_recipe(args, method: str, seed: int, structure: StructureConfig) -> Recipe:
    """The in-memory recipe the pipeline runs a cell with: the teacher's architecture, KD at T = 4, α = 0.9,
    the cell's ``structure`` (its learn / finetune phases: one epoch of STEPS optimizer steps each)."""
    return Recipe(name=f"bench-compression-{method}", seed=seed, data=args.data_config,
                  teacher=TeacherConfig(model=ModelSpec(name=TEACHER[0], kwargs=TEACHER[1])),
                  training=training_cfg(args.steps, 0.05, "cosine"),
                  distill=DistillConfig(temperature=4.0, alpha=0.9), structure=structure)


def phases(finetune_lr: float) -> dict[str, PhaseConfig]:
    """STEPS of structure learning at a fixed lr 0.02, then STEPS of (fine)tuning with a cosine schedule."""
    return {"learn": PhaseConfig(epochs=1, lr=0.02, schedule="constant"),
            "finetune": PhaseConfig(epochs=1, lr=finetune_lr, schedule="cosine")}


def kd(teacher, student):
    return DistillationObjective(teacher, DistillConfig(temperature=4.0, alpha=0.9), student,
                                 torch.zeros(1, 3, 32, 32))


def train(model, loaders, steps, objective, run_dir, seed, lr=0.05, schedule="cosine"):
    """A uniform-width student from scratch; ``seed`` drives the data order and augmentation (the Trainer
    reseeds every RNG with it)."""
    trainer = Trainer(model, loaders, training_cfg(steps, lr, schedule), run_dir, objective=objective,
                      description=run_dir.name, seed=seed)
    trainer.fit()
    return trainer.model.cpu().to(memory_format=torch.contiguous_format).eval()


def reinitialise(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    return model


def run_cell(method, seed, args, loaders, teacher, teacher_flops):
    seed_everything(seed)
    run_dir = args.out / "runs" / f"{method}-s{seed}"
    steps = args.steps
    kwargs = dict(TEACHER[1])
    started = time.perf_counter()
    if method == "edgekd":  # the compress pipeline: learn with KD → prune → finetune with KD
        structure = StructureConfig(blocks=stage_blocks(teacher, teacher_flops), lambda_rate=0.5, update_every=5,
                                    **phases(finetune_lr=0.02))
        recipe = bench_recipe(args, method, seed, structure)
        student = copy.deepcopy(teacher).requires_grad_(True)  # KD objectives freeze the teacher's grads
        learned = learn_and_prune(recipe, student, teacher, loaders, run_dir)
        final, _ = finetune(recipe, learned.pruned.model, teacher, loaders, run_dir / "finetune")
    elif method in ("uniform", "uniform_kd"):
        kwargs = uniform_width(teacher_flops)
        student = create_model(TEACHER[0], **kwargs)
        objective = kd(teacher, student) if method == "uniform_kd" else CrossEntropyObjective()
        final = train(student, loaders, 2 * steps, objective, run_dir / "train", seed)
    else:
        structure = StructureConfig(global_budget=GlobalBudget(flops=TARGET), default="free", lambda_rate=0.5,
                                    update_every=5, **phases(finetune_lr=0.05))
        recipe = bench_recipe(args, method, seed, structure)
        student = copy.deepcopy(teacher).requires_grad_(True)  # KD objectives freeze the teacher's grads
        learned = learn_and_prune(recipe, student, None, loaders, run_dir)  # no teacher: cross-entropy
        final, _ = finetune(recipe, reinitialise(learned.pruned.model), None, loaders, run_dir / "retrain")
    save_model(run_dir / "model.pt", final, ModelArch(TEACHER[0], kwargs))  # pruned widths load by shape
    count = count_model(final)
    return {"method": method, "seed": seed, "test_acc": evaluate(final, loaders.test).acc, "flops": count.flops,
            "params": count.params, "flops_ratio": count.flops / teacher_flops, "optimizer_steps": 2 * steps,
            "seconds": time.perf_counter() - started}


MIXED = (("stage3", {"frozen": True}), ("stage4", {"flops": 0.5}), ("stage5", {"flops": 0.7}))


def run_mixed_budgets(args, loaders, teacher) -> dict:
    """Structure learning (STEPS steps, KD) with budgets frozen / 0.5 / 0.7 on three stages (other ops frozen).

    Reports each block's final FLOPs against its budget after pruning with the one global τ.
    """
    seed_everything(0)
    stages = teacher.stage_modules()
    blocks = [BlockBudget(name=name, modules=stages[name], **budget) for name, budget in MIXED]
    structure = StructureConfig(blocks=blocks, lambda_rate=0.5, update_every=5, **phases(finetune_lr=0.02))
    student = copy.deepcopy(teacher).requires_grad_(True)
    learner, _ = learn_structure(bench_recipe(args, "mixed", 0, structure), student, teacher, loaders,
                                 args.out / "runs" / "mixed-learn")
    return {"blocks": block_report(learner.controller, learner.final_masks()), "steps": args.steps}


def fmt(values, scale=1.0, digits=2):
    if not values:
        return "-"
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_report(args, teacher_row):
    cells = [json.loads(p.read_text()) for p in sorted((args.out / "cells").glob("*.json"))]
    lines = [f"CPU scale: teacher {TEACHER[0]} x{TEACHER[1]['width_mult']} trained {args.teacher_steps} steps "
             f"(one-cycle, batch 64) on {args.train_subset} CIFAR-10 training images (1,000 of them held out for "
             f"validation); every student gets {2 * args.steps} optimizer steps at batch 64 on the same images; "
             f"test = the held-out split (images 40000..49999, first {args.test_subset}). Target: 2x fewer FLOPs "
             "than the teacher, every method matched within ±3%.", "",
             "- `edgekd`: student = the teacher; STEPS steps of structure learning with KD (T = 4, α = 0.9) and "
             "per-block FLOP budgets (stages 2..7 and the head; stem and stage 1 dense), prune, STEPS steps of KD "
             "finetuning.",
             "- `uniform_kd` / `uniform`: the width multiplier whose FLOPs match, trained from scratch for 2·STEPS "
             "steps with / without KD from the same teacher.",
             "- `morphnet_nokd`: MorphNet as its README prescribes — one global FLOP budget (one λ), cross-entropy "
             "only, STEPS steps of learning, then the learned widths retrained from scratch for STEPS steps.", "",
             f"Command: `nice -n 10 .venv/bin/python scripts/bench_compression.py --steps {args.steps} "
             f"--teacher-steps {args.teacher_steps} --train-subset {args.train_subset} "
             f"--test-subset {args.test_subset}` (STEPS = {args.steps}; cells are cached in "
             "`runs/bench_compression/cells/`).", "",
             "| method | seeds | test acc (%) | FLOPs (M) | FLOPs / teacher | params (k) | wall time (s) |",
             "|---|---|---|---|---|---|---|"]
    if teacher_row:
        lines.append(f"| dense teacher | 1 | {100 * teacher_row['test_acc']:.2f} | {teacher_row['flops'] / 1e6:.2f} | "
                     f"1.000 | {teacher_row['params'] / 1e3:.1f} | - |")
    for method in METHODS:
        rows = [c for c in cells if c["method"] == method]
        if rows:
            lines.append(f"| {method} | {len(rows)} | {fmt([r['test_acc'] for r in rows], 100)} | "
                         f"{fmt([r['flops'] for r in rows], 1e-6)} | {fmt([r['flops_ratio'] for r in rows], 1, 3)} | "
                         f"{fmt([r['params'] for r in rows], 1e-3, 1)} | {fmt([r['seconds'] for r in rows], 1, 0)} |")
    lines += ["", *block_attainment(args), *mixed_lines(args)]
    if args.note:
        lines += ["", args.note]
    write_section(args.docs, SECTION, "\n".join(lines))


def mixed_lines(args) -> list[str]:
    path = args.out / "mixed.json"
    if not path.is_file():
        return []
    mixed = json.loads(path.read_text())
    parts = []
    for block in mixed["blocks"]:
        if block["frozen"]:
            parts.append(f"{block['name']} frozen: {block['channels_before']} → {block['channels_after']} channels")
        else:
            budget = block["budget"]["flops"]
            fraction = budget / block["dense_flops"]
            parts.append(f"{block['name']} budget {budget / 1e6:.2f} M (= {fraction:.2f} of dense): "
                         f"{block['flops'] / 1e6:.2f} M ({block['flops'] / budget - 1:+.1%})")
    return ["", f"Mixed per-block budgets at this scale (`--mixed-budgets`: {mixed['steps']} steps of KD structure "
            "learning from the same teacher, one τ, other ops frozen): " + "; ".join(parts) + "."]


def block_attainment(args) -> list[str]:
    """Per block of the edgekd cells: final alive FLOPs / budget at the end of structure learning."""
    ratios: dict[str, list[float]] = {}
    for metrics in sorted((args.out / "runs").glob("edgekd-s*/learn/metrics.jsonl")):
        last = json.loads(metrics.read_text().splitlines()[-1])
        for key, budget in last.items():
            if key.startswith("block/") and key.endswith("/flops_budget"):
                name = key.split("/")[1]
                ratios.setdefault(name, []).append(last[f"block/{name}/flops"] / budget)
    if not ratios:
        return []
    cells = ", ".join(f"{name} {min(r):.3f}–{max(r):.3f}" for name, r in ratios.items())
    return [f"Per-block budgets (edgekd, one τ = 0.01 for the whole network, no threshold search): final FLOPs / "
            f"budget over the seeds — {cells}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_compression")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--teacher-steps", type=int, default=1500)
    parser.add_argument("--train-subset", type=int, default=20000)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="the Markdown file whose '## Compression' section is rewritten")
    parser.add_argument("--note", default="", help="a sentence appended to the section (e.g. measurement caveats)")
    parser.add_argument("--mixed-budgets", action="store_true",
                        help="only run structure learning with budgets frozen/0.5/0.7 on stages 3/4/5 and report it")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = DataConfig(dataset="cifar10", root=args.data, val_size=1000, train_subset=args.train_subset,
                      test_subset=args.test_subset, batch_size=64, workers=0)
    args.data_config = data
    loaders = build_loaders(data, 0)
    teacher_file = args.out / "teacher.json"
    if args.report_only:
        write_report(args, json.loads(teacher_file.read_text()) if teacher_file.exists() else None)
        return
    teacher = teacher_model(args, loaders).eval()
    count = count_model(teacher)
    if not teacher_file.exists():
        atomic_write_json(teacher_file, {"test_acc": evaluate(teacher, loaders.test).acc, "flops": count.flops,
                                         "params": count.params})
    teacher_row = json.loads(teacher_file.read_text())
    if args.mixed_budgets:
        atomic_write_json(args.out / "mixed.json", run_mixed_budgets(args, loaders, teacher))
        write_report(args, teacher_row)
        return
    for seed in args.seeds:
        for method in METHODS:
            cell = args.out / "cells" / f"{method}-s{seed}.json"
            if cell.exists():
                continue
            row = run_cell(method, seed, args, loaders, teacher, count.flops)
            atomic_write_json(cell, row)
            print(json.dumps(row), flush=True)
            write_report(args, teacher_row)


if __name__ == "__main__":
    main()
