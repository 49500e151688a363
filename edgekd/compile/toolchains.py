"""C toolchains that link a target's binaries (TVM model library, device runner), looked up by name.

Input: a :class:`~edgekd.config.target.TargetProfile` (its ``toolchain`` names an entry of
:data:`TOOLCHAINS`). Output: a :class:`Toolchain` whose :meth:`Toolchain.compiler` is ONE executable
(TVM's ``cc.cross_compiler`` wants a single program, so zig and the NDK get a small wrapper script in
``cache_dir()/toolchains/``) plus :meth:`Toolchain.compile` for C sources.

- ``zig-aarch64``: ``python -m ziglang cc -target aarch64-linux-gnu.<glibc floor>`` (zig from PyPI); its
  cache lives in ``cache_dir()/zig`` (the first build fills ~100 MB, later builds are fast).
- ``host-cc``: ``$CC`` or ``cc`` for the machine running edgekd.
- ``android-ndk``: the NDK's ``aarch64-linux-android<API>-clang`` under ``$ANDROID_NDK_HOME``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekd.atomic import atomic_write_text
from edgekd.config.target import TargetProfile
from edgekd.errors import ToolchainError
from edgekd.paths import cache_dir

__all__ = ["Toolchain", "TOOLCHAINS", "get_toolchain", "ANDROID_API_LEVEL"]

ANDROID_API_LEVEL = 24


@dataclass(frozen=True)
class Toolchain:
    """One ready-to-run C compiler for a target."""

    name: str
    executable: Path
    description: str

    def compiler(self) -> str:
        """The single executable to hand to ``tvm.support.cc.cross_compiler``."""
        return str(self.executable)

    def compile(self, sources: Sequence[Path | str], output: Path, flags: Sequence[str] = ()) -> Path:
        """Compile/link ``sources`` into ``output``; a failure is a ToolchainError with the compiler's error."""
        command = [str(self.executable), *map(str, sources), "-o", str(output), *flags]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            first = next((line for line in result.stderr.splitlines() if "error" in line.lower()),
                         result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output")
            raise ToolchainError(f"{self.name} failed to build {output.name}: {first}")
        return output


def _wrapper(name: str, command: list[str], env: dict[str, str]) -> Path:
    """A cached shell script that execs ``command`` with ``env``; rewritten only when its text changes."""
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
    text = f"#!/bin/sh\n{exports}exec {shlex.join(command)} \"$@\"\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = cache_dir() / "toolchains" / f"{name}-{digest}.sh"
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
        path.chmod(0o755)
    return path


def _zig_aarch64(profile: TargetProfile) -> Toolchain:
    if importlib.util.find_spec("ziglang") is None:
        raise ToolchainError(
            f"target {profile.name}: cross compiler zig not found; install it with "
            f"'{sys.executable} -m pip install ziglang' (it is in requirements.lock)"
        )
    zig_cache = str(cache_dir() / "zig")
    triple = f"aarch64-linux-gnu.{profile.glibc_floor}"
    script = _wrapper(f"zig-{triple}", [sys.executable, "-m", "ziglang", "cc", "-target", triple],
                      {"ZIG_GLOBAL_CACHE_DIR": zig_cache, "ZIG_LOCAL_CACHE_DIR": zig_cache})
    return Toolchain("zig-aarch64", script, f"zig cc -target {triple}")


def _host_cc(profile: TargetProfile) -> Toolchain:
    requested = os.environ.get("CC", "cc")
    found = shutil.which(requested)
    if found is None:
        raise ToolchainError(
            f"target {profile.name}: host C compiler {requested!r} not found; install gcc or clang, "
            f"or set CC to a C compiler"
        )
    return Toolchain("host-cc", Path(found), f"host {Path(found).name}")


def _android_ndk(profile: TargetProfile) -> Toolchain:
    ndk_home = os.environ.get("ANDROID_NDK_HOME")
    if not ndk_home:
        raise ToolchainError(
            f"target {profile.name}: ANDROID_NDK_HOME is not set; install the Android NDK (r23 or newer) "
            f"and set ANDROID_NDK_HOME to its directory"
        )
    clang = (Path(ndk_home) / "toolchains" / "llvm" / "prebuilt" / "linux-x86_64" / "bin"
             / f"aarch64-linux-android{ANDROID_API_LEVEL}-clang")
    if not clang.is_file():
        raise ToolchainError(
            f"target {profile.name}: {clang} not found; ANDROID_NDK_HOME={ndk_home} is not an Android NDK "
            f"for linux-x86_64 with API level {ANDROID_API_LEVEL}"
        )
    return Toolchain("android-ndk", clang, f"NDK clang API {ANDROID_API_LEVEL}")


TOOLCHAINS: dict[str, Callable[[TargetProfile], Toolchain]] = {
    "zig-aarch64": _zig_aarch64,
    "host-cc": _host_cc,
    "android-ndk": _android_ndk,
}


def get_toolchain(profile: TargetProfile) -> Toolchain:
    """The toolchain a profile names, checked to be usable.

    Raises:
        ToolchainError: the compiler (zig, cc, NDK) is missing, naming how to install it.
    """
    try:
        factory = TOOLCHAINS[profile.toolchain]
    except KeyError:
        raise ToolchainError(
            f"target {profile.name}: unknown toolchain {profile.toolchain!r}; known: {', '.join(TOOLCHAINS)}"
        ) from None
    return factory(profile)
