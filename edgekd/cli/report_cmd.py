"""``edgekd report PATH``: an HTML report (figures embedded, opens from disk) of a compress run or the store."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekd.cli.common import JsonOpt, console, emit_json


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    path: Path | None = typer.Argument(None, help="A compress run directory or a results store file "
                                                  "(default: the results store, $EDGEKD_RESULTS)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default RUN/report/, or "
                                                              "<store>-report/ beside the store)."),
    store: Path | None = typer.Option(None, "--store", "--results",
                                      help="For a run: the results store its measurements are in."),
    json_: bool = JsonOpt,
) -> None:
    """Write index.html (accuracy vs measured latency with the Pareto front, per-block widths and budgets,
    latency distribution, peak memory, power, provenance) and one PNG per figure."""
    from edgekd import api

    source = path if path is not None else api.query_results(store).path
    written = api.build_report(source, out=out, store=store)
    if json_:
        emit_json(written.to_json())
    for note in written.notes:
        console.print(f"[yellow]{note}[/]")
    console.print(f"report: {written.html} ({len(written.figures)} figures: {', '.join(written.figures) or '-'})")
