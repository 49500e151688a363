"""Device-stage benchmarks (docs/benchmarks.md, "## Device").

1. Overhead of a repeated bench over the loopback sshd: a second ``bench`` of the same artifact
   (nothing to upload) minus the runner's timed window, measured from a fresh connection.
2. ``edgekd bench --device local`` vs the host benchmark of the same artifact: the median latency of
   the runner (subprocess) against TVM's Python Relax VM in-process timing of the same ``model.so`` at
   the same thread count (``TVM_NUM_THREADS``).

Usage: ``.venv/bin/python scripts/bench_device.py [--threads 1] [--repeat 5]`` (needs openssh-server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_artifact(out: Path) -> Path:
    import torch
    from torch import nn

    from edgekd.compile.api import CompileOptions, compile_model

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()
    return compile_model(model, "host", out, CompileOptions(input_shape=(1, 3, 32, 32), onnx=False)).path


def overhead(artifact: Path, repeat: int, threads: int) -> list[tuple[float, float, int]]:
    """(bench wall s, overhead s, uploaded files) for `repeat` second benches, each on a new connection."""
    from edgekd.device import connect
    from edgekd.device.bench import BenchOptions, bench
    from edgekd.testing.boards import loopback_board

    work = Path(tempfile.mkdtemp(prefix="edgekd-bench-device-"))
    server, device = loopback_board(work, "loop")
    try:
        options = BenchOptions(threads=threads, runs=50, min_seconds=1.0, warmup_seconds=0.5)
        with connect(device) as conn:
            bench(conn, device, artifact, options)  # first bench: uploads
        rows = []
        for _ in range(repeat):
            start = time.perf_counter()
            with connect(device) as conn:
                [result] = bench(conn, device, artifact, options)
            wall = time.perf_counter() - start
            rows.append((wall, wall - result.timed_seconds, len(result.push.uploaded),
                         wall - result.runner_wall_s))
        return rows
    finally:
        server.stop()


def local_vs_host(artifact: Path, threads: int, repeat: int) -> tuple[list[float], list[float]]:
    """Median latency (ms) from `bench --device local` and from TVM's in-process VM, `repeat` times each."""
    from edgekd.config.devices import local_device
    from edgekd.device import connect
    from edgekd.device.bench import BenchOptions, bench

    os.environ["TVM_NUM_THREADS"] = str(threads)
    import numpy as np
    import tvm
    from tvm import relax

    device = local_device()
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(artifact / "model.so")), tvm.cpu())
    x = tvm.runtime.tensor(np.fromfile(artifact / "input.bin", dtype=np.float32).reshape(1, 3, 32, 32))
    local, host = [], []
    for _ in range(repeat):  # interleaved, so load from other processes hits both alike
        with connect(device) as conn:
            [result] = bench(conn, device, artifact, BenchOptions(threads=threads, runs=200, min_seconds=1.0))
        local.append(result.runner["latency_ms"]["p50"])
        for _ in range(20):
            vm["main"](x)
        samples = []
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end or len(samples) < 200:
            t = time.perf_counter()
            vm["main"](x)
            samples.append((time.perf_counter() - t) * 1e3)
        host.append(statistics.median(samples))
    return local, host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("EDGEKD_RESULTS", str(Path(tempfile.mkdtemp()) / "results.jsonl"))
    artifact = build_artifact(Path(tempfile.mkdtemp(prefix="edgekd-art-")) / "host")
    local, host = local_vs_host(artifact, args.threads, args.repeat)
    rows = overhead(artifact, args.repeat, args.threads)
    print("second bench over loopback sshd (new connection each):")
    for wall, over, uploaded, outside_runner in rows:
        print(f"  wall {wall:.3f} s  overhead beyond timed runs {over:.3f} s  "
              f"outside the runner process {outside_runner:.3f} s  uploaded {uploaded}")
    print(f"  median overhead {statistics.median(r[1] for r in rows):.3f} s; "
          f"median outside runner {statistics.median(r[3] for r in rows):.3f} s")
    ratio = statistics.median(local) / statistics.median(host)
    print(f"local bench p50 (ms): {[round(v, 4) for v in local]}")
    print(f"host TVM VM p50 (ms): {[round(v, 4) for v in host]}")
    print(f"median local/host = {ratio:.3f} ({(ratio - 1) * 100:+.1f}%), threads={args.threads}")


if __name__ == "__main__":
    main()
