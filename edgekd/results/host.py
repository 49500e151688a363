"""A one-line description of the machine a host-side benchmark ran on (for provenance in reports)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["describe_host"]


def describe_host() -> str:
    """CPU model and logical CPU count, e.g. ``"Intel(R) Xeon(R) ... (2 logical CPUs)"``."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({os.cpu_count()} logical CPUs)"
