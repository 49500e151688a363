#!/usr/bin/env python
"""Where tuned TVM loses to ONNX Runtime, kernel by kernel (issue 11's account when TVM ÷ ORT stays above 1).

For one network: the fused TIR tasks TVM compiles it into (the same import, BatchNorm folding and passes as
``edgekd compile``), each with the run time of the schedule the target's tuning database picked for it (the best
record's median, timed on this host by the tuner) and its count in the network; beside it, ONNX Runtime's own
kernels for the same layers, from ORT's profiler (median per node over ``--runs`` runs, same thread count).
Convolutions are matched by their input and weight shapes and by whether a residual add is fused into them
(ORT fuses Conv+Add+ReLU into one NCHWc kernel, TVM into one task); everything else is summed per kind.

Caveat, said in the output too: the TVM column was measured while tuning (possibly hours before, under another
load), the ORT column now; the shares of each side's own total are what compare safely.

Example::

    python scripts/bench_tasks.py --network resnet56 --onnx ~/.cache/edgekd-bench/runtime/resnet56-untuned/model.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from edgekd.compile import build
from edgekd.compile.tuning import database_dir
from edgekd.config.target import load_target
from edgekd.models import create_model
from edgekd.results.markdown import write_section

ROOT = Path(__file__).resolve().parent.parent
ZOO = {"resnet56": ("resnet56_cifar", {}), "mbv2": ("mobilenetv2_cifar", {})}


def conv_key(data: list[int], weight: list[int], out: list[int], residual: bool, block: int = 1) -> str:
    """A convolution by its channels (rounded up to ``block``), kernel, input and output size, fused add."""
    def up(channels: int) -> int:  # the image's 3 channels stay: ORT's first convolution reads plain NCHW
        return channels if channels < 8 else -(-channels // block) * block

    return (f"conv {up(data[1])}->{up(weight[0])} k{weight[2]} {data[2]}x{data[3]}->{out[2]}x{out[3]}"
            + (" +add" if residual else ""))


# ONNX Runtime runs convolutions in NCHWc blocks and its profiler reports the padded channel counts (24 -> 32):
# both sides are matched with channels rounded up to this block
ORT_BLOCK = 16


def param_shapes(func) -> list[list[int]]:
    """Shapes of a PrimFunc's buffer parameters, in order (TVM 0.27's tirx has no ``buffer_map``: they are read
    from the TVMScript signature)."""
    signature = next(line for line in func.script().splitlines() if line.startswith("def main("))
    # each parameter reads `name: T.Buffer((T.int64(1), T.int64(16), ...), "float32")`: the dims precede the dtype
    return [[int(d) for d in re.findall(r"\d+", chunk.split('"')[0].replace("T.int64(", ""))]
            for chunk in signature.split("T.Buffer(")[1:]]


def tvm_tasks(model: torch.nn.Module, target_name: str) -> list[dict]:
    """Every tuning task of ``model`` with its count and the picked schedule's median run time (µs)."""
    from tvm.s_tir import meta_schedule as ms

    profile = load_target(target_name)
    host_cpu = build.system_cpu() if profile.tvm_target.mcpu == "host" else None
    target = build.make_target(profile.tvm_target.as_tvm_dict(host_cpu=host_cpu))
    example = torch.zeros(1, 3, 32, 32)
    mod = build.prepare_module(build.import_model(model, example, fold=True), target, True)
    database = ms.database.JSONDatabase(work_dir=str(database_dir(profile.name)))
    rows = []
    for task in ms.relax_integration.extract_tasks(mod, target):
        shapes = param_shapes(task.dispatched[0]["main"])
        record = database.query_tuning_record(task.dispatched[0], target, task.task_name)
        seconds = [float(s) for s in record.run_secs] if record is not None and record.run_secs else []
        four_d = [s for s in shapes if len(s) == 4]
        key = label = task.task_name
        if "conv2d" in task.task_name and len(four_d) >= 3:
            # inputs: data, weight, then (bias, broadcast to 4-D), the residual; the last buffer is the output
            residual = sum(1 for s in four_d[2:-1] if s == four_d[-1]) > 0
            key = conv_key(four_d[0], four_d[1], four_d[-1], residual, ORT_BLOCK)
            label = conv_key(four_d[0], four_d[1], four_d[-1], residual)
        rows.append({"task": task.task_name, "key": key, "label": label, "count": int(task.weight),
                     "us": 1e6 * statistics.median(seconds) if seconds else None})
    return rows


def ort_kernels(onnx_path: Path, threads: int, runs: int) -> dict[str, dict]:
    """ORT's per-node kernel time (median over runs, µs) summed per match key, with node counts."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="edgekd-ortprof-")) / "ort")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    example = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    for _ in range(runs):
        session.run(None, {"x": example})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    kind: dict[str, str] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        per_node[event["name"]].append(float(event["dur"]))
        args = event["args"]
        shapes = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
        outputs = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
        if args.get("op_name") in ("Conv", "FusedConv") and len(shapes) >= 2 and outputs:
            kind[event["name"]] = conv_key(shapes[0], shapes[1], outputs[0], len(shapes) >= 4, ORT_BLOCK)
        else:
            kind[event["name"]] = args.get("op_name", "?")
    grouped: dict[str, dict] = defaultdict(lambda: {"us": 0.0, "count": 0})
    for name, durations in per_node.items():
        grouped[kind[name]]["us"] += statistics.median(durations)
        grouped[kind[name]]["count"] += 1
    return dict(grouped)


def account(tasks: list[dict], kernels: dict[str, dict]) -> list[dict]:
    """One row per conv kind (TVM task ↔ ORT kernels of the same shapes), then TVM's and ORT's other work."""
    rows, matched = [], set()
    for task in sorted(tasks, key=lambda t: -(t["us"] or 0) * t["count"]):
        ort_row = kernels.get(task["key"]) if task["key"].startswith("conv") else None
        if ort_row:
            matched.add(task["key"])
        rows.append({"what": task["label"], "tvm_task": task["task"], "count": task["count"],
                     "tvm_us": None if task["us"] is None else task["us"] * task["count"],
                     "ort_us": ort_row["us"] if ort_row else None, "ort_count": ort_row["count"] if ort_row else 0})
    for key, row in sorted(kernels.items(), key=lambda kv: -kv[1]["us"]):
        if key not in matched:
            rows.append({"what": f"ORT {key}", "tvm_task": "", "count": 0, "tvm_us": None, "ort_us": row["us"],
                         "ort_count": row["count"]})
    return rows


def render(label: str, rows: list[dict], command: str, threads: int) -> str:
    tvm_total = sum(r["tvm_us"] or 0 for r in rows)
    ort_total = sum(r["ort_us"] or 0 for r in rows)
    lines = [f"{label}, {threads} threads. TVM: each task's picked schedule, median run time recorded by the tuner "
             "on this host, times its count in the network; ONNX Runtime: its profiler's per-node kernel time "
             "(median over the runs), summed over the nodes of the same shapes. The TVM column was timed while "
             "tuning, the ORT column now: compare each side's shares, and the ratios only as a guide.", "",
             f"Command: `{command}`", "",
             "| kernel (TVM task) | count TVM / ORT | TVM µs | ORT µs | TVM ÷ ORT | TVM share | ORT share |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        tvm = f"{row['tvm_us']:.1f}" if row["tvm_us"] is not None else "-"
        ort = f"{row['ort_us']:.1f}" if row["ort_us"] is not None else "-"
        ratio = f"{row['tvm_us'] / row['ort_us']:.2f}" if row["tvm_us"] and row["ort_us"] else "-"
        name = f"{row['what']} (`{row['tvm_task']}`)" if row["tvm_task"] else row["what"]
        tvm_share = f"{100 * row['tvm_us'] / tvm_total:.1f}%" if row["tvm_us"] and tvm_total else "-"
        ort_share = f"{100 * row['ort_us'] / ort_total:.1f}%" if row["ort_us"] and ort_total else "-"
        lines.append(f"| {name} | {row['count']} / {row['ort_count']} | {tvm} | {ort} | {ratio} | {tvm_share} "
                     f"| {ort_share} |")
    lines += ["", f"- Sum of kernels: TVM {tvm_total / 1e3:.3f} ms, ONNX Runtime {ort_total / 1e3:.3f} ms "
              f"(÷ {tvm_total / ort_total:.2f})." if ort_total else ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", choices=sorted(ZOO), required=True)
    parser.add_argument("--onnx", type=Path, required=True, help="the network's model.onnx (from its artifact)")
    parser.add_argument("--target", default="host", help="target whose tuning database holds the records")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    torch.manual_seed(0)
    name, kwargs = ZOO[args.network]
    model = create_model(name, num_classes=10, **kwargs).eval()
    rows = account(tvm_tasks(model, args.target), ort_kernels(args.onnx, args.threads, args.runs))
    command = "python scripts/bench_tasks.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(f"{args.network}, target `{args.target}`", rows, command, args.threads)
    print(text)
    write_section(args.docs, f"## Runtime, kernel by kernel ({args.network})", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
