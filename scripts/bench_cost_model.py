#!/usr/bin/env python
"""Small tuning budgets with and without a cost model pre-trained on a database's records.

With a few trials per task MetaSchedule's fresh cost model guesses (its predictions are random until it has seen
100 measurements), so a new task's schedule is a lottery. edgekd pre-trains the model on the target database's
own records (edgekd/compile/cost_model.py). This script measures what that buys: one network is tuned with
``--per-task`` trials per task again and again into fresh, private databases (nothing reused), half of the
compiles with a fresh cost model and half with one pre-trained on ``--source`` (a database of other networks'
records on this machine), in alternation; the artifacts are then timed on ``local`` in interleaved rounds.

The network's own workloads are left out of the source's records (the measurement is of what transfers from
other networks). Nothing is written to the user's databases. Results (JSON) go to
``--out``; a finished run is only re-timed. Example (the docs' table)::

    .venv/bin/python scripts/bench_cost_model.py --width 0.25 --repeats 3 --docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from timing_protocol import time_artifact

from edgekd.atomic import atomic_write_json
from edgekd.compile import CompileOptions, compile_model, tuning
from edgekd.compile import cost_model as cost_model_module
from edgekd.compile.tuning import database_dir
from edgekd.models import create_model
from edgekd.results.markdown import write_section
from edgekd.testing.models import randomise_bn
from edgekd.testing.targets import host_profile_copy

ARMS = ("fresh", "pretrained")
SECTION = "## Small tuning budgets: a cost model pre-trained on the database"


class WithoutWorkloads:
    """A database's records minus those of some workloads (what :func:`pretrained_cost_model` reads)."""

    def __init__(self, database, excluded: set[int]) -> None:
        self.database, self.excluded = database, excluded

    def get_all_tuning_records(self):
        import tvm_ffi

        return [record for record in self.database.get_all_tuning_records()
                if tvm_ffi.structural_hash(record.workload.mod) not in self.excluded]


def source_model(source: Path, excluded: set[int], _database, target):
    """The cost model pre-trained on ``source`` without the network's own workloads (in place of the database
    being tuned into, which is empty): what transfers from other networks' records."""
    from tvm.s_tir import meta_schedule as ms

    database = WithoutWorkloads(ms.database.JSONDatabase(work_dir=str(source)), excluded)
    return cost_model_module.pretrained_cost_model(database, target)


def compile_arm(net, arm: str, source: Path, excluded: set[int], trials: int, folder: Path) -> dict:
    profile = host_profile_copy(folder, f"host-bench-cm-{arm}")
    original = tuning.pretrained_cost_model
    tuning.pretrained_cost_model = (functools.partial(source_model, source, excluded) if arm == "pretrained"
                                    else lambda _database, _target: ("xgb", 0))
    started = time.perf_counter()
    try:
        artifact = compile_model(net, str(profile), folder / profile.stem, CompileOptions(tune_trials=trials))
    finally:
        tuning.pretrained_cost_model = original
        shutil.rmtree(database_dir(profile.stem), ignore_errors=True)
    info = artifact.manifest.tuning
    return {"arm": arm, "artifact": str(artifact.path), "compile_s": round(time.perf_counter() - started, 1),
            "tasks": info.tasks, "trials": info.trials, "pretrained_on": info.cost_model_records}


def task_hashes(net) -> set[int]:
    """The structural hashes of the network's tuning tasks (as the database keys its workloads)."""
    import torch
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    from edgekd.compile import build
    from edgekd.config.target import load_target

    profile = load_target("host")
    target = build.make_target(profile.tvm_target.as_tvm_dict(host_cpu=build.system_cpu()))
    mod = build.prepare_module(build.import_model(net, torch.zeros(1, 3, 32, 32), fold=True), target, True)
    return {tvm_ffi.structural_hash(task.dispatched[0]) for task in ms.relax_integration.extract_tasks(mod, target)}


def render(state: dict, args: argparse.Namespace) -> str:
    lines = [f"Host: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, {args.threads} "
             f"threads. CIFAR MobileNetV2 x{args.width:g} (random weights, calibrated BatchNorm), compiled for the "
             "host with 1 MetaSchedule trial per task, each compile into an empty database of its own; the cost "
             f"model is MetaSchedule's fresh one or pre-trained on `{args.source}` without this network's "
             "workloads (what transfers from other networks' records). Compiles alternate between the arms; the "
             f"artifacts are timed by `edgekd-runner` in {args.rounds} interleaved rounds (p50 ms, median). The "
             "machine is shared: compare rows of this run only.", "", f"Command: `{state['command']}`", "",
             "| cost model | compile | tasks | records learnt from | compile s | p50 ms (rounds) |",
             "|---|---|---|---|---|---|"]
    for arm in ARMS:
        for index, row in enumerate(c for c in state["compiles"] if c["arm"] == arm):
            lines.append(f"| {arm} | {index + 1} | {row['tasks']} | {row['pretrained_on']} | {row['compile_s']:.0f} "
                         f"| **{row['p50_ms']:.3f}** ({', '.join(f'{v:.3f}' for v in row['p50s'])}) |")
    medians = {arm: [c["p50_ms"] for c in state["compiles"] if c["arm"] == arm] for arm in ARMS}
    lines += ["", f"- median over compiles: fresh {statistics.median(medians['fresh']):.3f} ms (spread "
              f"{min(medians['fresh']):.3f}-{max(medians['fresh']):.3f}), pre-trained "
              f"{statistics.median(medians['pretrained']):.3f} ms ({min(medians['pretrained']):.3f}-"
              f"{max(medians['pretrained']):.3f}): pre-trained ÷ fresh = **"
              f"{statistics.median(medians['pretrained']) / statistics.median(medians['fresh']):.2f}**."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path.home() / ".cache/edgekd/tuning/host")
    parser.add_argument("--width", type=float, default=0.25, help="CIFAR MobileNetV2 width multiplier")
    parser.add_argument("--repeats", type=int, default=3, help="compiles per arm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache/edgekd-bench/cost-model")
    parser.add_argument("--docs", type=Path, default=None, help="rewrite this file's section (docs/benchmarks.md)")
    args = parser.parse_args()

    net = randomise_bn(create_model("mobilenetv2_cifar", width_mult=args.width))
    state_file = args.out / f"w{args.width:g}.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"compiles": []}
    excluded = task_hashes(net)
    while len(state["compiles"]) < 2 * args.repeats:  # fresh, pretrained, fresh, … (resumable)
        arm = ARMS[len(state["compiles"]) % 2]
        done = compile_arm(net, arm, args.source, excluded, 1, args.out / "artifacts")
        state["compiles"].append(done)
        atomic_write_json(state_file, state)
        print(json.dumps(done), file=sys.stderr)
    p50s: dict[str, list[float]] = {c["artifact"]: [] for c in state["compiles"]}
    for round_index in range(args.rounds):
        order = list(p50s) if round_index % 2 == 0 else list(reversed(p50s))
        for artifact in order:
            p50s[artifact].append(time_artifact(artifact, args.threads)["p50"])
    for compiled in state["compiles"]:
        compiled["p50_ms"] = statistics.median(p50s[compiled["artifact"]])
        compiled["p50s"] = [round(v, 4) for v in p50s[compiled["artifact"]]]
    atomic_write_json(state_file, state)
    state["command"] = "python scripts/bench_cost_model.py " + " ".join(sys.argv[1:])
    atomic_write_json(state_file, state)
    text = render(state, args)
    print(text)
    if args.docs:
        write_section(args.docs, SECTION, text.replace(str(Path.home()), "~"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
