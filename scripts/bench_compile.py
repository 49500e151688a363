#!/usr/bin/env python
"""What folding BatchNorms before export buys: compile time and untuned (optionally tuned) TVM latency, with and
without :func:`edgekd.compile.build.fold_batch_norms`, on the same networks in one run.

Networks (batch 1, 3x32x32, random weights with calibrated BatchNorm statistics, as ``bench_runtime.py``): dense
MobileNetV2-CIFAR, ResNet-56 and the quickstart's width-0.25 MobileNetV2 (the test suite's tiny network). Each
network is compiled folded and unfolded, alternately, ``--compiles`` times (the wall time of ``compile_model``:
torch.export, TVM's passes, codegen and link); the artifacts are then timed by their own ``edgekd-runner``
(``edgekd bench --device local``, not stored) in ``--rounds`` interleaved rounds, each row the median round.
``--tune-trials N`` adds a tuned pair per network (N MetaSchedule trials each, spread over its tasks; the two
variants have different tasks, so neither reuses the other's records).

Outputs: ``<out>/results.json`` and the ``## Compile: BatchNorm folding`` section of docs/benchmarks.md::

    nice -n 10 python scripts/bench_compile.py --out runs/bench-compile
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from timing_protocol import time_artifact

from edgekd.atomic import atomic_write_json
from edgekd.compile import CompileOptions, compile_model
from edgekd.models import create_model
from edgekd.results.host import describe_host
from edgekd.results.markdown import write_section
from edgekd.testing.models import randomise_bn

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Compile: BatchNorm folding"
NETWORKS = {"mbv2": ("MobileNetV2-CIFAR (dense)", "mobilenetv2_cifar", {}),
            "resnet56": ("ResNet-56", "resnet56_cifar", {}),
            "tiny": ("MobileNetV2-CIFAR x0.25 (the tests' quickstart)", "mobilenetv2_cifar", {"width_mult": 0.25})}
VARIANTS = {"folded": True, "kept": False}


def build(key: str) -> torch.nn.Module:
    torch.manual_seed(0)
    _label, name, kwargs = NETWORKS[key]
    return randomise_bn(create_model(name, num_classes=10, **kwargs))


def bench_network(key: str, args: argparse.Namespace) -> dict:
    model = build(key)
    compile_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    artifacts: dict[str, Path] = {}
    for index in range(args.compiles):
        for variant, fold in VARIANTS.items():
            out = args.out / f"{key}-{variant}-{index}"
            started = time.perf_counter()
            artifacts[variant] = compile_model(model, "host", out, CompileOptions(
                model_name=key, onnx=False, fold_batch_norms=fold)).path
            compile_s[variant].append(round(time.perf_counter() - started, 2))
    if args.tune_trials:
        for variant, fold in VARIANTS.items():
            tuned = compile_model(model, "host", args.out / f"{key}-{variant}-tuned", CompileOptions(
                model_name=key, onnx=False, fold_batch_norms=fold, tune_trials=args.tune_trials))
            artifacts[f"{variant}, tuned"] = tuned.path
    rounds: dict[str, list[dict]] = {name: [] for name in artifacts}
    for _ in range(args.rounds):
        for name, path in artifacts.items():
            rounds[name].append(time_artifact(path, args.threads))
    latency = {name: sorted(rows, key=lambda row: row["p50"])[len(rows) // 2] | {"round_p50s": [r["p50"] for r in rows]}
               for name, rows in rounds.items()}
    return {"key": key, "label": NETWORKS[key][0], "compile_s": compile_s, "latency_ms": latency}


def render(results: dict) -> str:
    lines = [f"Host: {results['host']}, {results['threads']} threads, batch 1, untuned unless marked. Compile: wall "
             "seconds of `compile_model` (untuned, no ONNX), folded and kept alternately; latency: p50 (ms) by the "
             "artifact's `edgekd-runner`, the median of interleaved rounds. The machine is shared: compare rows of "
             "the same run only.", "", f"Command: `{results['command']}`", "",
             "| network | BatchNorms | compile s (each) | p50 ms (rounds) | max abs err vs PyTorch |",
             "|---|---|---|---|---|"]
    for net in results["networks"]:
        for name, row in net["latency_ms"].items():
            variant = name.split(",")[0]
            seconds = ", ".join(f"{s:.1f}" for s in net["compile_s"][variant]) if "tuned" not in name else ""
            rounds = ", ".join(f"{p:.3f}" for p in row["round_p50s"])
            lines.append(f"| {net['label']} | {name} | {seconds} | **{row['p50']:.3f}** ({rounds}) "
                         f"| {row['max_abs_err']:.2g} |")
    lines.append("")
    for net in results["networks"]:
        folded, kept = statistics.median(net["compile_s"]["folded"]), statistics.median(net["compile_s"]["kept"])
        speed = net["latency_ms"]["folded"]["p50"] / net["latency_ms"]["kept"]["p50"]
        lines.append(f"- {net['label']}: folding takes compile time to **{folded / kept:.2f}x** ({folded:.1f} s vs "
                     f"{kept:.1f} s) and untuned p50 to **{speed:.2f}x**.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-compile")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated of {', '.join(NETWORKS)}")
    parser.add_argument("--compiles", type=int, default=2, help="compiles of each variant (alternating)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tune-trials", type=int, default=0, help="also tune each variant (0: untuned only)")
    args = parser.parse_args(argv)
    keys = [k for k in args.networks.split(",") if k]
    unknown = sorted(set(keys) - set(NETWORKS))
    if unknown:
        parser.error(f"--networks: unknown {', '.join(unknown)}; accepted: {', '.join(NETWORKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python scripts/bench_compile.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    results = {"host": describe_host(), "threads": args.threads, "command": command.strip(), "networks": []}
    for key in keys:
        print(f"== {NETWORKS[key][0]}", flush=True)
        results["networks"].append(bench_network(key, args))
        atomic_write_json(args.out / "results.json", results)
        write_section(args.docs, SECTION, render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
