#!/usr/bin/env python
"""Time a .tflite model under LiteRT (XNNPACK) — runs inside the environment made by scripts/setup_litert.sh.

It must not import edgekd or torch: that environment holds TensorFlow and its own pins, kept apart from ours.

The .tflite is the float32 conversion of an artifact's ``model.onnx`` (one NCHW input) that
``edgekd.compile.litert.to_tflite`` made on the host with this environment's onnx2tf (``edgekd bench --baseline
litert`` converts the same way); the ONNX file tells the output's layout. The model is loaded with
``ai_edge_litert.interpreter.Interpreter`` and its default op resolver, which applies the XNNPACK delegate to
float models; ``xnnpack`` in the output says whether a delegate node was found in the loaded graph,
``xnnpack_whole_graph`` whether one XNNPACK partition runs the whole graph (input to output). Protocol as in
bench_runtime.py: warm-up >= 1 run and >= 0.5 s, then >= 50 runs and >= 1 s; one run = set input, invoke, read
output (what ONNX Runtime's ``session.run`` does).

Prints one JSON object on stdout; on error one line on stderr and exit status 2. Example::

    ~/.cache/edgekd/litert-env/bin/python scripts/litert_time.py --tflite model.tflite --onnx model.onnx \\
        --input input.bin --shape 1,3,32,32 --threads 2 --reference output.bin
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from timing_protocol import time_callable


class Failure(Exception):
    """An error reported as one line on stderr."""


def load_interpreter(tflite: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT logs "Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2; keep it off our one-line stderr.
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            interpreter = Interpreter(model_path=str(tflite), num_threads=threads)
            interpreter.allocate_tensors()
        except Exception as error:
            raise Failure(f"LiteRT could not load {tflite}: {error}") from error
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return interpreter


def xnnpack_usage(interpreter) -> tuple[bool, bool]:
    """(a delegate node exists, one delegate node reads every graph input and writes every graph output).

    No delegate is passed explicitly, so a DELEGATE node can only be the default XNNPACK delegate. A single
    partition that spans the graph's inputs to its outputs means no op falls back to the builtin kernels.
    """
    delegates = [op for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE"]
    inputs = {d["index"] for d in interpreter.get_input_details()}
    outputs = {d["index"] for d in interpreter.get_output_details()}
    whole = len(delegates) == 1 and inputs <= set(delegates[0]["inputs"].tolist()) \
        and outputs <= set(delegates[0]["outputs"].tolist())
    return bool(delegates), whole


def onnx_output_shape(onnx_path: Path) -> tuple[int, ...] | None:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims) if dims and all(d.dim_value > 0 for d in dims) else None


def to_reference_layout(output: np.ndarray, onnx_shape: tuple[int, ...] | None) -> np.ndarray:
    # onnx2tf turns 4-D NCHW outputs into NHWC; compare in the ONNX layout.
    if onnx_shape and output.shape != onnx_shape and output.ndim == 4 \
            and output.shape == (onnx_shape[0], onnx_shape[2], onnx_shape[3], onnx_shape[1]):
        return output.transpose(0, 3, 1, 2)
    return output


def read_float32(path: Path, count: int | None, what: str) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.float32)
    except OSError as error:
        raise Failure(f"cannot read {what} {path}: {error.strerror}") from error
    if count is not None and data.size != count:
        raise Failure(f"{what} {path} holds {data.size} float32 values, expected {count}")
    return data


def measure(args: argparse.Namespace) -> dict:
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise Failure(f"no ONNX file at {onnx_path}")
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError as error:
        raise Failure(f"--shape must be comma-separated integers, got {args.shape!r}") from error
    example = read_float32(Path(args.input), int(np.prod(shape)), "input").reshape(shape)

    tflite = Path(args.tflite)
    if not tflite.is_file():
        raise Failure(f"no .tflite file at {tflite}")
    interpreter = load_interpreter(tflite, args.threads)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1:
        raise Failure(f"{tflite} has {len(inputs)} inputs, expected 1")
    want = tuple(int(v) for v in inputs[0]["shape"])
    if inputs[0]["dtype"] != np.float32:
        raise Failure(f"{tflite} input is {np.dtype(inputs[0]['dtype']).name}, expected float32")
    if want == shape:
        feed = example
    elif len(shape) == 4 and want == (shape[0], shape[2], shape[3], shape[1]):
        feed = example.transpose(0, 2, 3, 1)  # onnx2tf makes image inputs NHWC; transpose once, outside timing
    else:
        raise Failure(f"{tflite} expects input shape {list(want)}, incompatible with --shape {list(shape)}")
    feed = np.ascontiguousarray(feed, dtype=np.float32)
    in_index, out_index = inputs[0]["index"], outputs[0]["index"]

    def run() -> np.ndarray:
        interpreter.set_tensor(in_index, feed)
        interpreter.invoke()
        return interpreter.get_tensor(out_index)

    max_abs_err = None
    if args.reference:
        output = to_reference_layout(run(), onnx_output_shape(onnx_path))
        reference = read_float32(Path(args.reference), output.size, "reference")
        max_abs_err = float(np.max(np.abs(output.reshape(-1).astype(np.float64) - reference)))
    timing = time_callable(run)
    xnnpack, whole = xnnpack_usage(interpreter)
    return timing | {"litert_version": metadata.version("ai-edge-litert"), "xnnpack": xnnpack,
                     "xnnpack_whole_graph": whole, "max_abs_err": max_abs_err,
                     "tflite": str(tflite.resolve())}


def usage_error(message: str):
    print(f"litert_time: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", required=True, help="the float32 .tflite (edgekd.compile.litert.to_tflite)")
    parser.add_argument("--onnx", required=True, help="the ONNX model it was converted from (its output layout)")
    parser.add_argument("--input", required=True, help="raw float32 input tensor (NCHW, --shape)")
    parser.add_argument("--shape", required=True, help="input shape, e.g. 1,3,32,32")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT/XNNPACK threads (default 2)")
    parser.add_argument("--reference", default=None, help="raw float32 expected output, for max_abs_err")
    parser.error = usage_error  # one line, like every other error
    args = parser.parse_args(argv)
    try:
        result = measure(args)
    except Failure as error:
        print(f"litert_time: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # anything unexpected still ends in one line
        print(f"litert_time: {type(error).__name__}: {error}".replace("\n", " "), file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
