"""The bench stage: push an artifact to a configured device, run it, compare with PyTorch, store the rows."""

from __future__ import annotations

from pathlib import Path

from edgekd.config.devices import DeviceStore
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, BenchResult
from edgekd.device.bench import bench as run_bench
from edgekd.results.store import ResultsStore

__all__ = ["bench"]


def bench(artifact: str | Path, device: str = "local", options: BenchOptions | None = None,
          results: str | Path | None = None, store: bool = True) -> list[BenchResult]:
    """Push ``artifact`` to ``device`` (``local`` = this host, no SSH), run it ``options.repeat`` times, compare
    with the PyTorch reference, and append one row per measurement to the results store (unless ``store`` is
    false). Each row is stored as soon as its repeat is measured, so a failure in repeat k keeps repeats
    1..k-1. Returns one :class:`~edgekd.device.bench.BenchResult` per repeat."""
    entry = DeviceStore().get(device)
    results_store = ResultsStore(results) if store else None

    def keep(result: BenchResult) -> None:
        if results_store is not None:
            results_store.append(result.to_row())

    with connect(entry) as conn:
        return run_bench(conn, entry, artifact, options or BenchOptions(), on_result=keep)
