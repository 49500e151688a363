"""docs/deploy.md's examples (issue 12, item 6): ``examples/deploy/classify.c`` built with the target's toolchain
against the artifact's runtime libraries and ``edgekd_model.c`` (the runner's loading piece), run on the host
and on aarch64 under qemu; ``classify.py`` with the TVM wheel. Both match PyTorch within 1e-4 on two inputs
whose outputs differ."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from compile_helpers import read_float32
from support import require, require_executable

from edgekd.compile import read_manifest
from edgekd.compile.runner import build_for_artifact
from edgekd.errors import ToolchainError
from edgekd.testing.models import small_net

TOLERANCE = 1e-4
QEMU_SYSROOT = Path("/usr/aarch64-linux-gnu")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "deploy"
LINE = re.compile(r"image 0: class (\d+) \(logit \S+\)")


def _deployed(artifact: Path, tmp_path: Path) -> Path:
    """A copy of the artifact (as pushed to a board) with the C example built into it, as docs/deploy.md says."""
    board = tmp_path / "board"
    shutil.copytree(artifact, board)
    build_for_artifact([EXAMPLES / "classify.c"], board / "classify", board)
    return board


def _inputs(artifact: Path, tmp_path: Path) -> list[tuple[Path, np.ndarray]]:
    """The artifact's input.bin and a second input, each with PyTorch's output for the same SmallNet."""
    shape = read_manifest(artifact).input.shape
    second = tmp_path / "second.bin"
    torch.randn(shape, generator=torch.Generator().manual_seed(1)).numpy().tofile(second)
    model = small_net()  # the fixtures compiled small_net() (seeded): the same weights
    pairs = []
    for path in (artifact / "input.bin", second):
        with torch.no_grad():
            expected = model(torch.from_numpy(read_float32(path, shape))).numpy()
        pairs.append((path, expected))
    np.testing.assert_allclose(pairs[0][1], read_float32(artifact / "reference_output.bin", [1, 10]), atol=1e-6)
    assert np.abs(pairs[0][1] - pairs[1][1]).max() > 1e-2  # non-vacuous: the output follows the input
    return pairs


def _check_example(board: Path, tmp_path: Path, prefix: list[str]) -> None:
    shape = ",".join(map(str, read_manifest(board).input.shape))
    outputs = []
    for index, (path, expected) in enumerate(_inputs(board, tmp_path)):
        logits = tmp_path / f"logits-{index}.bin"
        result = subprocess.run([*prefix, str(board / "classify"), str(board / "model.so"), str(path), shape,
                                 str(logits)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        got = read_float32(logits, list(expected.shape))
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
        assert int(LINE.fullmatch(result.stdout.strip()).group(1)) == int(expected.argmax())
        outputs.append(got)
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-2


def test_c_example_on_the_host(host_artifact, tmp_path):
    board = _deployed(host_artifact, tmp_path)
    needed = subprocess.run(["ldd", str(board / "classify")], capture_output=True, text=True).stdout
    assert str(board / "lib" / "libtvm_runtime.so") in needed, needed  # the artifact's runtime, via $ORIGIN/lib
    _check_example(board, tmp_path, [])


def test_c_example_on_aarch64_under_qemu(tx2_artifact, tmp_path):
    qemu = require_executable("qemu-aarch64")
    require(QEMU_SYSROOT.is_dir(), f"aarch64 glibc sysroot {QEMU_SYSROOT}")
    board = _deployed(tx2_artifact, tmp_path)
    header = subprocess.run(["readelf", "-h", str(board / "classify")], capture_output=True, text=True).stdout
    assert "AArch64" in header
    _check_example(board, tmp_path, [qemu, "-L", str(QEMU_SYSROOT)])


def test_c_example_errors_are_one_line(host_artifact, tmp_path):
    board = _deployed(host_artifact, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(board / "classify"), *args], capture_output=True, text=True, timeout=60)

    wrong_size = run(str(board / "model.so"), str(board / "input.bin"), "1,3,16,16")
    assert wrong_size.returncode == 1 and wrong_size.stdout == ""
    assert wrong_size.stderr.count("\n") == 1 and "expected exactly 3072 bytes" in wrong_size.stderr
    not_a_model = run(str(board / "input.bin"), str(board / "input.bin"), "1,3,32,32")
    assert not_a_model.returncode == 1 and not_a_model.stderr.count("\n") == 1
    assert not_a_model.stderr.startswith("classify: error: loading model library: ")
    missing = run(str(tmp_path / "nope.so"), str(board / "input.bin"), "1,3,32,32")
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr
    usage = run(str(board / "model.so"))
    assert usage.returncode == 2 and "usage: classify" in usage.stderr


def test_build_for_an_artifact_without_runtime_libraries_is_refused(host_artifact, tmp_path):
    board = tmp_path / "bare"
    shutil.copytree(host_artifact, board)
    manifest = json.loads((board / "manifest.json").read_text())
    (board / "manifest.json").write_text(json.dumps(manifest | {"runner": None, "runtime_libs": []}))
    with pytest.raises(ToolchainError, match="holds no runtime libraries"):
        build_for_artifact([EXAMPLES / "classify.c"], board / "classify", board)


def test_python_example_with_the_tvm_wheel(host_artifact, tmp_path):
    outputs = []
    for index, (path, expected) in enumerate(_inputs(host_artifact, tmp_path)):
        logits = tmp_path / f"py-{index}.bin"
        result = subprocess.run([sys.executable, str(EXAMPLES / "classify.py"), str(host_artifact), str(path),
                                 "--logits", str(logits)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert int(LINE.fullmatch(result.stdout.strip()).group(1)) == int(expected.argmax())
        outputs.append(read_float32(logits, list(expected.shape)))
        np.testing.assert_allclose(outputs[-1], expected, atol=TOLERANCE, rtol=0)
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-2
    refused = subprocess.run([sys.executable, str(EXAMPLES / "classify.py"), str(host_artifact),
                              str(host_artifact / "reference_output.bin")], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "needs 3072" in refused.stderr
