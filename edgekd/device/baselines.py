"""The runtime a user would pick instead of TVM, timed on the same board in the same bench: ONNX Runtime on the
artifact's ``model.onnx``, same input, same thread count, interleaved with the TVM runner's repeats.

It runs the board's own Python (``python3``; this interpreter on the ``local`` device) with the ``onnxruntime``
package the board has, through the same connection, in the same staged artifact directory. The timing loop
mirrors the runner's (warm-up by runs and seconds, then ``runs`` timed runs for at least ``min_seconds``)
and reports the same statistics, so the two rows compare like for like. An emulated board gives no baseline:
its timings are not latency.
"""

from __future__ import annotations

import json
import sys

from edgekd.errors import DeviceError

__all__ = ["BASELINES", "ORT_SCRIPT", "onnxruntime_command", "parse_baseline"]

BASELINES = ("onnxruntime",)

# Runs on the board: argv = model.onnx input.bin reference.bin shape threads warmup_runs warmup_s runs min_s
ORT_SCRIPT = r"""
import json, sys, time
try:
    import numpy as np
    import onnxruntime as ort
except ImportError as err:
    print("edgekd-baseline: %s (for %s)" % (err, sys.executable), file=sys.stderr); sys.exit(3)
model, inp, ref, shape, threads, warm_runs, warm_s, runs, min_s = sys.argv[1:10]
shape = [int(d) for d in shape.split(",")]
options = ort.SessionOptions()
options.intra_op_num_threads = int(threads)
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
start = time.perf_counter()
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
init_ms = (time.perf_counter() - start) * 1e3
x = np.fromfile(inp, dtype=np.float32).reshape(shape)
feed = {session.get_inputs()[0].name: x}
start = time.perf_counter()
out = session.run(None, feed)[0]
first_ms = (time.perf_counter() - start) * 1e3
warm_end = time.perf_counter() + float(warm_s)
warm = 0
while warm < int(warm_runs) or time.perf_counter() < warm_end:
    session.run(None, feed); warm += 1
samples = []
t0 = time.time(); deadline = time.perf_counter() + float(min_s)
while len(samples) < int(runs) or time.perf_counter() < deadline:
    start = time.perf_counter(); session.run(None, feed); samples.append((time.perf_counter() - start) * 1e3)
t1 = time.time()
s = sorted(samples)
def q(p):
    return s[min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))]
mean = sum(s) / len(s)
stats = {"mean": mean, "std": (sum((v - mean) ** 2 for v in s) / len(s)) ** 0.5, "min": s[0], "p50": q(0.5),
         "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "max": s[-1]}
reference = np.fromfile(ref, dtype=np.float32).reshape(out.shape)
diff = float(np.abs(out.astype(np.float32) - reference).max())
top1 = float((out.reshape(out.shape[0], -1).argmax(1) == reference.reshape(out.shape[0], -1).argmax(1)).mean())
print(json.dumps({"latency_ms": stats, "runs": len(s), "warmup_runs": warm, "init_ms": init_ms,
                  "first_inference_ms": first_ms, "max_abs_diff": diff, "top1_agree": top1,
                  "onnxruntime": ort.__version__, "timestamps": {"timed_start_unix": t0, "timed_end_unix": t1}}))
"""


def parse_baseline(name: str) -> str:
    """A baseline runtime's name, or one line naming the accepted ones."""
    if name not in BASELINES:
        raise DeviceError(f"--baseline {name!r}: unknown runtime; accepted: {', '.join(BASELINES)}")
    return name


def onnxruntime_command(python: str | None, local: bool, manifest, options, threads: int) -> list[str]:
    """The board-side command timing ``manifest.onnx`` with ONNX Runtime (run in the stage directory)."""
    if not manifest.onnx:
        raise DeviceError("the artifact has no model.onnx (compiled with --no-onnx); recompile it for the baseline")
    interpreter = python or (sys.executable if local else "python3")
    return [interpreter, "-c", ORT_SCRIPT, manifest.onnx, manifest.input.file, manifest.output.file,
            ",".join(str(d) for d in manifest.input.shape), str(threads), str(options.warmup_runs),
            f"{options.warmup_seconds:g}", str(options.runs), f"{options.min_seconds:g}"]


def parse_output(device: str, result) -> dict:
    """The baseline's JSON document, or one line saying why there is none."""
    if result.exit_code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = next((line.split(": ", 1)[1] for line in lines if line.startswith("edgekd-baseline:")),
                      lines[-1] if lines else f"exit {result.exit_code}")
        raise DeviceError(f"{device}: ONNX Runtime baseline failed: {reason} (pip install onnxruntime numpy on the "
                          f"board, or pass the board's interpreter with --baseline-python)")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeviceError(f"{device}: ONNX Runtime baseline printed no result") from None
