"""Options and rendering shared by the stage commands (so every command spells them the same way)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# stdout carries only the --json document; everything for humans goes to stderr.
console = Console(stderr=True)

RecipeOpt = typer.Option(..., "--recipe", "-r", help="Recipe name (see `edgekd recipes list`) or YAML path.")
DataOpt = typer.Option(None, "--data", help="Data root; overrides EDGEKD_DATA and the recipe's data.root.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a recipe field, e.g. --set training.epochs=1 (repeatable).")
OutOpt = typer.Option(None, "--out", "-o", help="Run directory (default runs/<recipe>-<stage>-<time>).")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out (or the newest one) from its checkpoint.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document with the result on stdout.")


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def key_value_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def fmt_count(value: float | None) -> str:
    from edgekd.models.counting import format_count

    return "-" if value is None else format_count(value)


def as_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)
