"""Reading the results store back: the rows as a pandas table, with provenance joined from stored JSON, and
filters (``edgekd results``).

Input: the store (:class:`~edgekd.results.store.ResultsStore`, ``$EDGEKD_RESULTS``). Each row names the
artifact it measured; where that artifact directory still exists, its ``manifest.json`` says which model file
it was compiled from and whether it was tuned, and the model's run directory (``report.json`` of a compress
run, ``result.json`` of a train/distill run) gives its accuracy. These derived columns are added when the row
does not carry them itself:

    run        the run directory the measured model came from (or the one holding the artifact)
    role       student (a compress run's compact model), pruned (before finetuning), teacher (a train run),
               distill, or the source directory's name
    tuned      the artifact was compiled with MetaSchedule records
    accuracy   the model's test accuracy, when its run recorded one

Reads JSON only; imports no stage module (the report and the CLI stay on their floors). Unreadable lines
are skipped and counted (:attr:`ResultsQuery.skipped`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError
from edgekd.results.store import ResultsStore

__all__ = ["DEFAULT_COLUMNS", "ResultsQuery", "artifact_provenance", "enrich", "parse_since", "query_results",
           "rows_for_run", "select_columns"]

#: The columns ``edgekd results`` shows by default (those present in the store, in this order).
DEFAULT_COLUMNS = [
    "timestamp", "device", "target", "model", "role", "runtime", "threads", "tuned", "emulated", "repeat_index",
    "latency_ms_p50", "latency_ms_p90", "peak_rss_mb", "energy_per_inference_mj", "accuracy", "version_tvm",
    "version_edgekd", "record_id",
]
#: Derived columns (see the module docstring); a row that carries one keeps its own value.
DERIVED = ("run", "role", "source", "tuned", "accuracy")


@dataclass
class ResultsQuery:
    """The selected rows (a pandas DataFrame, store order), how many lines of the store could not be read,
    and how many rows the store held before filtering."""

    frame: Any
    skipped: int
    total: int
    path: Path

    def records(self, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """The rows as JSON-ready dicts (NaN → None, times as ISO strings)."""
        frame = self.frame if columns is None else select_columns(self.frame, columns)
        return json.loads(frame.to_json(orient="records", date_format="iso")) if len(frame) else []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@lru_cache(maxsize=512)
def _provenance_cached(artifact: str, mtime: float) -> dict[str, Any]:
    info: dict[str, Any] = {"run": None, "role": None, "source": None, "tuned": None, "accuracy": None}
    directory = Path(artifact)
    manifest = _read_json(directory / "manifest.json")
    if directory.parent.name == "artifacts":  # compile's default: RUN/artifacts/<target>
        info["run"] = str(directory.parent.parent)
    if manifest is None:
        return info
    info["tuned"] = bool(manifest.get("tuned", False))
    source = (manifest.get("model") or {}).get("source")
    info["source"] = source
    if not source or source.startswith("<"):
        return info
    model_dir = Path(source).parent if Path(source).suffix == ".pt" else Path(source)
    if model_dir.name == "pruned" and (report := _read_json(model_dir.parent / "report.json")):
        info.update(run=str(model_dir.parent), role="pruned",
                    accuracy=(report.get("pruning") or {}).get("pruned_test_acc"))
    elif (report := _read_json(model_dir / "report.json")) and "student" in report:
        info.update(run=str(model_dir), role="student", accuracy=(report.get("student") or {}).get("test_acc"))
    elif result := _read_json(model_dir / "result.json"):
        stage = result.get("stage")
        info.update(run=str(model_dir), role="teacher" if stage == "train" else (stage or model_dir.name),
                    accuracy=result.get("test_acc"))
    else:
        info.update(run=info["run"] or str(model_dir), role=model_dir.name)
    return info


def artifact_provenance(artifact: str | Path) -> dict[str, Any]:
    """``run``, ``role``, ``source``, ``tuned`` and ``accuracy`` of an artifact directory, from its
    ``manifest.json`` and its model's run directory (``None`` where unknown, e.g. the artifact was removed)."""
    path = Path(artifact)
    try:
        mtime = (path / "manifest.json").stat().st_mtime
    except OSError:
        mtime = -1.0
    return dict(_provenance_cached(str(path), mtime))


def enrich(frame):
    """Add the derived columns (``run``, ``role``, ``source``, ``tuned``, ``accuracy``) where rows lack them."""
    import pandas as pd

    if not len(frame):
        return frame
    frame = frame.copy()
    artifacts = frame["artifact"] if "artifact" in frame else pd.Series([None] * len(frame), index=frame.index)
    known = {a: artifact_provenance(a) for a in artifacts.dropna().unique()}
    for column in DERIVED:
        derived = artifacts.map(lambda a, c=column: known.get(a, {}).get(c) if a is not None else None)
        if column in frame:
            frame[column] = frame[column].where(frame[column].notna(), derived)
        else:
            frame[column] = derived
    if "role" in frame:
        fallback = artifacts.map(lambda a: Path(a).name if isinstance(a, str) else None)
        frame["role"] = frame["role"].where(frame["role"].notna(), fallback)
    return frame


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``12h``, ``7d``, ``2w`` (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return now - timedelta(**{unit: float(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected a duration (30m, 12h, 7d, 2w) or an ISO date/time "
                          "(2026-05-01, 2026-05-01T12:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _matches(series, wanted: str):
    values = {v.strip() for v in wanted.split(",") if v.strip()}
    return series.astype("string").isin(values).fillna(False)


def _in_run(frame, run: str | Path):
    """Rows measured from ``run`` (a run directory, or its name): the model came from it, or the artifact is in it."""
    path = Path(run).expanduser()
    resolved = str(path.resolve()) if path.exists() else None

    def hit(row_run, artifact) -> bool:
        for value in (row_run, artifact):
            if not isinstance(value, str):
                continue
            candidate = Path(value)
            if resolved and (str(candidate.resolve()) == resolved
                             or str(candidate.resolve()).startswith(resolved.rstrip("/") + "/")):
                return True
        return isinstance(row_run, str) and not resolved and Path(row_run).name == str(run)

    artifacts = frame["artifact"] if "artifact" in frame else [None] * len(frame)
    runs = frame["run"] if "run" in frame else [None] * len(frame)
    mask = [hit(r, a) for r, a in zip(runs, artifacts, strict=True)]
    if "tune_run" in frame:  # tune rows (once `edgekd tune` writes them) name their tune run
        mask = [m or hit(t, None) for m, t in zip(mask, frame["tune_run"], strict=True)]
    return mask


def rows_for_run(frame, run: str | Path):
    """The rows of an enriched frame that belong to ``run`` (see :func:`query_results`'s ``run``)."""
    return frame[_in_run(frame, run)] if len(frame) else frame


def query_results(path: str | Path | None = None, *, device: str | None = None, target: str | None = None,
                  model: str | None = None, run: str | Path | None = None, since: str | None = None) -> ResultsQuery:
    """The store's rows, enriched (see the module docstring) and filtered.

    Args:
        path: the store file (default ``$EDGEKD_RESULTS``).
        device, target, model: keep rows whose column equals one of these comma-separated names.
        run: a run directory (rows whose model came from it or whose artifact lies in it), or a run's name.
        since: keep rows measured since then (:func:`parse_since`).

    Raises:
        ConfigError: an unreadable ``since``.
    """
    import pandas as pd

    store = ResultsStore(path)
    frame = store.frame()
    total = len(frame)
    cutoff = parse_since(since) if since else None
    frame = enrich(frame)
    if len(frame):
        for column, wanted in (("device", device), ("target", target), ("model", model)):
            if wanted:
                frame = frame[_matches(frame[column], wanted)] if column in frame else frame.iloc[0:0]
        if run is not None:
            frame = rows_for_run(frame, run)
        if cutoff is not None and "timestamp" in frame:
            stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
            frame = frame[(stamps >= pd.Timestamp(cutoff)).fillna(False)]
    return ResultsQuery(frame=frame.reset_index(drop=True), skipped=store.skipped, total=total, path=store.path)


def select_columns(frame, columns: list[str] | None = None):
    """``columns`` of ``frame`` (default :data:`DEFAULT_COLUMNS`), those present, in that order.

    Raises:
        ConfigError: a requested column the store does not have.
    """
    if columns is None:
        return frame[[c for c in DEFAULT_COLUMNS if c in frame.columns]]
    missing = [c for c in columns if c not in frame.columns]
    if missing and len(frame):
        raise ConfigError(f"--columns: no column {', '.join(missing)} in the store; it has: "
                          f"{', '.join(frame.columns)}")
    return frame[[c for c in columns if c in frame.columns]]
