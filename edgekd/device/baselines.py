"""The runtimes a user would pick instead of TVM, timed on the same board in the same bench: ONNX Runtime on the
artifact's ``model.onnx`` and LiteRT (XNNPACK) on its conversion to ``.tflite``, same input, same thread count,
interleaved with the TVM runner's repeats.

Each runs the board's own Python (``python3``; on the ``local`` device this interpreter for ONNX Runtime and the
LiteRT environment's for LiteRT) with the package the board has (``onnxruntime``; ``ai_edge_litert`` or
``tflite_runtime``), through the same connection, in the same staged artifact directory. The timing loop mirrors
the runner's (warm-up by runs and seconds, then ``runs`` timed runs for at least ``min_seconds``) and reports the
same statistics, so the rows compare like for like. An emulated board gives no baseline: its timings are not
latency.
"""

from __future__ import annotations

import json
import sys

from edgekd.compile import litert
from edgekd.errors import DeviceError

__all__ = ["BASELINES", "LITERT_SCRIPT", "ORT_SCRIPT", "baseline_command", "parse_baseline", "parse_output"]

BASELINES = ("onnxruntime", "litert")
_NAMES = {"onnxruntime": "ONNX Runtime", "litert": "LiteRT"}
_INSTALL = {"onnxruntime": "pip install onnxruntime numpy", "litert": "pip install ai-edge-litert numpy"}

# Board side. argv = model input.bin reference.bin shape threads warmup_runs warmup_s runs min_s reference_shape.
# A loader defines run() (one inference, output in the reference's layout), init_ms and extra (versions, facts).
_ARGS = r"""
import json, sys, time
model, inp, ref, shape, threads, warm_runs, warm_s, runs, min_s, ref_shape = sys.argv[1:11]
shape = [int(d) for d in shape.split(",")]
ref_shape = [int(d) for d in ref_shape.split(",")]
"""

_ORT_LOAD = r"""
try:
    import numpy as np
    import onnxruntime as ort
except ImportError as err:
    print("edgekd-baseline: %s (for %s)" % (err, sys.executable), file=sys.stderr); sys.exit(3)
options = ort.SessionOptions()
options.intra_op_num_threads = int(threads)
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
start = time.perf_counter()
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
init_ms = (time.perf_counter() - start) * 1e3
feed = {session.get_inputs()[0].name: np.fromfile(inp, dtype=np.float32).reshape(shape)}
def run():
    return session.run(None, feed)[0]
extra = {"onnxruntime": ort.__version__}
"""

# onnx2tf makes 4-D image tensors NHWC: the input is transposed once, outside the timed runs, and a 4-D output
# back to NCHW when compared. No delegate is passed, so a DELEGATE node can only be the default XNNPACK one.
_LITERT_LOAD = r"""
try:
    import numpy as np
    try:
        from ai_edge_litert.interpreter import Interpreter
        package = "ai-edge-litert"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
        package = "tflite-runtime"
except ImportError as err:
    print("edgekd-baseline: %s (for %s)" % (err, sys.executable), file=sys.stderr); sys.exit(3)
from importlib import metadata
start = time.perf_counter()
interpreter = Interpreter(model_path=model, num_threads=int(threads))
interpreter.allocate_tensors()
init_ms = (time.perf_counter() - start) * 1e3
given, wanted = interpreter.get_input_details(), interpreter.get_output_details()
x = np.fromfile(inp, dtype=np.float32).reshape(shape)
want = [int(d) for d in given[0]["shape"]]
if len(given) != 1 or given[0]["dtype"] != np.float32:
    print("edgekd-baseline: %s: expected one float32 input" % model, file=sys.stderr); sys.exit(3)
if want != shape and len(shape) == 4 and want == [shape[0], shape[2], shape[3], shape[1]]:
    x = x.transpose(0, 2, 3, 1)
elif want != shape:
    print("edgekd-baseline: %s expects input shape %s, not %s" % (model, want, shape), file=sys.stderr); sys.exit(3)
x = np.ascontiguousarray(x)
in_index, out_index = given[0]["index"], wanted[0]["index"]
def run():
    interpreter.set_tensor(in_index, x)
    interpreter.invoke()
    out = interpreter.get_tensor(out_index)
    if out.ndim == 4 and list(out.shape) != ref_shape and list(out.transpose(0, 3, 1, 2).shape) == ref_shape:
        out = out.transpose(0, 3, 1, 2)
    return out
try:
    delegates = [op for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE"]
    ins, outs = {d["index"] for d in given}, {d["index"] for d in wanted}
    whole = len(delegates) == 1 and ins <= set(delegates[0]["inputs"].tolist()) \
        and outs <= set(delegates[0]["outputs"].tolist())
    xnnpack = {"xnnpack": bool(delegates), "xnnpack_whole_graph": bool(whole)}
except Exception:  # the private op listing is not in every release
    xnnpack = {"xnnpack": None, "xnnpack_whole_graph": None}
extra = {"litert": "%s %s" % (package, metadata.version(package)), **xnnpack}
"""

_TIMING = r"""
start = time.perf_counter()
out = run()
first_ms = (time.perf_counter() - start) * 1e3
warm_end = time.perf_counter() + float(warm_s)
warm = 0
while warm < int(warm_runs) or time.perf_counter() < warm_end:
    run(); warm += 1
samples = []
t0 = time.time(); deadline = time.perf_counter() + float(min_s)
while len(samples) < int(runs) or time.perf_counter() < deadline:
    start = time.perf_counter(); run(); samples.append((time.perf_counter() - start) * 1e3)
t1 = time.time()
s = sorted(samples)
def q(p):
    return s[min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))]
mean = sum(s) / len(s)
stats = {"mean": mean, "std": (sum((v - mean) ** 2 for v in s) / len(s)) ** 0.5, "min": s[0], "p50": q(0.5),
         "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "max": s[-1]}
reference = np.fromfile(ref, dtype=np.float32)
if reference.size != out.size:
    print("edgekd-baseline: output has %d values, the reference %d" % (out.size, reference.size), file=sys.stderr)
    sys.exit(3)
reference = reference.reshape(out.shape)
diff = float(np.abs(out.astype(np.float32) - reference).max())
top1 = float((out.reshape(out.shape[0], -1).argmax(1) == reference.reshape(out.shape[0], -1).argmax(1)).mean())
print(json.dumps({"latency_ms": stats, "runs": len(s), "warmup_runs": warm, "init_ms": init_ms,
                  "first_inference_ms": first_ms, "max_abs_diff": diff, "top1_agree": top1,
                  "timestamps": {"timed_start_unix": t0, "timed_end_unix": t1}, **extra}))
"""

ORT_SCRIPT = _ARGS + _ORT_LOAD + _TIMING
LITERT_SCRIPT = _ARGS + _LITERT_LOAD + _TIMING
_SCRIPTS = {"onnxruntime": ORT_SCRIPT, "litert": LITERT_SCRIPT}


def parse_baseline(name: str) -> str:
    """A baseline runtime's name, or one line naming the accepted ones."""
    if name not in BASELINES:
        raise DeviceError(f"--baseline {name!r}: unknown runtime; accepted: {', '.join(BASELINES)}")
    return name


def baseline_command(runtime: str, python: str, model_file: str, manifest, options, threads: int) -> list[str]:
    """The board-side command timing ``model_file`` (a path on the board) with ``runtime``, run in the artifact's
    stage directory with ``python``."""
    return [python, "-c", _SCRIPTS[runtime], model_file, manifest.input.file, manifest.output.file,
            ",".join(str(d) for d in manifest.input.shape), str(threads), str(options.warmup_runs),
            f"{options.warmup_seconds:g}", str(options.runs), f"{options.min_seconds:g}",
            ",".join(str(d) for d in manifest.output.shape)]


def default_python(runtime: str, local: bool, litert_converter: str | None = None) -> str:
    """The interpreter a baseline runs with when none is named: ``python3`` on a board; on ``local`` this one for
    ONNX Runtime and the LiteRT environment's (it converted the model: :func:`edgekd.compile.litert.converter_python`)
    for LiteRT."""
    if not local:
        return "python3"
    return litert.converter_python(litert_converter) if runtime == "litert" else sys.executable


def parse_output(device: str, result, runtime: str = "onnxruntime") -> dict:
    """The baseline's JSON document, or one line saying why there is none."""
    name = _NAMES[runtime]
    if result.exit_code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = next((line.split(": ", 1)[1] for line in lines if line.startswith("edgekd-baseline:")),
                      lines[-1] if lines else f"exit {result.exit_code}")
        raise DeviceError(f"{device}: {name} baseline failed: {reason} ({_INSTALL[runtime]} on the board, or pass "
                          f"the board's interpreter with --baseline-python)")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeviceError(f"{device}: {name} baseline printed no result") from None
