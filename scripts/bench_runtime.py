#!/usr/bin/env python
"""Host runtime benchmark: untuned TVM, tuned TVM, PyTorch eager and ONNX Runtime on the same networks.

Networks (batch 1, 3x32x32, random weights with calibrated BatchNorm statistics — latency does not depend on
the weight values, and calibration keeps activations away from denormals):
dense MobileNetV2-CIFAR, a compressed MobileNetV2-CIFAR (``--compressed PATH`` to a saved model, else the
uniformly thinned width 0.5 stand-in) and ResNet-56. All runtimes use the same thread count. TVM latency is
measured by the artifact's own ``edgekd-runner`` (the binary shipped to boards); PyTorch and ONNX Runtime by
the same protocol in Python (warm-up >= 1 run and >= 0.5 s, then >= 50 runs and >= 1 s; TFLite-style stats).

Outputs: ``<out>/results.json`` (rewritten after every step, so a partial run is readable) and the
``## Runtime`` section of docs/benchmarks.md (only that section is replaced). Example::

    nice -n 10 python scripts/bench_runtime.py --trials-per-task 32 --out runs/bench-runtime
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.atomic import atomic_write_json
from edgekd.compile import CompileOptions, compile_model
from edgekd.models import create_model
from edgekd.results.host import describe_host
from edgekd.results.markdown import write_section
from edgekd.testing.models import randomise_bn

ROOT = Path(__file__).resolve().parent.parent

WARMUP_SECONDS, MIN_RUNS, MIN_SECONDS = 0.5, 50, 1.0
SECTION = "## Runtime"


@dataclass(frozen=True)
class Network:
    key: str
    label: str
    build: object  # () -> nn.Module
    tasks_hint: int


def networks(compressed: str | None) -> list[Network]:
    def zoo(name: str, **kwargs) -> nn.Module:
        torch.manual_seed(0)
        return randomise_bn(create_model(name, num_classes=10, **kwargs))

    def compressed_model() -> nn.Module:
        if compressed:
            from edgekd.models.io import load_model

            return load_model(compressed).model.eval()
        return zoo("mobilenetv2_cifar", width_mult=0.5)

    label = f"MobileNetV2-CIFAR compressed ({compressed})" if compressed else \
        "MobileNetV2-CIFAR x0.5 (thinned stand-in for a compressed model)"
    return [
        Network("mbv2", "MobileNetV2-CIFAR (dense)", lambda: zoo("mobilenetv2_cifar"), 33),
        Network("resnet56", "ResNet-56", lambda: zoo("resnet56_cifar"), 12),
        Network("mbv2_compressed", label, compressed_model, 33),
    ]


def stats(samples_ms: list[float]) -> dict[str, float]:
    values = np.sort(np.asarray(samples_ms))

    def rank(q: float) -> float:
        return float(values[max(1, min(len(values), int(np.ceil(q * len(values))))) - 1])

    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values[0]), "p50": rank(0.5), "p90": rank(0.9), "p95": rank(0.95), "p99": rank(0.99),
            "max": float(values[-1]), "runs": len(values)}


def time_callable(run) -> dict[str, float]:
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < WARMUP_SECONDS:
        run()
    samples: list[float] = []
    timed_start = time.perf_counter()
    while len(samples) < MIN_RUNS or time.perf_counter() - timed_start < MIN_SECONDS:
        begin = time.perf_counter()
        run()
        samples.append((time.perf_counter() - begin) * 1e3)
    return stats(samples)


def bench_torch(model: nn.Module, example: np.ndarray, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    tensor = torch.from_numpy(example)
    with torch.inference_mode():
        return time_callable(lambda: model(tensor))


def bench_onnxruntime(onnx_path: Path, example: np.ndarray, threads: int) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return time_callable(lambda: session.run(None, {"x": example}))


def bench_tvm(artifact: Path, threads: int) -> dict[str, float]:
    """The artifact timed by its own ``edgekd-runner`` through ``edgekd bench --device local`` (not stored)."""
    from edgekd import api

    options = api.BenchOptions(threads=threads, runs=MIN_RUNS, min_seconds=MIN_SECONDS,
                               warmup_seconds=WARMUP_SECONDS, idle_seconds=0.0, power=False)
    [result] = api.bench(artifact, device="local", options=options, store=False)
    return result.timing_ms | {"runs": result.runner["runs"], "max_abs_err": result.max_abs_diff}


def measure_rounds(contenders: dict, rounds: int) -> dict[str, dict]:
    """Measure every runtime once per round, interleaved; keep each runtime's median-mean round.

    The machine is shared: interleaving spreads other jobs' load over all runtimes alike.
    """
    per_runtime: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, measure in contenders.items():
            per_runtime[name].append(measure())
    chosen = {}
    for name, runs in per_runtime.items():
        ordered = sorted(runs, key=lambda row: row["mean"])
        chosen[name] = ordered[len(ordered) // 2] | {"rounds": rounds,
                                                      "round_means": [round(r["mean"], 3) for r in runs]}
    return chosen


def render(results: dict) -> str:
    lines = [f"Host: {results['host']}, {results['threads']} threads for every runtime, batch 1, 3x32x32 float32. "
             "Latency in ms, TFLite-style protocol (warm-up >= 1 run and >= 0.5 s; then >= 50 runs and >= 1 s). "
             "TVM is timed by the artifact's `edgekd-runner`; PyTorch eager and ONNX Runtime in Python. "
             "The machine is shared (2 cores, other jobs running): runtimes are measured in interleaved rounds "
             "and each row is the round with the median mean; compare rows of the same run only.", "",
             f"Command: `{results['command']}`", "",
             "| network | runtime | mean | p50 | p90 | p99 | std | tuned trials (per task) | tuning time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for net in results["networks"]:
        for runtime, row in net["runtimes"].items():
            tuning = row.get("tuning")
            trials = f"{tuning['trials']} ({tuning['per_task']})" if tuning else ""
            seconds = f"{tuning['seconds'] / 60:.1f} min" if tuning else ""
            lines.append(f"| {net['label']} | {runtime} | {row['mean']:.3f} | {row['p50']:.3f} | {row['p90']:.3f} "
                         f"| {row['p99']:.3f} | {row['std']:.3f} | {trials} | {seconds} |")
    lines.append("")
    for net in results["networks"]:
        rt = net["runtimes"]
        if "TVM tuned" in rt and "ONNX Runtime" in rt:
            ratio = rt["TVM tuned"]["mean"] / rt["ONNX Runtime"]["mean"]
            tuning = rt["TVM tuned"]["tuning"]
            untuned_ratio = rt["TVM untuned"]["mean"] / rt["ONNX Runtime"]["mean"]
            lines.append(f"- {net['label']}: tuned TVM / ONNX Runtime = **{ratio:.2f}** "
                         f"(untuned TVM / ONNX Runtime = {untuned_ratio:.1f}); "
                         f"{tuning['tasks']} tasks, {tuning['tasks_tuned']} tuned, {tuning['tasks_reused']} reused "
                         f"from the target's database.")
    if results.get("reuse"):
        reuse = results["reuse"]
        lines.append(f"- Database reuse: recompiling {reuse['network']} with the same `--tune-trials` took "
                     f"{reuse['second_s']:.1f} s vs {reuse['first_s']:.1f} s the first time "
                     f"({100 * reuse['second_s'] / reuse['first_s']:.1f}%), {reuse['measured']} new measurements.")
    return "\n".join(lines) + "\n"


def write_docs(results: dict, docs: Path) -> None:
    write_section(docs, SECTION, render(results))


def bench_network(net: Network, args: argparse.Namespace, results: dict) -> None:
    """Untuned compile + measure, tuned compile + interleaved re-measure; results saved after each step."""
    print(f"== {net.label}", flush=True)
    model = net.build()
    entry = {"key": net.key, "label": net.label, "runtimes": {}}
    earlier = next((n for n in results["networks"] if n["key"] == net.key), None)
    earlier_tuning = (earlier or {}).get("runtimes", {}).get("TVM tuned", {}).get("tuning")
    results["networks"] = [n for n in results["networks"] if n["key"] != net.key] + [entry]
    untuned = compile_model(model, "host", args.out / f"{net.key}-untuned", CompileOptions(model_name=net.key))
    example = np.fromfile(untuned.path / "input.bin", np.float32).reshape(untuned.manifest.input.shape)
    contenders = {"PyTorch eager": lambda: bench_torch(model, example, args.threads),
                  "ONNX Runtime": lambda: bench_onnxruntime(untuned.path / "model.onnx", example, args.threads),
                  "TVM untuned": lambda: bench_tvm(untuned.path, args.threads)}
    entry["runtimes"].update(measure_rounds(contenders, args.rounds))
    save(results, args)
    trials = per_task_budget(args, net.key) * net.tasks_hint
    minutes = override(args.minutes, net.key, args.tune_minutes)
    tuned = compile_model(model, "host", args.out / f"{net.key}-tuned",
                          CompileOptions(model_name=net.key, tune_trials=trials, tune_max_minutes=minutes,
                                         onnx=False))
    tuning = tuned.manifest.tuning
    contenders["TVM tuned"] = lambda: bench_tvm(tuned.path, args.threads)
    entry["runtimes"].update(measure_rounds(contenders, args.rounds))  # re-measure all, interleaved
    entry["runtimes"]["TVM tuned"]["tuning"] = {
        "trials": tuning.trials, "per_task": tuning.trials // max(1, tuning.tasks_tuned),
        "seconds": tuning.seconds, "max_minutes": minutes, "tasks": tuning.tasks, "tasks_tuned": tuning.tasks_tuned,
        "tasks_reused": tuning.tasks_reused, "compile_s": tuned.seconds}
    if tuning.tasks_tuned == 0 and earlier_tuning:  # every record reused: report the run that tuned them
        entry["runtimes"]["TVM tuned"]["tuning"] = earlier_tuning | {"recompile_s": tuned.seconds}
    if net.key == "mbv2" and tuning.tasks_tuned > 0:  # only a compile that tuned is a fair "first" time
        again = compile_model(model, "host", args.out / f"{net.key}-tuned-again",
                              CompileOptions(model_name=net.key, tune_trials=trials, onnx=False))
        results["reuse"] = {"network": net.label, "first_s": tuned.seconds, "second_s": again.seconds,
                            "measured": again.tuning_measured}
    save(results, args)


def save(results: dict, args: argparse.Namespace) -> None:
    atomic_write_json(args.out / "results.json", results)
    write_docs(results, args.docs)
    print(json.dumps(results["networks"][-1], indent=1), flush=True)


def override(items: list[str], key: str, default: float | None) -> float | None:
    """Value of ``KEY=N`` for ``key`` among ``items``, else ``default``."""
    values = dict(item.split("=", 1) for item in items)
    return float(values[key]) if key in values else default


def per_task_budget(args: argparse.Namespace, key: str) -> int:
    return int(override(args.per_network, key, args.trials_per_task))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-runtime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials-per-task", type=int, default=32,
                        help="tuning budget per task; --tune-trials passed to compile = this x the task estimate")
    parser.add_argument("--per-network", action="append", default=[], metavar="KEY=N",
                        help="trials per task for one network, e.g. mbv2_compressed=8 (repeatable)")
    parser.add_argument("--tune-minutes", type=float, default=None, help="tuning time cap per network")
    parser.add_argument("--minutes", action="append", default=[], metavar="KEY=M",
                        help="tuning time cap for one network, e.g. resnet56=12 (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (median kept)")
    parser.add_argument("--networks", default="mbv2,resnet56,mbv2_compressed")
    parser.add_argument("--compressed", default=None, help="saved compact model (run dir or .pt)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python scripts/bench_runtime.py " + " ".join(argv if argv is not None else sys.argv[1:])
    previous = args.out / "results.json"
    results = json.loads(previous.read_text()) if previous.is_file() else {"networks": []}
    results.update({"host": describe_host(), "threads": args.threads})
    results["command"] = command if "command" not in results else f"{results['command']}; then {command}"
    wanted = args.networks.split(",")
    for net in [n for n in networks(args.compressed) if n.key in wanted]:
        bench_network(net, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
