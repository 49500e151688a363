"""Build the plain-C device runner (``runner/runner.c``) for a target, and users' programs that load artifacts.

Input: a :class:`~edgekd.compile.toolchains.Toolchain` and the board's :class:`RuntimeLibs`. Output: the
``edgekd-runner`` executable, linked against ``libtvm_runtime.so``/``libtvm_ffi.so`` with
``rpath=$ORIGIN/lib`` (so it must sit next to the artifact's ``lib/``). Builds are cached in
``cache_dir()/runner/<key>/`` keyed by the sources, the toolchain and the runtime libraries. The runner's
command line and JSON output are specified in docs/artifacts.md.

The runner's loading code is a separate piece, ``runner/edgekd_model.{h,c}`` (load ``model.so``, set an
input, run, copy the output; plain C over the tvm-ffi C ABI). :func:`build_program` compiles a user's own C
program with it, with the same toolchain and flags as the runner, and :func:`build_for_artifact` does so for
an artifact's target and runtime libraries (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgekd.atomic import sha256_file
from edgekd.compile.runtime_libs import LIBRARY_NAMES, RuntimeLibs, tvm_ffi_include_dir
from edgekd.compile.toolchains import Toolchain
from edgekd.errors import ToolchainError
from edgekd.paths import cache_dir, package_root

__all__ = ["RUNNER_NAME", "TIMER_NAME", "timer_source", "build_timer",
           "runner_source", "runner_dir", "model_loader_sources", "program_flags", "build_program",
           "build_for_artifact", "build_runner"]

RUNNER_NAME = "edgekd-runner"
TIMER_NAME = "edgekd-timer"
MODEL_LOADER = "edgekd_model"


def runner_dir() -> Path:
    """The directory of the C sources shipped inside the package (``runner.c``, ``edgekd_model.h/.c``):
    the include directory for ``#include "edgekd_model.h"``."""
    return package_root() / "compile" / "runner"


def runner_source() -> Path:
    """The runner's C source shipped inside the package."""
    return runner_dir() / "runner.c"


def timer_source() -> Path:
    """The board-side candidate timer's C source (``runner/timer.c``; used by tuning over SSH)."""
    return runner_dir() / "timer.c"


def model_loader_sources() -> list[Path]:
    """The reusable loading piece: ``edgekd_model.c`` and its header ``edgekd_model.h`` (in :func:`runner_dir`)."""
    return [runner_dir() / f"{MODEL_LOADER}.c", runner_dir() / f"{MODEL_LOADER}.h"]


def program_flags(runtime_dir: Path | str) -> list[str]:
    """Compiler/linker flags for a C program using ``edgekd_model.h`` against the runtime libraries in
    ``runtime_dir`` (``libtvm_runtime.so``, ``libtvm_ffi.so``); the program finds them at run time in the
    ``lib/`` directory beside it (``rpath=$ORIGIN/lib``)."""
    return [
        "-O2", "-std=c11", f"-I{runner_dir()}", f"-I{tvm_ffi_include_dir()}",
        f"-L{runtime_dir}", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-lm",
        "-Wl,-rpath,$ORIGIN/lib",
    ]


def _link_flags(runtime: RuntimeLibs) -> list[str]:
    return [*program_flags(runtime.directory), f'-DEDGEKD_TVM_RUNTIME_VERSION="{runtime.tvm_version}"']


def build_program(toolchain: Toolchain, sources: Sequence[Path | str], output: Path | str,
                  runtime_dir: Path | str, flags: Sequence[str] = ()) -> Path:
    """Compile and link the C ``sources`` (a program's own files) with ``edgekd_model.c`` into ``output``,
    against the runtime libraries in ``runtime_dir``. ``flags`` are added after edgekd's.

    Raises:
        ToolchainError: ``runtime_dir`` lacks a runtime library, or the compiler failed (its first error line).
    """
    missing = [name for name in LIBRARY_NAMES if not (Path(runtime_dir) / name).is_file()]
    if missing:
        raise ToolchainError(f"{runtime_dir}: no {', '.join(missing)} to link against")
    loader = model_loader_sources()[0]
    return toolchain.compile([*sources, loader], Path(output), [*program_flags(runtime_dir), *flags])


def build_for_artifact(sources: Sequence[Path | str], output: Path | str, artifact: Path | str,
                       target: str | Path | None = None, flags: Sequence[str] = ()) -> Path:
    """:func:`build_program` with the toolchain of the artifact's target (``manifest.target.name`` unless
    ``target`` names a profile) and the runtime libraries the artifact ships (``lib/``). Put ``output`` in
    the artifact directory (or beside a copy of its ``lib/``): it loads the libraries from ``$ORIGIN/lib``.

    Raises:
        CheckpointError: not an artifact. ConfigError: unknown target. ToolchainError: no compiler, no runtime
        libraries in the artifact (compiled with ``runner=False``), or the build failed.
    """
    from edgekd.compile.artifact import read_manifest
    from edgekd.compile.toolchains import get_toolchain
    from edgekd.config.target import load_target

    manifest = read_manifest(artifact)
    if not manifest.runtime_libs:
        raise ToolchainError(f"{artifact}: the artifact holds no runtime libraries (it was compiled without the "
                             f"runner); compile it again with the runner")
    runtime_dir = Path(artifact) / Path(manifest.runtime_libs[0]).parent
    toolchain = get_toolchain(load_target(target if target is not None else manifest.target.name))
    return build_program(toolchain, sources, output, runtime_dir, flags)


def _cache_key(toolchain: Toolchain, runtime: RuntimeLibs) -> str:
    # Wrapper scripts carry a digest of their text in their name, so the path identifies the compiler.
    parts = [sha256_file(runner_source()), *(sha256_file(path) for path in model_loader_sources()),
             toolchain.name, str(toolchain.executable),
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
        built = toolchain.compile([runner_source(), model_loader_sources()[0]], Path(staging) / RUNNER_NAME,
                                  _link_flags(runtime))
        shutil.move(str(built), output)
    return output


def build_timer(toolchain: Toolchain, runtime: RuntimeLibs) -> Path:
    """The board-side MetaSchedule candidate timer (``edgekd-timer``, ``runner/timer.c``) for this toolchain and
    runtime: built like the runner (same compiler, glibc floor, flags, ``rpath=$ORIGIN/lib``) and cached.

    Raises:
        ToolchainError: the compiler failed (its first error line is in the message).
    """
    parts = [sha256_file(timer_source()), toolchain.name, str(toolchain.executable),
             *(sha256_file(path) for path in runtime.files), " ".join(_link_flags(runtime))]
    directory = cache_dir() / "timer" / hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    output = directory / TIMER_NAME
    if output.is_file():
        return output
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as staging:
        built = toolchain.compile([timer_source()], Path(staging) / TIMER_NAME, _link_flags(runtime))
        shutil.move(str(built), output)
    return output
