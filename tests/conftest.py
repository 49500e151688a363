"""Shared fixtures. In CI (``CI=true``) a missing component fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import require

from edgekd.paths import project_root


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
