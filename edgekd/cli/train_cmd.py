"""``edgekd train`` (teacher) and ``edgekd distill`` (student from the teacher)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from edgekd.cli.common import DataOpt, JsonOpt, OutOpt, RecipeOpt, ResumeOpt, SetOpt, console, emit_json, fmt_count
from edgekd.cli.common import key_value_table as kv

if TYPE_CHECKING:
    from edgekd.api import RunResult


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("distill")(distill)


def train(recipe: str = RecipeOpt, data: str = DataOpt, set_: list[str] = SetOpt, out: str = OutOpt,
          resume: bool = ResumeOpt, json_: bool = JsonOpt) -> None:
    """Train the recipe's (dense) teacher network."""
    from edgekd import api

    resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
    _render(api.train(resolved, out=out, resume=resume), json_)


def distill(recipe: str = RecipeOpt, teacher: str = typer.Option(None, "--teacher", help="Teacher run dir or model.pt"),
            data: str = DataOpt, set_: list[str] = SetOpt, out: str = OutOpt, resume: bool = ResumeOpt,
            json_: bool = JsonOpt) -> None:
    """Train the recipe's student by knowledge distillation from the teacher."""
    from edgekd import api

    resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
    _render(api.distill(resolved, teacher=teacher, out=out, resume=resume), json_)


def _render(result: RunResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    rows = [("run dir", result.run_dir), ("model", result.model), ("test acc", f"{result.test_acc:.4f}"),
            ("val acc", "-" if result.val_acc is None else f"{result.val_acc:.4f}"),
            ("FLOPs (2/MAC)", fmt_count(result.flops)), ("params", fmt_count(result.params)),
            ("images (train/val/test)", f"{result.data['train']}/{result.data['val']}/{result.data['test']}"),
            ("time", f"{result.seconds:.1f} s ({result.images_per_second:.0f} img/s)")]
    if result.teacher:
        rows += [("teacher", result.teacher["path"]), ("teacher FLOPs", fmt_count(result.teacher["flops"])),
                 ("teacher params", fmt_count(result.teacher["params"]))]
    console.print(kv(f"edgekd {result.stage}", rows))
