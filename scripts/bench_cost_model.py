#!/usr/bin/env python
"""Small tuning budgets with and without a cost model pre-trained on a database's records.

With a few trials per task MetaSchedule's fresh cost model guesses (its predictions are random until it has seen
100 measurements), so a new task's schedule is a lottery. edgekd pre-trains the model on the target database's
own records (edgekd/compile/cost_model.py). This script measures what that buys: one network is tuned with
``--per-task`` trials per task again and again into fresh, private databases (nothing reused), half of the
compiles with a fresh cost model and half with one pre-trained on ``--source`` (a database of other networks'
records on this machine), in alternation; the artifacts are then timed on ``local`` in interleaved rounds.

The source must not hold the network's own workloads (their records would seed the search, not only the model):
the script counts the overlap and refuses. Nothing is written to the user's databases. Results (JSON) go to
``--out``; a finished run is only re-timed. Example (the docs' table)::

    .venv/bin/python scripts/bench_cost_model.py --source ~/.cache/edgekd/tuning/host --width 0.25 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import json
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
from edgekd.testing.models import randomise_bn
from edgekd.testing.targets import host_profile_copy

ARMS = ("fresh", "pretrained")


def source_model(source: Path, _database, target):
    """The cost model pre-trained on ``source`` (in place of the database being tuned into, which is empty)."""
    from tvm.s_tir import meta_schedule as ms

    return cost_model_module.pretrained_cost_model(ms.database.JSONDatabase(work_dir=str(source)), target)


def compile_arm(net, arm: str, source: Path, trials: int, folder: Path) -> dict:
    profile = host_profile_copy(folder, f"host-bench-cm-{arm}")
    original = tuning.pretrained_cost_model
    tuning.pretrained_cost_model = (functools.partial(source_model, source) if arm == "pretrained"
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


def overlap(net, source: Path) -> int:
    """How many of the network's tasks the source database already holds records for."""
    import torch
    from tvm.s_tir import meta_schedule as ms

    from edgekd.compile import build
    from edgekd.config.target import load_target

    profile = load_target("host")
    target = build.make_target(profile.tvm_target.as_tvm_dict(host_cpu=build.system_cpu()))
    mod = build.prepare_module(build.import_model(net, torch.zeros(1, 3, 32, 32), fold=True), target, True)
    database = ms.database.JSONDatabase(work_dir=str(source))
    return sum(database.has_workload(task.dispatched[0]) for task in ms.relax_integration.extract_tasks(mod, target))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path.home() / ".cache/edgekd/tuning/host")
    parser.add_argument("--width", type=float, default=0.25, help="CIFAR MobileNetV2 width multiplier")
    parser.add_argument("--repeats", type=int, default=3, help="compiles per arm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache/edgekd-bench/cost-model")
    args = parser.parse_args()

    net = randomise_bn(create_model("mobilenetv2_cifar", width_mult=args.width))
    state_file = args.out / f"w{args.width:g}.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"compiles": []}
    if not state["compiles"]:
        shared = overlap(net, args.source)
        if shared:
            print(f"bench_cost_model: {args.source} holds records of {shared} of this network's tasks; pick a "
                  f"source without them", file=sys.stderr)
            return 2
    while len(state["compiles"]) < 2 * args.repeats:  # fresh, pretrained, fresh, … (resumable)
        arm = ARMS[len(state["compiles"]) % 2]
        done = compile_arm(net, arm, args.source, 1, args.out / "artifacts")
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
    for arm in ARMS:
        rows = [c for c in state["compiles"] if c["arm"] == arm]
        print(f"{arm:10s} p50 ms per compile: {[round(c['p50_ms'], 3) for c in rows]}  median "
              f"{statistics.median(c['p50_ms'] for c in rows):.3f}  compile s {[c['compile_s'] for c in rows]}  "
              f"pre-trained on {rows[0]['pretrained_on']} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
