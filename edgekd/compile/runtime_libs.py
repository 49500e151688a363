"""The board's TVM runtime libraries (``libtvm_runtime.so``, ``libtvm_ffi.so``), by runtime source.

Input: a target profile's ``runtime`` entry. Output: a :class:`RuntimeLibs` (the two library paths and
the versions they come from). Sources, looked up by name in :data:`RUNTIME_SOURCES`:

- ``wheel``: ``pip download --no-deps --only-binary=:all: --platform <tag> --python-version 3.11
  apache-tvm==<host version> apache-tvm-ffi==<host version>``, extracted once into
  ``cache_dir()/runtime/<tag>/tvm-<v>_ffi-<v>/`` (atomically; later compiles reuse it offline).
- ``installed``: the libraries of the wheels installed in this Python (host target).
- ``user``: a directory named by an environment variable (Android: no wheel exists).

The runtime must come from exactly the host's ``apache-tvm``/``apache-tvm-ffi`` versions: the model library
is compiled by the host's TVM.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekd.config.target import RuntimeSource, TargetProfile
from edgekd.errors import ToolchainError
from edgekd.paths import cache_dir

__all__ = ["RuntimeLibs", "RUNTIME_SOURCES", "get_runtime_libs", "host_versions", "tvm_ffi_include_dir",
           "LIBRARY_NAMES"]

LIBRARY_NAMES = ("libtvm_runtime.so", "libtvm_ffi.so")
_WHEEL_MEMBERS = {"libtvm_runtime.so": "tvm/lib/libtvm_runtime.so", "libtvm_ffi.so": "tvm_ffi/lib/libtvm_ffi.so"}
PYTHON_VERSION = "3.11"


@dataclass(frozen=True)
class RuntimeLibs:
    """The two runtime libraries for one board, in one directory."""

    directory: Path
    tvm_version: str
    tvm_ffi_version: str
    origin: str

    @property
    def files(self) -> list[Path]:
        return [self.directory / name for name in LIBRARY_NAMES]


def host_versions() -> tuple[str, str]:
    """The installed ``apache-tvm`` and ``apache-tvm-ffi`` versions (what the board's runtime must match)."""
    try:
        return importlib.metadata.version("apache-tvm"), importlib.metadata.version("apache-tvm-ffi")
    except importlib.metadata.PackageNotFoundError as err:
        raise ToolchainError(f"{err.name} is not installed; run scripts/setup.sh (requirements.lock)") from None


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ToolchainError(f"Python package {module} is not installed; run scripts/setup.sh")
    return Path(spec.origin).parent


def tvm_ffi_include_dir() -> Path:
    """The tvm-ffi C headers (architecture-independent) shipped in the installed ``apache-tvm-ffi`` wheel."""
    include = _package_dir("tvm_ffi") / "include"
    if not (include / "tvm" / "ffi" / "c_api.h").is_file():
        raise ToolchainError(f"{include}: tvm/ffi/c_api.h missing; reinstall apache-tvm-ffi")
    return include


def _installed(profile: TargetProfile, spec: RuntimeSource) -> RuntimeLibs:
    tvm_version, ffi_version = host_versions()
    sources = {"libtvm_runtime.so": _package_dir("tvm") / "lib" / "libtvm_runtime.so",
               "libtvm_ffi.so": _package_dir("tvm_ffi") / "lib" / "libtvm_ffi.so"}
    directory = cache_dir() / "runtime" / "installed" / f"tvm-{tvm_version}_ffi-{ffi_version}"
    if not all((directory / name).is_file() for name in LIBRARY_NAMES):
        _publish_dir(directory, lambda staging: [shutil.copy2(src, staging / name) for name, src in sources.items()])
    return RuntimeLibs(directory, tvm_version, ffi_version, "installed wheels")


def _wheel(profile: TargetProfile, spec: RuntimeSource) -> RuntimeLibs:
    tvm_version, ffi_version = host_versions()
    directory = cache_dir() / "runtime" / str(spec.platform) / f"tvm-{tvm_version}_ffi-{ffi_version}"
    if not all((directory / name).is_file() for name in LIBRARY_NAMES):
        _publish_dir(directory, lambda staging: _download_and_extract(spec.platform, tvm_version, ffi_version,
                                                                      staging))
    return RuntimeLibs(directory, tvm_version, ffi_version, f"wheels for {spec.platform}")


def _user(profile: TargetProfile, spec: RuntimeSource) -> RuntimeLibs:
    tvm_version, ffi_version = host_versions()
    value = os.environ.get(str(spec.env))
    if not value:
        raise ToolchainError(
            f"target {profile.name}: no TVM runtime for this board is on PyPI; build libtvm_runtime.so and "
            f"libtvm_ffi.so (TVM {tvm_version}, tvm-ffi {ffi_version}) for it and set {spec.env} to their directory"
        )
    directory = Path(value).expanduser()
    missing = [name for name in LIBRARY_NAMES if not (directory / name).is_file()]
    if missing:
        raise ToolchainError(f"target {profile.name}: {spec.env}={directory} lacks {', '.join(missing)}")
    return RuntimeLibs(directory, tvm_version, ffi_version, f"${spec.env}")


RUNTIME_SOURCES: dict[str, Callable[[TargetProfile, RuntimeSource], RuntimeLibs]] = {
    "wheel": _wheel,
    "installed": _installed,
    "user": _user,
}


def get_runtime_libs(profile: TargetProfile) -> RuntimeLibs:
    """The board's runtime libraries for ``profile``, fetched and cached on first use.

    Raises:
        ToolchainError: download failed (the pip error line is quoted), or the user directory is missing.
    """
    return RUNTIME_SOURCES[profile.runtime.source](profile, profile.runtime)


def _publish_dir(directory: Path, fill: Callable[[Path], object]) -> None:
    """Fill a staging directory, then rename it to ``directory`` (readers never see half a cache entry)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        fill(staging)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _download_and_extract(platform: str | None, tvm_version: str, ffi_version: str, staging: Path) -> None:
    wheels = staging / "wheels"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", str(platform), "--python-version", PYTHON_VERSION, "--disable-pip-version-check",
               f"apache-tvm=={tvm_version}", f"apache-tvm-ffi=={ffi_version}", "-d", str(wheels)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        error = next((line for line in result.stderr.splitlines() if line.startswith("ERROR")),
                     result.stderr.strip()[-300:])
        raise ToolchainError(
            f"could not download the TVM runtime wheels for {platform} (apache-tvm=={tvm_version}, "
            f"apache-tvm-ffi=={ffi_version}): {error}; check network access to the package index"
        )
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            for name, member in _WHEEL_MEMBERS.items():
                if member in archive.namelist():
                    (staging / name).write_bytes(archive.read(member))
                    (staging / name).chmod(0o755)
    shutil.rmtree(wheels)
    missing = [name for name in LIBRARY_NAMES if not (staging / name).is_file()]
    if missing:
        raise ToolchainError(f"the {platform} wheels hold no {', '.join(missing)}; is {platform} a valid tag?")
