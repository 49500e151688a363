"""Build the plain-C device runner (``runner/runner.c``) for a target.

Input: a :class:`~edgekd.compile.toolchains.Toolchain` and the board's :class:`RuntimeLibs`. Output: the
``edgekd-runner`` executable, linked against ``libtvm_runtime.so``/``libtvm_ffi.so`` with
``rpath=$ORIGIN/lib`` (so it must sit next to the artifact's ``lib/``). Builds are cached in
``cache_dir()/runner/<key>/`` keyed by the source, the toolchain and the runtime libraries. The runner's
command line and JSON output are specified in docs/artifacts.md.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from edgekd.atomic import sha256_file
from edgekd.compile.runtime_libs import RuntimeLibs, tvm_ffi_include_dir
from edgekd.compile.toolchains import Toolchain
from edgekd.paths import cache_dir, package_root

__all__ = ["RUNNER_NAME", "runner_source", "build_runner"]

RUNNER_NAME = "edgekd-runner"


def runner_source() -> Path:
    """The C source shipped inside the package."""
    return package_root() / "compile" / "runner" / "runner.c"


def _link_flags(runtime: RuntimeLibs) -> list[str]:
    return [
        "-O2", "-std=c11", f"-I{tvm_ffi_include_dir()}",
        f'-DEDGEKD_TVM_RUNTIME_VERSION="{runtime.tvm_version}"',
        f"-L{runtime.directory}", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-lm",
        "-Wl,-rpath,$ORIGIN/lib",
    ]


def _cache_key(toolchain: Toolchain, runtime: RuntimeLibs) -> str:
    # Wrapper scripts carry a digest of their text in their name, so the path identifies the compiler.
    parts = [sha256_file(runner_source()), toolchain.name, str(toolchain.executable),
             *(sha256_file(path) for path in runtime.files), " ".join(_link_flags(runtime))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_runner(toolchain: Toolchain, runtime: RuntimeLibs) -> Path:
    """The runner executable for this toolchain and runtime, built on first use and cached.

    Raises:
        ToolchainError: the compiler failed (its first error line is in the message).
    """
    directory = cache_dir() / "runner" / _cache_key(toolchain, runtime)
    output = directory / RUNNER_NAME
    if output.is_file():
        return output
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as staging:
        built = toolchain.compile([runner_source()], Path(staging) / RUNNER_NAME, _link_flags(runtime))
        shutil.move(str(built), output)
    return output
