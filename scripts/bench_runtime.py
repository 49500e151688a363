#!/usr/bin/env python
"""Host runtime benchmark: untuned TVM, tuned TVM, PyTorch eager and ONNX Runtime on the same networks.

Networks (batch 1, 3x32x32, random weights with calibrated BatchNorm statistics — latency does not depend on
the weight values, and calibration keeps activations away from denormals):
dense MobileNetV2-CIFAR, a compressed MobileNetV2-CIFAR (``--compressed PATH`` to a saved model, else the
uniformly thinned width 0.5 stand-in) and ResNet-56. All runtimes use the same thread count. TVM latency is
measured by the artifact's own ``edgekd-runner`` (the binary shipped to boards); PyTorch and ONNX Runtime by
the same protocol in Python (warm-up >= 1 run and >= 0.5 s, then >= 50 runs and >= 1 s; TFLite-style stats).

Two figures besides the table (issue 11): **SSH vs local** — the tests' small MobileNetV2 tuned with the same
trials once on this machine (MetaSchedule's local runner), once more locally (the search's own spread) and once
through a loopback sshd board that is this host (edgekd's SSH runner and ``edgekd-timer``), the three artifacts
timed interleaved; **reuse across widths** — the compressed network compiled against the records of its dense
parent (``--parent``, tuned first with the full budget) with a growing per-task budget: the share of its tasks the
parent's records cover, and the new trials it took to come within 10% of its own latency tuned alone with the
full budget (its table row, tuned in a database of its own). Each step tunes into databases named after the run
(target ``host-bench-<run>-…``), so the user's ``host`` database neither helps nor is touched; a rerun with the
same ``--out`` skips the steps already in ``results.json`` and resumes a cut tuning from its records.

Outputs: ``<out>/results.json`` (rewritten after every step, so a partial run is readable) and the
``## Runtime`` section of docs/benchmarks.md (only that section is replaced). Example::

    nice -n 10 python scripts/bench_runtime.py --trials-per-task 32 --out runs/bench-runtime
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timing_protocol import time_artifact, time_callable
from torch import nn

from edgekd.atomic import atomic_write_json
from edgekd.compile import CompileOptions, compile_model
from edgekd.config.target import TargetProfile, load_target
from edgekd.models import create_model
from edgekd.results.host import describe_host
from edgekd.results.markdown import write_section
from edgekd.testing.models import randomise_bn

ROOT = Path(__file__).resolve().parent.parent

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


def bench_litert(artifact: Path, args: argparse.Namespace) -> dict[str, float]:
    """The artifact's ``model.onnx`` converted to .tflite (as ``edgekd bench --baseline litert`` converts it) and
    timed by LiteRT with XNNPACK, in the separate environment of ``scripts/setup_litert.sh`` (its converter pulls
    TensorFlow, which must not meet our torch)."""
    import subprocess

    from edgekd.compile.litert import to_tflite

    python = Path(args.litert) / "bin" / "python"
    converted = to_tflite(artifact / "model.onnx", str(python), args.out / "tflite")
    command = [str(python), str(ROOT / "scripts" / "litert_time.py"), "--tflite", str(converted.path),
               "--onnx", str(artifact / "model.onnx"), "--input", str(artifact / "input.bin"), "--shape", "1,3,32,32",
               "--threads", str(args.threads), "--reference", str(artifact / "reference_output.bin")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"LiteRT failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return json.loads(done.stdout) | {"converter": converted.converter}


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
             "TVM is timed by the artifact's `edgekd-runner`; PyTorch eager and ONNX Runtime in Python; LiteRT "
             "(XNNPACK, the artifact's `model.onnx` converted by onnx2tf) in its own environment by the same loop. "
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
            if tuning and tuning.get("topped_up"):
                trials += f" + {tuning['topped_up']['trials']} on {tuning['topped_up']['tasks_tuned']} cut tasks"
                seconds += f" + {tuning['topped_up']['seconds'] / 60:.1f} min"
            if tuning and not tuning["tasks_tuned"]:  # every record came from an earlier run's tuning
                trials, seconds = f"records of an earlier run ({tuning['tasks_reused']} tasks)", ""
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
                         f"from the target's database." + litert_ratio(rt))
    if results.get("reuse"):
        reuse = results["reuse"]
        lines.append(f"- Database reuse: recompiling {reuse['network']} with its records in the database took "
                     f"{reuse['second_s']:.1f} s vs {reuse['first_s']:.1f} s the first time "
                     f"({100 * reuse['second_s'] / reuse['first_s']:.1f}%), {reuse['measured']} new measurements.")
    lines += render_ssh_vs_local(results.get("ssh_vs_local"))
    for key in REUSE_FIGURES:
        lines += render_reuse_widths(results.get(key))
    return "\n".join(lines) + "\n"


def litert_ratio(runtimes: dict) -> str:
    litert = runtimes.get("LiteRT (XNNPACK)")
    if not litert:
        return ""
    return (f" Tuned TVM / LiteRT (XNNPACK) = **{runtimes['TVM tuned']['mean'] / litert['mean']:.2f}**; LiteRT "
            f"max |diff| vs PyTorch {litert['max_abs_err']:.1e} ({litert.get('converter', '?')}).")


def render_ssh_vs_local(figure: dict | None) -> list[str]:
    if not figure:
        return []
    runs = figure["runs"]
    lines = ["", f"**Tuned over SSH vs locally** ({figure['network']}, `--tune-trials {figure['trials']}` each, "
             "every run from an empty database; the three artifacts timed by `edgekd-runner` on this host in "
             f"{figure['rounds']} interleaved rounds, median):", "",
             "| tuned by | trials measured | tuning time | p50 ms | ÷ local | fastest round's mean ms | ÷ local |",
             "|---|---|---|---|---|---|---|"]
    labels = {"local": "MetaSchedule's local runner", "local-again": "the same, again (the search's own spread)",
              "ssh": "edgekd's SSH runner, loopback sshd board (`edgekd-timer`)"}
    for role, run in runs.items():
        fastest = min(run["round_means"])
        lines.append(f"| {labels.get(role, role)} | {run['tuning']['measured']} | {run['tuning']['seconds']:.0f} s "
                     f"| {run['p50']:.3f} | {run['p50'] / runs['local']['p50']:.3f} | {fastest:.3f} "
                     f"| {fastest / min(runs['local']['round_means']):.3f} |")
    lines += ["", "Round means: " + "; ".join(f"{role} {', '.join(f'{m:.3f}' for m in run['round_means'])}"
                                            for role, run in runs.items()) + "."]
    return lines


def render_reuse_widths(figure: dict | None) -> list[str]:
    if not figure:
        return []
    alone = figure["alone"]
    parent = figure["parent_tuning"]
    tuned_by = figure.get("tuned_by", REUSE_FIGURES["reuse_widths"][1])
    lines = ["", f"**Reuse across widths, tuned with {tuned_by}**: the compressed network ({figure['child']}) "
             f"compiled against the records "
             f"of its dense parent ({figure['parent']}: {parent['trials']} trials over {parent['tasks']} tasks, "
             f"{parent['seconds'] / 60:.1f} min), its other tasks tuned with a growing per-task budget, vs tuned "
             f"alone with the full budget ({alone['tuning']['trials']} trials, "
             f"{alone['tuning']['seconds'] / 60:.1f} min): p50 median of interleaved rounds.", "",
             "| per-task budget | tasks from the parent's records | new trials (cumulative) | p50 ms | ÷ alone "
             "| fastest round's mean ms | ÷ alone |", "|---|---|---|---|---|---|---|"]
    within = None
    fastest_alone = min(alone["round_means"])
    for step in figure["ladder"]:
        # the verdict reads the fastest rounds: this machine flips between a fast and a ~2x slower state for
        # minutes, and a median of a few rounds lands in either
        if within is None and min(step["round_means"]) <= 1.10 * fastest_alone:
            within = step
        lines.append(f"| {step['per_task']} | {step['tasks_reused']} of {step['tasks']} | {step['new_trials']} "
                     f"| {step['p50']:.3f} | {step['p50'] / alone['p50']:.3f} | {min(step['round_means']):.3f} "
                     f"| {min(step['round_means']) / fastest_alone:.3f} |")
    lines.append(f"| alone, full budget | - | {alone['tuning']['trials']} | {alone['p50']:.3f} | 1.000 "
                 f"| {fastest_alone:.3f} | 1.000 |")
    verdict = (f"within 10% of its own full-budget latency (fastest rounds) after **{within['new_trials']} new "
               f"trials** "
               f"({100 * within['new_trials'] / max(1, alone['tuning']['trials']):.0f}% of the full budget)"
               if within else "not within 10% of its own full-budget latency at any step of the ladder")
    lines += ["", f"- {figure['ladder'][0]['tasks_reused']} of {figure['ladder'][0]['tasks']} tasks reused from "
              f"the parent's records; {verdict}."]
    if "cost_model_records" in figure["ladder"][0]:
        lines.append("- the cost model of each step was pre-trained on "
                     + ", ".join(str(step["cost_model_records"]) for step in figure["ladder"]) + " records.")
    return lines


def write_docs(results: dict, docs: Path) -> None:
    write_section(docs, SECTION, render(results).replace(str(Path.home()), "~"))


def own_target(results: dict, role: str) -> TargetProfile:
    """The host profile under a name of this run's own: tuning databases are kept per target name, so the step
    starts from an empty database (and a rerun of the same run resumes from what it measured)."""
    return load_target("host").model_copy(update={"name": f"host-bench-{results['run']}-{role}"})


def tuning_summary(artifact, minutes: float | None) -> dict:
    tuning = artifact.manifest.tuning
    return {"trials": tuning.trials, "per_task": tuning.trials // max(1, tuning.tasks_tuned),
            "seconds": tuning.seconds, "max_minutes": minutes, "tasks": tuning.tasks,
            "tasks_tuned": tuning.tasks_tuned, "tasks_reused": tuning.tasks_reused, "compile_s": artifact.seconds,
            "target": artifact.manifest.target.name, "measured": artifact.tuning_measured}


def bench_network(net: Network, args: argparse.Namespace, results: dict) -> None:
    """Untuned compile + measure, tuned compile + interleaved re-measure; results saved after each step.

    The compressed network is tuned in a database of its own (its full-budget latency is the reference of the
    reuse figure); the others in the user's ``host`` database, whose records they share with later compiles.
    """
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
                  "TVM untuned": lambda: time_artifact(untuned.path, args.threads)}
    if args.litert:
        contenders["LiteRT (XNNPACK)"] = lambda: bench_litert(untuned.path, args)
    entry["runtimes"].update(measure_rounds(contenders, args.rounds))
    save(results, args)
    trials = per_task_budget(args, net.key) * net.tasks_hint
    minutes = override(args.minutes, net.key, args.tune_minutes)
    target = own_target(results, "compressed") if net.key == "mbv2_compressed" else "host"
    tuned = compile_model(model, target, args.out / f"{net.key}-tuned",
                          CompileOptions(model_name=net.key, tune_trials=trials, tune_max_minutes=minutes,
                                         onnx=False))
    contenders["TVM tuned"] = lambda: time_artifact(tuned.path, args.threads)
    entry["runtimes"].update(measure_rounds(contenders, args.rounds))  # re-measure all, interleaved
    summary = tuning_summary(tuned, minutes)
    if earlier_tuning and tuned.manifest.tuning.tasks_reused:
        # records from an earlier run of this bench (same --out): report that tuning, and what this one added
        # (tasks a deadline had cut short are tuned on)
        summary = {k: v for k, v in earlier_tuning.items() if k != "topped_up"} | {
            "topped_up": summary if summary["tasks_tuned"] else None}
    entry["runtimes"]["TVM tuned"]["tuning"] = summary
    entry["tuned_artifact"] = str(tuned.path)
    if net.key == "mbv2" and tuned.manifest.tuning.tasks_tuned > 0:  # only a compile that tuned is a fair "first"
        # one trial per task: every task is in the ledger by now (each gets at least its first batch), so this
        # compile applies the records and measures nothing, even where the deadline cut a task short
        again = compile_model(model, "host", args.out / f"{net.key}-tuned-again",
                              CompileOptions(model_name=net.key, tune_trials=tuned.manifest.tuning.tasks, onnx=False))
        results["reuse"] = {"network": net.label, "first_s": tuned.seconds, "second_s": again.seconds,
                            "measured": again.tuning_measured}
    save(results, args)


def ssh_vs_local(args: argparse.Namespace, results: dict) -> None:
    """The same network tuned with the same trials locally (twice: the search's own spread) and over SSH."""
    from edgekd.pipeline.compile import compile_on_device

    if "ssh_vs_local" in results:
        return
    print("== SSH vs local tuning", flush=True)
    torch.manual_seed(0)
    model = randomise_bn(create_model("mobilenetv2_cifar", num_classes=10, width_mult=0.25))
    options = CompileOptions(model_name="mbv2_x025", tune_trials=args.ssh_trials, onnx=False)
    artifacts = {}
    for role in ("local", "local-again"):
        artifacts[role] = compile_model(model, own_target(results, role), args.out / f"ssh-vs-local-{role}", options)
    from edgekd.testing.boards import loopback_board

    server, device = loopback_board(args.out / "loopback")
    try:
        artifacts["ssh"] = compile_on_device(model, own_target(results, "ssh"), args.out / "ssh-vs-local-ssh",
                                             options, device=device)
    finally:
        server.stop()
    timed = measure_rounds({role: (lambda a=a: time_artifact(a.path, args.threads)) for role, a in artifacts.items()},
                           args.ssh_rounds)
    results["ssh_vs_local"] = {
        "network": "MobileNetV2-CIFAR x0.25 (the tests' quickstart shape)", "trials": args.ssh_trials,
        "rounds": args.ssh_rounds,
        "runs": {role: {"p50": timed[role]["p50"], "mean": timed[role]["mean"],
                        "round_means": timed[role]["round_means"], "tuning": tuning_summary(a, None)}
                 for role, a in artifacts.items()}}
    save(results, args)


#: the reuse figure's ladders: results key, database role, what tuned it
REUSE_FIGURES = {
    "reuse_widths": ("reuse", "MetaSchedule's fresh cost model (edgekd before stop 23)"),
    "reuse_widths_pretrained": ("reuse-pt", "the cost model pre-trained on the database's records"),
}


def reuse_across_widths(args: argparse.Namespace, results: dict, key: str) -> None:
    """The compressed network against its dense parent's records, per-task budget growing, vs tuned alone."""
    from edgekd.models.io import load_model

    compressed = next((n for n in results["networks"] if n["key"] == "mbv2_compressed"), None)
    if key in results or not args.parent or not compressed or "tuned_artifact" not in compressed:
        return
    role, tuned_by = REUSE_FIGURES[key]
    print(f"== reuse across widths ({tuned_by})", flush=True)
    target = own_target(results, role)
    parent = compile_model(load_model(args.parent).model.eval(), target, args.out / f"{role}-parent",
                           CompileOptions(model_name="parent", tune_trials=args.reuse_parent_trials,
                                          tune_max_minutes=args.reuse_parent_minutes, onnx=False))
    child = load_model(args.compressed).model.eval()
    ladder, tasks = [], None
    for per_task in args.reuse_ladder:
        trials = per_task if tasks is None else per_task * tasks  # the first compile tells the task count
        step = compile_model(child, target, args.out / f"{role}-child-{per_task}",
                             CompileOptions(model_name="child", tune_trials=trials, onnx=False))
        tasks = step.manifest.tuning.tasks
        ladder.append((per_task, step))
    cumulative = np.cumsum([a.tuning_measured for _, a in ladder])
    results[key] = {
        "parent": str(args.parent), "child": str(args.compressed), "parent_tuning": tuning_summary(parent, None),
        "tuned_by": tuned_by,
        "alone": {"artifact": compressed["tuned_artifact"], "tuning": compressed["runtimes"]["TVM tuned"]["tuning"]},
        "ladder": [{"per_task": k, "tasks": a.manifest.tuning.tasks, "tasks_reused": a.manifest.tuning.tasks_reused,
                    "new_trials": int(total), "artifact": str(a.path),
                    "cost_model_records": a.manifest.tuning.cost_model_records}
                   for (k, a), total in zip(ladder, cumulative, strict=True)]}
    time_reuse_ladder(args, results)


def time_reuse_ladder(args: argparse.Namespace, results: dict) -> None:
    """Time every reuse ladder's artifacts and the network tuned alone in one set of interleaved rounds (kept on
    disk: ``--retime`` times them again without tuning)."""
    figures = {key: results[key] for key in REUSE_FIGURES if key in results}
    steps = {"alone": next(iter(figures.values()))["alone"]}
    for key, figure in figures.items():
        steps |= {f"{key}:{step['per_task']}/task": step for step in figure["ladder"]}
    timed = measure_rounds({name: (lambda s=step: time_artifact(Path(s["artifact"]), args.threads))
                            for name, step in steps.items()}, args.ssh_rounds)
    for name, step in steps.items():
        step.update(p50=timed[name]["p50"], round_means=timed[name]["round_means"])
    for figure in figures.values():
        figure["alone"] = steps["alone"]
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
    parser.add_argument("--litert", default=None, metavar="ENV",
                        help="LiteRT environment made by scripts/setup_litert.sh (adds the LiteRT rows)")
    parser.add_argument("--parent", default=None, help="the compressed model's dense parent (the reuse figure)")
    parser.add_argument("--reuse-parent-trials", type=int, default=528)
    parser.add_argument("--reuse-parent-minutes", type=float, default=10.0)
    parser.add_argument("--reuse-ladder", type=lambda text: [int(k) for k in text.split(",")], default=[1, 2, 4, 8],
                        help="per-task budgets of the reuse figure, growing (comma-separated)")
    parser.add_argument("--ssh-trials", type=int, default=0, help="trials of each tuning of the SSH figure (0: skip)")
    parser.add_argument("--ssh-rounds", type=int, default=5, help="interleaved rounds of the two figures")
    parser.add_argument("--retime", action="store_true", help="time the reuse figure's kept artifacts again")
    parser.add_argument("--reuse-pretrained", action="store_true",
                        help="a second reuse ladder in a database of its own, tuned by this edgekd (its cost model "
                             "pre-trained on the parent's records), timed with the first")
    args = parser.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python scripts/bench_runtime.py " + " ".join(argv if argv is not None else sys.argv[1:])
    previous = args.out / "results.json"
    results = json.loads(previous.read_text()) if previous.is_file() else {"networks": []}
    results.update({"host": describe_host(), "threads": args.threads})
    results["command"] = command if "command" not in results else f"{results['command']}; then {command}"
    results.setdefault("run", uuid.uuid4().hex[:6])  # names this run's own tuning databases
    wanted = args.networks.split(",")
    for net in [n for n in networks(args.compressed) if n.key in wanted]:
        bench_network(net, args, results)
    if args.retime and "reuse_widths" in results:
        time_reuse_ladder(args, results)
    reuse_across_widths(args, results, "reuse_widths")
    if args.reuse_pretrained:
        reuse_across_widths(args, results, "reuse_widths_pretrained")
    if args.ssh_trials:
        ssh_vs_local(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
