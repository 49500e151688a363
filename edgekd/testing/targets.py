"""Target profiles for tests and benchmark scripts that must own their tuning database."""

from __future__ import annotations

import uuid
from pathlib import Path

__all__ = ["host_profile_copy"]


def host_profile_copy(directory: Path, prefix: str = "host-test") -> Path:
    """A copy of the shipped host profile under a unique name (``<prefix>-XXXXXXXX.yaml`` in ``directory``):
    tuning databases are kept per target name, so its database is the caller's alone."""
    import yaml

    from edgekd.paths import shipped_dir

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    data = yaml.safe_load((shipped_dir("targets") / "host.yaml").read_text()) | {"name": name}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
