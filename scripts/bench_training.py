"""Training throughput on this machine: epoch time at batch 128 for ResNet-20, ResNet-56 and
MobileNetV2-CIFAR (plain cross-entropy), KD training throughput relative to plain training, and the
cost of a structure-learning step (KD + per-block λ controller + proximal γ step) relative to KD.

Steady-state images/s is measured over ``--steps`` optimizer steps after ``--warmup`` steps (real
CIFAR-10 batches with augmentation, channels_last, SGD), and an epoch of 50,000 images is extrapolated.

    .venv/bin/python scripts/bench_training.py --data ../shared/data --threads 2

Writes the ``## Training`` section of docs/benchmarks.md (``--docs``; only that section is replaced) and,
with ``--out FILE``, the raw rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgekd.config.recipe import DataConfig, DistillConfig, TrainingConfig
from edgekd.data import build_loaders
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective
from edgekd.learn.engine import build_optimizer
from edgekd.models import create_model
from edgekd.results.host import describe_host
from edgekd.results.markdown import write_section

MODELS = {"resnet20": ("resnet20_cifar", {}), "resnet56": ("resnet56_cifar", {}),
          "mobilenetv2": ("mobilenetv2_cifar", {})}


def images_per_second(model, objective, loader, warmup: int, steps: int, after_step=None) -> float:
    model.train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(list(model.named_parameters()) + [("r", p) for p in objective.extra_parameters()],
                                TrainingConfig(lr=0.01))
    batches = iter(loader)
    started, seen = None, 0
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        images, targets = next(batches)
        images = images.contiguous(memory_format=torch.channels_last)
        loss, _, _ = objective(model, images, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(optimizer)
        seen += targets.numel() if step >= warmup else 0
    return seen / (time.perf_counter() - started)


def structure_row(teacher, loaders, args, kd_ips: float) -> dict:
    """KD + structure learning (the per-step controller and proximal γ update) on the same student."""
    from edgekd.config.recipe import load_recipe
    from edgekd.pipeline.compress import structure_cost_models
    from edgekd.structure.learner import StructureLearner

    recipe = load_recipe("mbv2")
    student = create_model("mobilenetv2_cifar", width_mult=0.5)
    learner = StructureLearner(student, recipe.structure, (1, 3, 32, 32), cost_models=structure_cost_models(recipe))
    objective = learner.objective(DistillationObjective(teacher, DistillConfig()))
    ips = images_per_second(student, objective, loaders.train, args.warmup, args.steps,
                            after_step=lambda opt: learner.callback.controller.step(opt.param_groups[0]["lr"]))
    return {"model": "mobilenetv2x0.5 <- mobilenetv2 teacher", "mode": "kd+structure", "images_per_second": ips,
            "epoch_50k_min": 50000 / ips / 60, "structure_over_kd_time": kd_ips / ips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="also write the raw rows to this JSON file")
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaders = build_loaders(DataConfig(dataset="cifar10", root=args.data, batch_size=args.batch, workers=0,
                                       train_subset=args.batch * (args.warmup + args.steps + 1)), seed=0)
    rows = []
    for label, (name, kwargs) in MODELS.items():
        torch.manual_seed(0)
        plain = images_per_second(create_model(name, **kwargs), CrossEntropyObjective(), loaders.train,
                                  args.warmup, args.steps)
        rows.append({"model": label, "mode": "plain", "images_per_second": plain, "epoch_50k_min": 50000 / plain / 60})
        print(json.dumps(rows[-1]), flush=True)
    teacher = create_model("mobilenetv2_cifar").eval()
    student = create_model("mobilenetv2_cifar", width_mult=0.5)
    plain = images_per_second(create_model("mobilenetv2_cifar", width_mult=0.5), CrossEntropyObjective(),
                              loaders.train, args.warmup, args.steps)
    kd = images_per_second(student, DistillationObjective(teacher, DistillConfig()), loaders.train,
                           args.warmup, args.steps)
    rows.append({"model": "mobilenetv2x0.5 <- mobilenetv2 teacher", "mode": "plain", "images_per_second": plain,
                 "epoch_50k_min": 50000 / plain / 60})
    rows.append({"model": "mobilenetv2x0.5 <- mobilenetv2 teacher", "mode": "kd", "images_per_second": kd,
                 "epoch_50k_min": 50000 / kd / 60, "kd_over_plain_throughput": kd / plain})
    print(json.dumps(rows[-1]), flush=True)
    rows.append(structure_row(teacher, loaders, args, kd))
    print(json.dumps(rows[-1]), flush=True)
    report = {"machine": describe_host(), "threads": args.threads, "batch": args.batch,
              "steps": args.steps, "torch": torch.__version__, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    write_section(args.docs, "## Training", render(report, args))


def render(report: dict, args: argparse.Namespace) -> str:
    command = (f".venv/bin/python scripts/bench_training.py --data {args.data} --threads {args.threads} "
               f"--batch {args.batch} --warmup {args.warmup} --steps {args.steps}")
    lines = [f"{report['machine']}, {report['threads']} threads, batch {report['batch']}, torch {report['torch']}, "
             "channels_last, SGD; real CIFAR-10 batches with augmentation. Images/s is measured over "
             f"{report['steps']} optimizer steps after {args.warmup} warm-up steps; the epoch time (50,000 images) "
             "is extrapolated from it.", "", f"Command: `{command}`", "",
             "| model | mode | images/s | epoch of 50k images (min) | ratio |", "|---|---|---|---|---|"]
    for row in report["rows"]:
        ratio = ""
        if "kd_over_plain_throughput" in row:
            ratio = f"KD / plain throughput = {row['kd_over_plain_throughput']:.2f}"
        elif "structure_over_kd_time" in row:
            ratio = f"structure-learning step time / KD step time = {row['structure_over_kd_time']:.2f}"
        lines.append(f"| {row['model']} | {row['mode']} | {row['images_per_second']:.1f} | "
                     f"{row['epoch_50k_min']:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
