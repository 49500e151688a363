"""``edgekd results``: the results store as a table (pandas), filtered; ``--json`` or ``--csv`` for machines."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgekd.cli.common import JsonOpt, console, emit_json, print_table


def register(app: typer.Typer) -> None:
    app.command("results")(results)


def results(
    store: Path | None = typer.Option(None, "--store", "--results", help="Results store (default $EDGEKD_RESULTS)."),
    device: str | None = typer.Option(None, "--device", "-d", help="Only these devices (comma-separated)."),
    target: str | None = typer.Option(None, "--target", help="Only these target profiles (comma-separated)."),
    model: str | None = typer.Option(None, "--model", help="Only these model names (comma-separated)."),
    run: str | None = typer.Option(None, "--run", help="Only rows measured from this run directory (or run name)."),
    since: str | None = typer.Option(None, "--since", help="Only rows since: 30m, 12h, 7d, 2w or an ISO date/time."),
    columns: str | None = typer.Option(None, "--columns", "-c",
                                       help="Comma-separated columns, or 'all' (default: the ones that matter; "
                                            "--json and --csv give all)."),
    last: int | None = typer.Option(None, "--last", "-n", min=1, help="Only the last N rows."),
    json_: bool = JsonOpt,
    csv: bool = typer.Option(False, "--csv", help="Print the rows as CSV on stdout."),
) -> None:
    """Show the measurements in the results store: latency p50/p90, peak memory, energy, accuracy when known,
    runtime, tuned, emulated, versions. Unreadable (torn) lines are skipped and counted on stderr."""
    from edgekd import api

    if json_ and csv:
        raise typer.BadParameter("--json and --csv are exclusive", param_hint="--csv")
    found = api.query_results(store, device=device, target=target, model=model, run=run, since=since)
    frame = found.frame.tail(last) if last else found.frame
    if found.skipped:
        console.print(f"[yellow]skipped {found.skipped} unreadable line{'s' if found.skipped > 1 else ''} "
                      f"in {found.path}[/] (a torn write?)")
    wanted = None if columns == "all" else [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    if json_:
        chosen = frame if wanted is None else api.select_columns(frame, wanted)
        rows = api.ResultsQuery(chosen, found.skipped, found.total, found.path).records()
        emit_json({"store": str(found.path), "count": len(rows), "skipped": found.skipped, "rows": rows})
        return
    if csv:
        chosen = frame if wanted is None else api.select_columns(frame, wanted)
        if len(chosen.columns):
            chosen.to_csv(sys.stdout, index=False)
        sys.stdout.flush()
        return
    chosen = api.select_columns(frame) if columns is None else frame if columns == "all" else \
        api.select_columns(frame, wanted)
    if not len(chosen):
        console.print(f"no rows in {found.path}" + (" match" if found.total else ""))
        return
    records = api.ResultsQuery(chosen, 0, 0, found.path).records()
    print_table(list(chosen.columns), [[_cell(r[c]) for c in chosen.columns] for r in records])
    console.print(f"{len(records)} of {found.total} rows from {found.path}")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
