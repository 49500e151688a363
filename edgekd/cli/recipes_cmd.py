"""``edgekd recipes list|show``."""

from __future__ import annotations

import typer
import yaml

from edgekd.cli.common import JsonOpt, SetOpt, emit_json, print_table, print_text

recipes_app = typer.Typer(help="List and show compression recipes.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def list_(json_: bool = JsonOpt) -> None:
    """Recipes shipped with edgekd and in $EDGEKD_CONFIG_DIR/recipes (user recipes win on name clashes).

    An invalid recipe is listed with its error (and "error" in --json); the others stay usable.
    """
    from edgekd import api

    rows = []
    for entry in api.scan_recipes():
        recipe = entry.value
        rows.append({"name": entry.name, "path": str(entry.path),
                     "model": recipe.teacher.model.name if recipe else None,
                     "description": recipe.description if recipe else None, "error": entry.error})
    if json_:
        emit_json(rows)
        return
    print_table(("name", "teacher model", "description", "path"),
                [(r["name"], r["model"] or "-", r["description"] if not r["error"] else f"INVALID: {r['error']}",
                  r["path"]) for r in rows],
                styles=["red" if r["error"] else None for r in rows])


@recipes_app.command("show")
def show(name: str = typer.Argument(..., help="Recipe name or path"), set_: list[str] = SetOpt,
         json_: bool = JsonOpt) -> None:
    """Print the fully resolved recipe (defaults filled in, overrides applied)."""
    from edgekd import api

    recipe = api.load_recipe(name, overrides=set_)
    if json_:
        emit_json(recipe.dump())
    else:
        print_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
