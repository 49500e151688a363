"""The results store: an append-only JSON-lines file of measurements that pandas reads directly.

Input: flat rows (``BenchResult.to_row()``). Output: ``results.jsonl`` (``$EDGEKD_RESULTS``, default
``~/.local/share/edgekd/results.jsonl``); read with
``pandas.read_json(path, lines=True)`` or :meth:`ResultsStore.frame`.

Each row is immutable and carries ``record_id`` (sha256 of its content) and full provenance
(device, target, arch, threads, affinity, governor, emulated, versions, timestamp). Appends write one
whole line (short writes are continued; a failed write is truncated away) on an ``O_APPEND`` descriptor
under ``flock`` and are fsync'd, so concurrent writers never interleave. A torn last line left by a crash
or a full disk is repaired before the next append (a complete row missing only its newline gets one; a
fragment is moved to ``<store>.torn``), so it never swallows the next row. Readers skip unparseable lines
and count them in :attr:`ResultsStore.skipped`. Emulated rows have ``latency_valid: false``
and their timings in ``emulated_time_ms_*`` columns; ``latency_ms_*`` stay empty.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
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
        self.skipped = 0  # lines the last rows()/frame() could not parse

    def append(self, row: dict[str, Any]) -> dict[str, Any]:
        """Add one row (adds ``schema_version`` and ``record_id``); returns the stored row."""
        record = {"schema_version": SCHEMA_VERSION, **row}
        if record.get("emulated") and any(record.get(k) is not None for k in record if k.startswith("latency_ms_")):
            raise ValueError("an emulated record must not carry latency_ms_* values")
        body = json.dumps(record, sort_keys=True, default=str)
        record["record_id"] = hashlib.sha256(body.encode()).hexdigest()[:16]
        line = (json.dumps(record, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._repair_tail(fd)
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, start)  # whole lines only: drop what part of this line got written
                raise
        finally:
            os.close(fd)
        return record

    def _repair_tail(self, fd: int) -> None:
        """Terminate a torn last line (the lock is held): keep a whole row, quarantine a fragment."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        chunk = 1 << 16
        start = size
        while start > 0:  # find the last newline
            lo = max(0, start - chunk)
            data = os.pread(fd, start - lo, lo)
            cut = data.rfind(b"\n")
            if cut >= 0:
                start = lo + cut + 1
                break
            start = lo
        fragment = os.pread(fd, size - start, start)
        try:
            json.loads(fragment)
            complete = True
        except ValueError:
            complete = False
        if complete:
            _write_all(fd, b"\n")
            return
        with open(self.path.with_name(self.path.name + ".torn"), "ab") as torn:
            torn.write(fragment + b"\n")
            torn.flush()
            os.fsync(torn.fileno())
        os.ftruncate(fd, start)

    def rows(self) -> list[dict[str, Any]]:
        """All complete rows; lines that do not parse (a torn line) are skipped and counted in ``skipped``."""
        return [json.loads(line) for line in self._good_lines()]

    def _good_lines(self) -> list[str]:
        self.skipped = 0
        if not self.path.exists():
            return []
        good = []
        for line in self.path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                if isinstance(json.loads(line), dict):
                    good.append(line)
                    continue
            except json.JSONDecodeError:
                pass
            self.skipped += 1
        return good

    def frame(self):
        """The store as a pandas DataFrame (as ``pandas.read_json(path, lines=True)``, over the rows that parse;
        skipped lines are counted in ``skipped``, as for :meth:`rows`)."""
        import pandas as pd

        lines = self._good_lines()
        if not lines:
            return pd.DataFrame()
        return pd.read_json(io.StringIO("\n".join(lines) + "\n"), lines=True)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (it may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write to the results store wrote {written} bytes")
        view = view[written:]
