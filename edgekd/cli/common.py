"""Options and output shared by every command (so every command spells and prints them the same way).

Where output goes:

- stdout: what a command is asked to show — listings and shown documents (:func:`print_table`: a rich
  table on a terminal, plain aligned text when piped), the one ``--json`` document (:func:`emit_json`),
  and the host key ``device trust`` asks about;
- stderr (:data:`console`): progress, warnings, logs, errors, and the summaries of actions (train, distill,
  compress, compile, bench, device add/remove/setup).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

#: Humans' channel: progress, warnings and action summaries (stderr).
console = Console(stderr=True)
#: Data channel: only :func:`print_table` writes here (stdout, resolved at print time, so tests can capture it).
_stdout = Console(highlight=False)

RecipeOpt = typer.Option(..., "--recipe", "-r", help="Recipe name (see `edgekd recipes list`) or YAML path.")
DataOpt = typer.Option(None, "--data", help="Data root; overrides EDGEKD_DATA and the recipe's data.root.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a recipe field, e.g. --set training.epochs=1 (repeatable).")
OutOpt = typer.Option(None, "--out", "-o", help="Run directory (default runs/<recipe>-<stage>-<time>).")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out (or the newest one) from its checkpoint.")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON document on stdout (no table or summary).")


def emit_json(document: Any) -> None:
    """Print ``document`` as the one JSON document of this command on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def stdout_is_terminal() -> bool:
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                header: bool = True, styles: Sequence[str | None] | None = None) -> None:
    """A listing on stdout: a rich table on a terminal; otherwise plain text, one line per row, columns
    aligned with two spaces, nothing wrapped or cut, empty cells as ``-`` (for grep, awk and cut).

    ``styles`` (one per row, rich markup style or None) only colour the terminal form.
    """
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    if stdout_is_terminal():
        table = Table(*columns, title=title, title_justify="left", show_header=header)
        for index, row in enumerate(cells):
            table.add_row(*row, style=styles[index] if styles else None)
        _stdout.print(table)
        return
    plain = [[" ".join(cell.split()) or "-" for cell in row] for row in cells]
    if header:
        plain.insert(0, list(columns))
    widths = [max((len(row[i]) for row in plain if i < len(row)), default=0) for i in range(len(columns))]
    lines = [title] if title else []
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in plain]
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def print_text(text: str) -> None:
    """Shown text on stdout, as is: a document (``recipes show``), the host key ``device trust`` asks about."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def key_value_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    """An action summary for :data:`console` (stderr)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def fmt_count(value: float | None) -> str:
    from edgekd.api import format_count

    return "-" if value is None else format_count(value)
