"""``edgekd compress``: teacher → structure learning with KD → prune → finetune → compact model + report."""

from __future__ import annotations

import typer

from edgekd.cli.common import DataOpt, JsonOpt, OutOpt, RecipeOpt, ResumeOpt, SetOpt, console, emit_json, fmt_count
from edgekd.cli.common import key_value_table as kv


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)


def compress(recipe: str = RecipeOpt, data: str = DataOpt, set_: list[str] = SetOpt, out: str = OutOpt,
             target: str = typer.Option(None, "--target", help="Target profile (recorded; compile/bench follow)."),
             teacher: str = typer.Option(None, "--teacher", help="Dense teacher run dir or model.pt."),
             resume: bool = ResumeOpt, json_: bool = JsonOpt) -> None:
    """Learn a compact structure under the recipe's per-block budgets, prune it and finetune it with KD."""
    from edgekd import api

    resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
    result = api.compress(resolved, out=out, teacher=teacher, target=target, resume=resume)
    if json_:
        emit_json(result.to_dict())
        return
    t, s = result.teacher, result.student
    console.print(kv("edgekd compress", [
        ("run dir", result.run_dir), ("target", result.target or "-"),
        ("teacher acc / FLOPs / params", f"{t['test_acc']:.4f} / {fmt_count(t['flops'])} / {fmt_count(t['params'])}"),
        ("student acc / FLOPs / params", f"{s['test_acc']:.4f} / {fmt_count(s['flops'])} / {fmt_count(s['params'])}"),
        ("pruned acc before finetune", f"{result.pruning['pruned_test_acc']:.4f} "
                                       f"(masked {result.pruning['masked_test_acc']:.4f})"),
    ]))
    rows = [(b["name"], f"{fmt_count(b['flops'])} / budget {fmt_count(b['budget'].get('flops'))}, "
                        f"params {fmt_count(b['params'])}, channels {b['channels_before']}→{b['channels_after']}")
            for b in result.blocks]
    console.print(kv("blocks", rows))
