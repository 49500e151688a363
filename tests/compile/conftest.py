"""Fixtures for the compile stage: artifacts compiled once per session and shared by read-only tests.

The zig cache, runtime wheels and runner builds live in the shared ``cache_dir()`` so later runs are fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgekd.compile import CompileOptions, compile_model
from edgekd.testing.models import small_net


@pytest.fixture(scope="session")
def host_artifact(tmp_path_factory) -> Path:
    """SmallNet compiled for the host target (untuned, with runner, runtime libs and ONNX)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compile") / "host"
    compile_model(small_net(), "host", out, CompileOptions(model_name="smallnet"))
    return out


@pytest.fixture(scope="session")
def tx2_artifact(tmp_path_factory) -> Path:
    """SmallNet cross-compiled for jetson-tx2 (zig, glibc 2.27, aarch64 runtime wheels)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compile") / "jetson-tx2"
    compile_model(small_net(), "jetson-tx2", out, CompileOptions(model_name="smallnet", onnx=False))
    return out
