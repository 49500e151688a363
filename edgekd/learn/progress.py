"""Rich progress bars for long loops (loss, accuracy, images/s), drawn on stderr so stdout stays clean
for ``--json``. Disabled with ``EDGEKD_PROGRESS=0`` or when stderr is not a terminal and not forced."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_enabled() -> bool:
    setting = os.environ.get("EDGEKD_PROGRESS", "auto")
    if setting in {"0", "false", "off"}:
        return False
    return setting in {"1", "true", "on"} or sys.stderr.isatty()


@contextmanager
def epoch_progress(description: str, total: int):
    """Yield ``update(advance, **fields)``; fields shown: loss, acc, ips (images/s)."""
    if not progress_enabled():
        yield lambda advance=1, **fields: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.3f}  {task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, loss=0.0, acc=0.0, ips=0.0)
        yield lambda advance=1, **fields: progress.update(task, advance=advance, **fields)


@contextmanager
def task_progress(description: str, total: int | None, unit: str = ""):
    """A progress bar with an ETA on stderr for any long loop (bench repeats, profiling, tuning trials).

    Yields ``update(advance=1, status=None)``: ``advance`` steps done, ``status`` a short text shown after the
    bar (e.g. "best 3.21 ms"). Off with ``EDGEKD_PROGRESS=0`` (then ``update`` does nothing); stdout is never
    written, so a ``--json`` document stays clean."""
    if not progress_enabled():
        yield lambda advance=1, status=None: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn(unit), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, status="")

        def update(advance: int = 1, status: str | None = None) -> None:
            fields = {} if status is None else {"status": status}
            progress.update(task, advance=advance, **fields)

        yield update
