"""Where edgekd keeps user state and finds the configs it ships. Every user location can be redirected by an
environment variable."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SHIPPED_KINDS = ("recipes", "targets")


def config_dir() -> Path:
    """User configuration (devices.yaml, extra targets/recipes): ``$EDGEKD_CONFIG_DIR`` or ~/.config/edgekd."""
    return Path(os.environ.get("EDGEKD_CONFIG_DIR", Path.home() / ".config" / "edgekd"))


def cache_dir() -> Path:
    """Re-creatable caches (runtime wheels, tuning databases, zig): ``$EDGEKD_CACHE_DIR`` or ~/.cache/edgekd."""
    return Path(os.environ.get("EDGEKD_CACHE_DIR", Path.home() / ".cache" / "edgekd"))


def latency_models_dir() -> Path:
    """Saved latency models: ``$EDGEKD_LATENCY_DIR`` or ``cache_dir()/latency/models`` (re-measurable, but a
    tuned profile costs hours: point this elsewhere to keep models apart from a cache that gets cleared)."""
    override = os.environ.get("EDGEKD_LATENCY_DIR")
    return Path(override) if override else cache_dir() / "latency" / "models"


def package_root() -> Path:
    """The installed ``edgekd`` package directory."""
    return Path(__file__).resolve().parent


def shipped_dir(kind: str) -> Path:
    """The recipes or target profiles shipped with edgekd (``kind``: ``recipes`` or ``targets``).

    They are package data under ``edgekd/shipped/<kind>``, found through :mod:`importlib.resources`: in a
    wheel, the installed copy; in a source checkout (editable install), a symlink to the top-level
    ``recipes/`` or ``targets/`` folder, which stays the one source of truth.
    """
    if kind not in SHIPPED_KINDS:
        raise ValueError(f"shipped_dir: kind={kind!r}: expected one of {', '.join(SHIPPED_KINDS)}")
    return Path(str(resources.files(__package__ or "edgekd").joinpath("shipped", kind))).resolve()


def project_root() -> Path:
    """The source checkout around the package (its parent directory); only meaningful in a checkout.

    The package never needs it: shipped configs come from :func:`shipped_dir`.
    """
    return package_root().parent
