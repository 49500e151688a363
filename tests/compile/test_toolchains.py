"""Clear one-line errors for missing compilers, NDK and runtimes; the zig wrapper is one executable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgekd.compile import toolchains
from edgekd.compile.api import CompileOptions, compile_model
from edgekd.compile.runtime_libs import get_runtime_libs
from edgekd.compile.toolchains import get_toolchain
from edgekd.config.target import load_target
from edgekd.errors import ToolchainError


def test_zig_wrapper_is_one_executable_for_the_glibc_floor():
    chain = get_toolchain(load_target("jetson-tx2"))
    assert os.access(chain.compiler(), os.X_OK)
    assert "aarch64-linux-gnu.2.27" in Path(chain.compiler()).read_text()
    version = subprocess.run([chain.compiler(), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "clang" in version.stdout


def test_missing_ndk_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    with pytest.raises(ToolchainError, match="ANDROID_NDK_HOME is not set; install the Android NDK"):
        compile_model(object(), "android-arm64", tmp_path / "out")
    monkeypatch.setenv("ANDROID_NDK_HOME", str(tmp_path))
    with pytest.raises(ToolchainError, match="is not an Android NDK"):
        get_toolchain(load_target("android-arm64"))


def test_missing_host_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(ToolchainError, match="host C compiler .* not found; install gcc or clang"):
        compile_model(object(), "host", tmp_path / "out")


def test_missing_zig_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(toolchains.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ziglang" else __import__("importlib").util.find_spec(name))
    with pytest.raises(ToolchainError, match="cross compiler zig not found; install it with"):
        get_toolchain(load_target("raspberry-pi-4"))


def test_android_runtime_must_be_supplied(monkeypatch):
    monkeypatch.delenv("EDGEKD_ANDROID_TVM_RUNTIME", raising=False)
    with pytest.raises(ToolchainError, match="no TVM runtime for this board is on PyPI"):
        get_runtime_libs(load_target("android-arm64"))


def test_aarch64_runtime_comes_from_the_pinned_wheels():
    libs = get_runtime_libs(load_target("raspberry-pi-5"))
    assert all(path.is_file() for path in libs.files)
    assert libs.tvm_version.startswith("0.27") and "manylinux_2_28_aarch64" in str(libs.directory)
    assert libs.files[0].read_bytes()[18] == 0xB7  # e_machine EM_AARCH64


def test_compile_options_reject_negative_trials(tmp_path):
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="tune_trials=-1"):
        compile_model(object(), "host", tmp_path / "out", CompileOptions(tune_trials=-1))
    with pytest.raises(ConfigError, match="tune_trials_per_task=0"):
        compile_model(object(), "host", tmp_path / "out", CompileOptions(tune_trials_per_task=0))
