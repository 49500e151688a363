"""The host runner refuses inputs it cannot feed (issue 14): overflowing or absurd ``--shape``, an input file
whose size does not match shape x dtype, a dtype it cannot feed, and a model with several outputs.

Each refusal is one line on stderr with a distinct exit code (3: input refused, 4: model output unsupported).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.compile import CompileOptions, compile_model, read_manifest
from edgekd.compile.runner import _cache_key, runner_source

EXIT_INPUT = 3
EXIT_MODEL = 4
QUICK = ["--warmup-runs", "1", "--warmup-seconds", "0", "--runs", "1", "--min-seconds", "0"]


def _runner(artifact: Path, *args: str) -> subprocess.CompletedProcess:
    manifest = read_manifest(artifact)
    command = [str(artifact / manifest.runner), "--model", str(artifact / manifest.library), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _refused(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.startswith("edgekd-runner: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize("shape", ["4294967296,4294967296", "65536,65536,65536,65536", "9223372036854775807,2"])
def test_overflowing_shape_is_refused(host_artifact, shape):
    _refused(_runner(host_artifact, "--shape", shape, "--seed", "1"), EXIT_INPUT, "overflow", shape)


def test_absurd_input_size_is_refused(host_artifact):
    # 48 GiB of float32: no allocation is attempted, the size is refused first
    _refused(_runner(host_artifact, "--shape", "1,3,65536,65536", "--input", str(host_artifact / "input.bin")),
             EXIT_INPUT, "limit")


def test_zero_sized_shape_is_refused(host_artifact):
    _refused(_runner(host_artifact, "--shape", "1,0,32,32", "--seed", "1"), EXIT_INPUT, "zero")


def test_input_file_size_mismatch_is_refused(host_artifact, tmp_path):
    good = host_artifact / "input.bin"
    line = _refused(_runner(host_artifact, "--shape", "1,3,16,16", "--input", str(good)), EXIT_INPUT,
                    "does not match --shape", "12288", "3072")
    assert "float32" in line
    short = tmp_path / "short.bin"
    short.write_bytes(good.read_bytes()[:-1])
    _refused(_runner(host_artifact, "--shape", "1,3,32,32", "--input", str(short)), EXIT_INPUT, "12287", "12288")
    # the same bytes read as int8 are four times too many
    _refused(_runner(host_artifact, "--shape", "1,3,32,32", "--dtype", "int8", "--input", str(good)), EXIT_INPUT,
             "int8", "3072")


def test_unsupported_dtype_is_refused(host_artifact):
    for dtype in ("bfloat16", "float16", "complex64", ""):
        _refused(_runner(host_artifact, "--shape", "1,3,32,32", "--dtype", dtype, "--seed", "1"), EXIT_INPUT,
                 "--dtype", "float32")


def test_explicit_float32_dtype_runs(host_artifact):
    result = _runner(host_artifact, "--shape", "1,3,32,32", "--dtype", "float32",
                     "--input", str(host_artifact / "input.bin"), *QUICK)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"]["shape"] == [1, 10]


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.fc(x)
        return y, y * 2.0


@pytest.fixture(scope="module")
def two_output_artifact(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("compile") / "two-heads"
    compile_model(_TwoHeads(), "host", out, CompileOptions(model_name="twoheads", input_shape=(1, 8), onnx=False))
    return out


def test_model_with_several_outputs_is_refused(two_output_artifact):
    result = _runner(two_output_artifact, "--shape", "1,8", "--seed", "1", *QUICK)
    _refused(result, EXIT_MODEL, "2 outputs")


def test_runner_cache_key_follows_the_source(tmp_path, monkeypatch):
    """An edited runner.c gets a new build directory (the cache is keyed by the source's hash)."""
    from edgekd.compile import runner as runner_module

    class _Toolchain:
        name, executable = "cc", Path("/usr/bin/cc")

    class _Runtime:
        directory, files, tvm_version = tmp_path, (), "0"

    before = _cache_key(_Toolchain(), _Runtime())
    edited = tmp_path / "runner.c"
    edited.write_text(runner_source().read_text() + "\n/* edited */\n")
    monkeypatch.setattr(runner_module, "runner_source", lambda: edited)
    assert _cache_key(_Toolchain(), _Runtime()) != before
