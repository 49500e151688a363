"""The bench stage: push an artifact to a configured device, run it, compare with PyTorch, store the rows."""

from __future__ import annotations

from pathlib import Path

from edgekd.compile.api import compile_model, default_output_dir
from edgekd.compile.artifact import MANIFEST_NAME
from edgekd.config.devices import DeviceStore
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, BenchResult
from edgekd.device.bench import bench as run_bench
from edgekd.learn.progress import task_progress
from edgekd.models.io import MODEL_FILE
from edgekd.results.store import ResultsStore

__all__ = ["bench", "artifact_for"]

MODEL_SUFFIXES = {".pt", ".pt2"}


def bench(artifact: str | Path, device: str = "local", options: BenchOptions | None = None,
          results: str | Path | None = None, store: bool = True, on_compile=None) -> list[BenchResult]:
    """Push ``artifact`` to ``device`` (``local`` = this host, no SSH), run it ``options.repeat`` times, compare
    with the PyTorch reference, and append one row per measurement to the results store (unless ``store`` is
    false). Each row is stored as soon as its repeat is measured, so a failure in repeat k keeps repeats
    1..k-1. Returns one :class:`~edgekd.device.bench.BenchResult` per repeat.

    ``artifact`` may also be a model (``model.pt``, ``model.pt2`` or a run directory): it is compiled, untuned,
    for the device's target first (``on_compile(artifact_dir)`` is told where), as ``edgekd compile`` would."""
    entry = DeviceStore().get(device)
    artifact = artifact_for(artifact, entry.target, on_compile)
    results_store = ResultsStore(results) if store else None

    options = options or BenchOptions()
    with task_progress(f"bench on {device}", total=options.repeat, unit="repeats") as advance:

        def keep(result: BenchResult) -> None:
            if results_store is not None:
                results_store.append(result.to_row())
            p50 = result.timing_ms.get("p50")
            advance(status=f"p50 {p50:.3g} ms" if result.latency_valid and p50 is not None else "")

        with connect(entry) as conn:
            return run_bench(conn, entry, artifact, options, on_result=keep)


def artifact_for(path: str | Path, target: str, on_compile=None) -> Path:
    """``path`` when it is an artifact directory; else the model it names compiled for ``target``."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file() or not (path.suffix in MODEL_SUFFIXES or (path / MODEL_FILE).is_file()):
        return path  # an artifact, or something bench's own checks will name
    out = default_output_dir(path, target)
    if on_compile is not None:
        on_compile(out)
    return compile_model(path, target, out).path
