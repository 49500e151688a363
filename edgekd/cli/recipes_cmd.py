"""``edgekd recipes list|show``."""

from __future__ import annotations

import typer
import yaml
from rich.table import Table

from edgekd import api
from edgekd.cli.common import JsonOpt, SetOpt, console, emit_json

recipes_app = typer.Typer(help="List and show compression recipes.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def list_(json_: bool = JsonOpt) -> None:
    """Recipes shipped with edgekd and in $EDGEKD_CONFIG_DIR/recipes (user recipes win on name clashes)."""
    rows = []
    for path in api.list_recipes():
        recipe = api.load_recipe(str(path))
        rows.append({"name": path.stem, "path": str(path), "model": recipe.teacher.model.name,
                     "description": recipe.description})
    if json_:
        emit_json(rows)
        return
    table = Table("name", "teacher model", "description", "path")
    for row in rows:
        table.add_row(row["name"], row["model"], row["description"], row["path"])
    console.print(table)


@recipes_app.command("show")
def show(name: str = typer.Argument(..., help="Recipe name or path"), set_: list[str] = SetOpt,
         json_: bool = JsonOpt) -> None:
    """Print the fully resolved recipe (defaults filled in, overrides applied)."""
    recipe = api.load_recipe(name, overrides=set_)
    if json_:
        emit_json(recipe.dump())
    else:
        print(yaml.safe_dump(recipe.dump(), sort_keys=False), end="")
