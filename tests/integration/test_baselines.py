"""ONNX Runtime and LiteRT (XNNPACK) timed on the same board in the same bench as TVM (interleaved repeats, same
input and threads), stored as rows with ``runtime=onnxruntime`` / ``litert``; an emulated board, a board without
onnxruntime and a host without the LiteRT converter say so in one line and keep the TVM rows already measured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from support import require
from torch import nn

from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.errors import DeviceError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from edgekd.compile.api import CompileOptions, compile_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, 10)).eval()
    root = tmp_path_factory.mktemp("baseline")
    return compile_model(model, "host", root / "host", CompileOptions(input_shape=(1, 3, 32, 32))).path


def _options(**extra) -> BenchOptions:
    return BenchOptions(runs=10, min_seconds=0.1, warmup_seconds=0.05, timeout_s=120, idle_seconds=0.0, **extra)


def test_onnxruntime_rows_interleave_with_tvm_over_ssh(artifact, x86_board):
    kept = []
    with connect(x86_board) as conn:
        results = bench(conn, x86_board, artifact, _options(repeat=2, baselines=("onnxruntime",),
                                                            baseline_python=sys.executable), on_result=kept.append)
    assert [r.runtime for r in results] == ["tvm", "onnxruntime", "tvm", "onnxruntime"] and kept == results
    ort = results[1]
    assert ort.max_abs_diff <= 1e-4 and ort.top1_agree == 1.0 and ort.latency_valid
    assert ort.timing_ms["p50"] > 0 and ort.threads == results[0].threads
    row = ort.to_row()
    assert row["runtime"] == "onnxruntime" and row["version_onnxruntime"] and row["tuned"] is False
    assert row["device"] == "x86" and row["latency_ms_p50"] == ort.timing_ms["p50"]


def test_a_board_without_onnxruntime_keeps_the_tvm_row(artifact, x86_board, tmp_path):
    bare = tmp_path / "bare-python"  # an interpreter that cannot import onnxruntime
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S -I \"$@\"\n")
    bare.chmod(0o755)
    kept = []
    with connect(x86_board) as conn, pytest.raises(DeviceError, match="ONNX Runtime baseline failed: No module named"):
        bench(conn, x86_board, artifact, _options(baselines=("onnxruntime",), baseline_python=str(bare)),
              on_result=kept.append)
    assert [r.runtime for r in kept] == ["tvm"]


def test_no_baseline_on_an_emulated_board(tmp_path_factory, arm_board):
    from edgekd.compile.api import CompileOptions, compile_model

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).eval()
    tx2 = compile_model(model, "jetson-tx2", tmp_path_factory.mktemp("tx2") / "a",
                        CompileOptions(input_shape=(1, 3, 32, 32)))
    with connect(arm_board) as conn, pytest.raises(DeviceError, match="emulated board"):
        bench(conn, arm_board, tx2.path, _options(threads=1, baselines=("onnxruntime",)))
    # refused before anything is converted (no converter is there to convert with)
    with connect(arm_board) as conn, pytest.raises(DeviceError, match="no litert baseline on an emulated board"):
        bench(conn, arm_board, tx2.path, _options(threads=1, baselines=("litert",),
                                                  litert_converter="/nonexistent/python"))


def _litert_python() -> str:
    from edgekd.compile.litert import default_environment

    python = default_environment() / "bin" / "python"
    require(python.is_file(), f"the LiteRT environment at {python.parent.parent} (bash scripts/setup_litert.sh)")
    return str(python)


def test_litert_rows_interleave_with_tvm_over_ssh(artifact, x86_board, tmp_path):
    python = _litert_python()  # it holds onnxruntime too: both baselines run with the board's one interpreter
    with connect(x86_board) as conn:
        results = bench(conn, x86_board, artifact, _options(repeat=2, baselines=("onnxruntime", "litert"),
                                                            baseline_python=python))
    assert [r.runtime for r in results] == ["tvm", "onnxruntime", "litert"] * 2
    lite = results[2]
    # onnx2tf's float32 conversion computes what PyTorch computes, and XNNPACK runs the whole graph
    assert lite.max_abs_diff <= 1e-4 and lite.top1_agree == 1.0 and lite.latency_valid
    assert lite.runner["xnnpack_whole_graph"] is True and lite.timing_ms["p50"] > 0
    row = lite.to_row()
    assert row["runtime"] == "litert" and row["version_litert"].startswith("ai-edge-litert ")
    assert row["version_converter"].startswith("onnx2tf ") and row["tuned"] is False
    assert row["xnnpack_whole_graph"] is True and "xnnpack_whole_graph" not in results[1].to_row()
    # the converted model went to the board's cache as a verified upload of its own
    staged = list(Path(x86_board.cache_dir).glob("stage/*/*.float32.tflite"))
    assert len(staged) == 1


def test_the_litert_baseline_without_a_converter_is_one_line(artifact, x86_board):
    from edgekd.errors import ToolchainError

    with connect(x86_board) as conn, pytest.raises(ToolchainError, match="scripts/setup_litert.sh"):
        bench(conn, x86_board, artifact, _options(baselines=("litert",), litert_converter="/nonexistent/python"))
