"""Placeholder until this stage's commands land; registers nothing."""

import typer


def register(app: typer.Typer) -> None:
    return None
