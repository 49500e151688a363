"""Shared fixtures. In CI (``CI=true``) a missing component fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgekd.paths import project_root

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when a component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {what} (scripts/setup.sh should have installed it)")
    pytest.skip(f"missing: {what}")


def require_executable(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"executable {name}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout: the real CIFAR-10 npz files."""
    path = Path(os.environ.get("EDGEKD_SHARED_DATA", project_root().parent / "shared" / "data"))
    require((path / "cifar10-mini.npz").is_file(), f"CIFAR-10 npz files in {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Never read or write the real ~/.config/edgekd; keep the cache shared across the session (zig, wheels)."""
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "edgekd-config"))
    monkeypatch.setenv("EDGEKD_PROGRESS", "0")
    monkeypatch.delenv("EDGEKD_DATA", raising=False)
