"""An artifact's ``model.onnx`` as a float32 ``.tflite`` for LiteRT (XNNPACK), the runtime edge users pick on ARM.

The conversion runs onnx2tf, which needs TensorFlow and pins numpy, onnx and protobuf of its own: it lives in an
environment of its own (``scripts/setup_litert.sh`` makes one at ``~/.cache/edgekd/litert-env``), never in the
one that holds the locked torch, and is run there as a separate process. Converted files are cached in the user
cache under the ONNX file's sha256 and the converter's version, so a second bench does not convert again.

Two traps of onnx2tf are handled here: it overwrites the ONNX file it is given with its simplified graph (it is
handed a copy, never the artifact's own file), and for 4-D inputs it downloads a sample image from GitHub for its
accuracy checks unless the file is in its working directory (random data is written there instead).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.atomic import sha256_file
from edgekd.errors import ToolchainError
from edgekd.paths import cache_dir

__all__ = ["LiteRTModel", "converter_python", "default_environment", "to_tflite"]

ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
CONVERT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class LiteRTModel:
    """A converted model: the ``.tflite`` file, its sha256 and the converter that made it."""

    path: Path
    sha256: str
    converter: str  # e.g. "onnx2tf 1.29.24"


def default_environment() -> Path:
    """Where ``scripts/setup_litert.sh`` puts the environment (``$EDGEKD_LITERT_ENV`` overrides)."""
    return Path(os.environ.get("EDGEKD_LITERT_ENV", Path.home() / ".cache" / "edgekd" / "litert-env"))


def converter_python(python: str | None = None) -> str:
    """The interpreter that has onnx2tf: ``python`` if given, else the default environment's.

    Raises:
        ToolchainError: none there.
    """
    candidate = python or str(default_environment() / "bin" / "python")
    if shutil.which(candidate) is None:
        raise ToolchainError(
            f"the LiteRT baseline converts model.onnx with onnx2tf (TensorFlow), kept in an environment of its own; "
            f"no interpreter at {candidate}: run `bash scripts/setup_litert.sh` from the edgekd source, or pass "
            f"--litert-converter PYTHON (a Python with onnx2tf and ai-edge-litert)")
    return candidate


@functools.lru_cache(maxsize=8)  # one interpreter start per converter, not one per bench round
def _converter_version(python: str) -> str:
    done = subprocess.run([python, "-c", "from importlib.metadata import version; print(version('onnx2tf'))"],
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0 or not done.stdout.strip():
        raise ToolchainError(f"{python} has no onnx2tf (run `bash scripts/setup_litert.sh`, or pass "
                             f"--litert-converter PYTHON with onnx2tf installed)")
    return done.stdout.strip().splitlines()[-1]


def to_tflite(onnx_path: Path, python: str | None = None, cache: Path | None = None) -> LiteRTModel:
    """The cached float32 ``.tflite`` of ``onnx_path``, converting it first if needed (atomic: a concurrent caller
    never sees a partial file).

    Raises:
        ToolchainError: no converter environment, or onnx2tf failed (its last line).
    """
    interpreter = converter_python(python)
    version = _converter_version(interpreter)
    folder = cache or cache_dir() / "litert"
    target = folder / f"{sha256_file(onnx_path)}.onnx2tf-{version}.float32.tflite"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder))
        try:
            _convert(interpreter, version, onnx_path, work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return LiteRTModel(target, sha256_file(target), f"onnx2tf {version}")


def _convert(python: str, version: str, onnx_path: Path, work: Path, target: Path) -> None:
    np.save(work / ONNX2TF_SAMPLE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    source = work / "model.onnx"  # a copy: onnx2tf writes its simplified graph over the file it is given
    shutil.copyfile(onnx_path, source)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    try:
        done = subprocess.run([python, "-m", "onnx2tf", "-i", str(source), "-o", "out", "-n"], cwd=work, env=env,
                              capture_output=True, text=True, check=False, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"onnx2tf {version} did not convert {onnx_path} within {CONVERT_TIMEOUT_S:.0f} s") \
            from None
    produced = work / "out" / "model_float32.tflite"
    if done.returncode != 0 or not produced.is_file():
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ToolchainError(f"onnx2tf {version} failed to convert {onnx_path}: "
                             f"{lines[-1] if lines else f'exit status {done.returncode}'}")
    os.replace(produced, target)
