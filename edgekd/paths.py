"""Where edgekd keeps user state. Every location can be redirected by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """User configuration (devices.yaml, extra targets/recipes): ``$EDGEKD_CONFIG_DIR`` or ~/.config/edgekd."""
    return Path(os.environ.get("EDGEKD_CONFIG_DIR", Path.home() / ".config" / "edgekd"))


def cache_dir() -> Path:
    """Re-creatable caches (runtime wheels, tuning databases, zig): ``$EDGEKD_CACHE_DIR`` or ~/.cache/edgekd."""
    return Path(os.environ.get("EDGEKD_CACHE_DIR", Path.home() / ".cache" / "edgekd"))


def package_root() -> Path:
    """The installed ``edgekd`` package directory."""
    return Path(__file__).resolve().parent


def project_root() -> Path:
    """The source checkout (holds recipes/ and targets/); the package's parent directory."""
    return package_root().parent
