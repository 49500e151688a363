"""The compiled artifact directory and its ``manifest.json`` (contract: docs/artifacts.md).

Input: a staging directory filled by the compile stage plus the manifest fields. Output: the artifact
directory, published atomically (staged in a hidden sibling, then renamed over the old one), whose
manifest lists the sha256 of every file. :func:`read_manifest` and :func:`verify_artifact` are what
consumers (the device stage) use; they never guess from file names.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekd.atomic import atomic_write_json, sha256_file
from edgekd.errors import CheckpointError

__all__ = [
    "SCHEMA_VERSION", "MANIFEST_NAME", "Manifest", "ModelInfo", "TargetInfo", "TensorInfo", "TuningInfo",
    "staging_dir", "hash_files", "check_name", "read_manifest", "verify_artifact", "utc_now",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Record):
    name: str
    source: str
    sha256: str | None = None


class TargetInfo(_Record):
    name: str
    arch: str
    glibc_floor: str | None
    tvm_target: dict[str, Any]


class TensorInfo(_Record):
    shape: list[int]
    dtype: str = "float32"
    file: str
    name: str | None = None


class TuningInfo(_Record):
    trials: int = 0
    database: str | None = None
    seconds: float = 0.0
    tasks: int = 0
    tasks_tuned: int = 0
    tasks_reused: int = 0
    weight_prepack: bool = False  # convolution weights stored in the tuned schedules' layouts
    cost_model_records: int = 0  # database records the cost model was pre-trained on (0: a fresh model)


class Manifest(_Record):
    """``manifest.json``; every path is relative to the artifact directory."""

    schema_version: int = SCHEMA_VERSION
    model: ModelInfo
    target: TargetInfo
    input: TensorInfo
    output: TensorInfo
    library: str = "model.so"
    runner: str | None = "edgekd-runner"
    runtime_libs: list[str] = Field(default_factory=list)
    onnx: str | None = "model.onnx"
    versions: dict[str, str]
    tuned: bool = False
    tuning: TuningInfo = Field(default_factory=TuningInfo)
    files: dict[str, str] = Field(default_factory=dict)
    created: str


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every regular file under ``directory`` except the manifest, by relative POSIX path."""
    hashes = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            hashes[path.relative_to(directory).as_posix()] = sha256_file(path)
    return hashes


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty staging directory next to ``final``; on success it replaces ``final`` atomically.

    The old artifact (if any) stays intact until the new one is complete; on error the staging
    directory is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    try:
        yield staging
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / "artifact")
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Fill ``files`` with the hash of every file in ``directory`` and write ``manifest.json``."""
    manifest = manifest.model_copy(update={"files": hash_files(directory)})
    atomic_write_json(directory / MANIFEST_NAME, manifest.model_dump(mode="json"))
    return manifest


SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # a sha256 as the manifest and the board cache name blobs


def check_name(name: object) -> str | None:
    """Why ``name`` is not a safe relative file name inside an artifact (None = it is).

    Safe: a non-empty relative POSIX path, already normalised (no ``.``/``..``/empty components), without
    backslashes, NUL or other control characters.
    """
    if not isinstance(name, str) or not name:
        return "empty or not a string"
    if any(ord(c) < 32 or c == "\x7f" for c in name) or "\\" in name:
        return "control character or backslash"
    if name.startswith("/"):
        return "absolute"
    if posixpath.normpath(name) != name or any(part in ("", ".", "..") for part in name.split("/")):
        return "not a normalised relative path (no '.', '..' or empty components)"
    return None


def file_problem(root: Path, name: object) -> str | None:
    """Why ``name`` is not a safe file of the artifact at ``root`` (None = it is): :func:`check_name`, and it
    must stay inside ``root`` once symlinks are followed."""
    problem = check_name(name)
    if problem is None and root.resolve() not in (root.resolve() / name).resolve().parents:
        problem = "resolves outside the artifact (symlink?)"
    return problem


def sha256_problem(sha: object) -> str | None:
    """Why ``sha`` is not a sha256 that may name a blob (None = it is)."""
    return None if isinstance(sha, str) and SHA256_HEX.fullmatch(sha) else f"sha256 {sha!r} is not 64 hex digits"


def _check_names(artifact: Path, path: Path, manifest: Manifest) -> None:
    """Every file name the manifest uses is safe and stays inside the artifact (symlinks included)."""
    names = [manifest.library, manifest.input.file, manifest.output.file, *manifest.runtime_libs,
             *([manifest.runner] if manifest.runner else []), *([manifest.onnx] if manifest.onnx else []),
             *manifest.files]
    for name in names:
        problem = file_problem(artifact, name)
        if problem:
            raise CheckpointError(f"{path}: file name {name!r} refused ({problem}); not a trustworthy manifest")
    for name, sha in manifest.files.items():
        if sha256_problem(sha):
            raise CheckpointError(f"{path}: {name!r} has no valid sha256 ({sha!r}); not a trustworthy manifest")


def read_manifest(artifact: str | Path) -> Manifest:
    """Parse ``<artifact>/manifest.json`` and check its file names (:func:`check_name`, inside the artifact)
    and sha256 values, so that no consumer reads or writes outside the artifact through it.

    Raises:
        CheckpointError: missing, unreadable, not a manifest of this schema version, or an unsafe name.
    """
    path = Path(artifact) / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(f"{artifact}: no {MANIFEST_NAME}; is this an artifact from 'edgekd compile'?")
    try:
        data = json.loads(path.read_text())
        if data.get("schema_version") != SCHEMA_VERSION:
            raise CheckpointError(
                f"{path}: schema_version={data.get('schema_version')!r}: expected {SCHEMA_VERSION}; recompile"
            )
        manifest = Manifest.model_validate(data)
    except (json.JSONDecodeError, ValidationError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a valid manifest ({type(err).__name__}); recompile") from None
    _check_names(Path(artifact), path, manifest)
    return manifest


def verify_artifact(artifact: str | Path) -> Manifest:
    """Read the manifest and check every listed file's sha256 (and that no listed file is missing).

    Raises:
        CheckpointError: naming the first missing or modified file.
    """
    manifest = read_manifest(artifact)
    for relative, expected in manifest.files.items():
        path = Path(artifact) / relative
        if not path.is_file():
            raise CheckpointError(f"{artifact}: {relative} is listed in the manifest but missing; recompile")
        if sha256_file(path) != expected:
            raise CheckpointError(f"{artifact}: {relative} does not match its sha256 in the manifest; recompile")
    return manifest
