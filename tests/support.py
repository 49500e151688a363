"""Helpers shared by test modules (importable as ``support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, what: str) -> None:
    """Skip locally, but fail in CI, when a component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {what} (scripts/setup.sh should have installed it)")
    pytest.skip(f"missing: {what}")


def require_executable(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"executable {name}")
    return path
