"""The results store: an append-only JSON-lines file of measurements that pandas reads directly.

Input: flat rows (``BenchResult.to_row()``). Output: ``results.jsonl`` (``$EDGEKD_RESULTS``, default
``~/.local/share/edgekd/results.jsonl``); read with
``pandas.read_json(path, lines=True)`` or :meth:`ResultsStore.frame`.

Each row is immutable and carries ``record_id`` (sha256 of its content) and full provenance
(device, target, arch, threads, affinity, governor, emulated, versions, timestamp). Appends are one
``write`` of one line on an ``O_APPEND`` descriptor under ``flock`` and are fsync'd, so concurrent writers
never interleave and a crash leaves at most a missing line. Emulated rows have ``latency_valid: false``
and their timings in ``emulated_time_ms_*`` columns; ``latency_ms_*`` stay empty.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def default_path() -> Path:
    """``$EDGEKD_RESULTS`` or ``~/.local/share/edgekd/results.jsonl``."""
    env = os.environ.get("EDGEKD_RESULTS")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "edgekd" / "results.jsonl"


class ResultsStore:
    """Append-only measurement records in one JSON-lines file."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def append(self, row: dict[str, Any]) -> dict[str, Any]:
        """Add one row (adds ``schema_version`` and ``record_id``); returns the stored row."""
        record = {"schema_version": SCHEMA_VERSION, **row}
        if record.get("emulated") and any(record.get(k) is not None for k in record if k.startswith("latency_ms_")):
            raise ValueError("an emulated record must not carry latency_ms_* values")
        body = json.dumps(record, sort_keys=True, default=str)
        record["record_id"] = hashlib.sha256(body.encode()).hexdigest()[:16]
        line = (json.dumps(record, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def rows(self) -> list[dict[str, Any]]:
        """All complete rows (a torn last line, if any, is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def frame(self):
        """The store as a pandas DataFrame (``pandas.read_json(path, lines=True)``)."""
        import pandas as pd

        if not self.path.exists():
            return pd.DataFrame()
        return pd.read_json(self.path, lines=True)
