"""``edgekd compress``: teacher → structure learning with KD → prune → finetune → compact model + report."""

from __future__ import annotations

import typer

from edgekd.cli.common import DataOpt, JsonOpt, OutOpt, ResumeOpt, SetOpt, console, emit_json, fmt_count, print_table
from edgekd.cli.common import key_value_table as kv


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)
    app.command("blocks")(blocks)


ModelOpt = typer.Option(None, "--model", "-m",
                        help="Instead of a recipe: the network, e.g. net.py:build, package.module:build, timm:NAME, "
                             "tv:NAME or a registry name (a default recipe is generated and saved).")
InputShapeOpt = typer.Option(None, "--input-shape", help="1,3,H,W (default: from the data, or the model's size).")
DatasetOpt = typer.Option(None, "--dataset", help="cifar10, cifar100 or imagefolder (default: recognised from --data).")


def compress(recipe: str = typer.Option(None, "--recipe", "-r",
                                        help="Recipe name (see `edgekd recipes list`) or YAML path."),
             model: str = ModelOpt,
             checkpoint: str = typer.Option(None, "--checkpoint",
                                            help="With --model: the teacher's weights (edgekd model.pt, a state_dict "
                                                 ".pt/.pth, or .safetensors); trained from scratch when omitted."),
             budget: list[str] = typer.Option(None, "--budget",
                                              help="With --model: KIND=AMOUNT per stage, e.g. flops=0.5 or params=2M "
                                                   "(repeatable)."),
             dataset: str = DatasetOpt, input_shape: str = InputShapeOpt,
             data: str = DataOpt, set_: list[str] = SetOpt, out: str = OutOpt,
             target: str = typer.Option(None, "--target",
                                        help="Target profile: widths rounded to its channel multiple (nothing is "
                                             "measured without --device)."),
             teacher: str = typer.Option(None, "--teacher", help="Dense teacher run dir or model.pt."),
             device: str = typer.Option(None, "--device",
                                        help="The board: latency budgets use its latency model, and the compact "
                                             "network is compiled for its target and benched on it."),
             tune_trials: int = typer.Option(0, "--tune-trials", min=0,
                                             help="With --device: MetaSchedule trials of the compile (0 = untuned)."),
             repeats: int = typer.Option(3, "--repeats", min=1, help="With --device: bench repeats (median)."),
             latency_mode: str = typer.Option("untuned", "--latency-mode",
                                              help="With --device and latency budgets: the board's untuned or tuned "
                                                   "latency model (`edgekd latency profile --mode`)."),
             resume: bool = ResumeOpt, json_: bool = JsonOpt,
             report: bool = typer.Option(False, "--report", help="Write the HTML report of the run at the end.")
             ) -> None:
    """Learn a compact structure under the recipe's per-block budgets, prune it and finetune it with KD."""
    from edgekd import api

    if (recipe is None) == (model is None):
        raise api.ConfigError("compress: give --recipe, or --model with --budget (a default recipe is generated)")
    measure = api.MeasureOptions(tune_trials=tune_trials, repeats=repeats) if device is not None else None
    if model is not None:
        result = api.compress_model(model, budget or [], data=data, dataset=dataset, checkpoint=checkpoint or teacher,
                                    input_shape=input_shape, overrides=set_, out=out, target=target, resume=resume,
                                    device=device, measure=measure, latency_mode=latency_mode,
                                    on_recipe=lambda path: console.print(f"recipe saved to {path}", markup=False,
                                                                         soft_wrap=True))
    else:
        for flag, value in (("--checkpoint", checkpoint), ("--budget", budget), ("--dataset", dataset),
                            ("--input-shape", input_shape)):
            if value:
                raise api.ConfigError(f"compress: {flag} goes with --model; with --recipe set it in the recipe")
        resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
        result = api.compress(resolved, out=out, teacher=teacher, target=target, resume=resume, device=device,
                              measure=measure, latency_mode=latency_mode)
    written = api.build_report(result.run_dir) if report else None
    _say_measured(result)
    if json_:
        emit_json(result.to_dict())
        _say_report(result.run_dir, written)
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
    console.print(f"compact model: {result.model} (for inference without the builder: {result.program})",
                  markup=False, soft_wrap=True)
    _say_report(result.run_dir, written)


def _say_measured(result) -> None:
    """What the board measured (stderr), or that nothing was."""
    measured = result.measured
    if measured is None:
        if result.target is not None:
            console.print(f"target {result.target}: widths rounded to multiples of {result.round_to}; nothing was "
                          "measured (compress --device D compiles and benches on a board)", markup=False,
                          soft_wrap=True)
        return
    tuned = f"tuned, {measured['tune_trials']} trials" if measured["tuned"] else "untuned"
    console.print(f"measured on {measured['device']} ({measured['target']}, TVM {tuned}, {measured['threads']} "
                  f"threads): p50 {measured['p50_ms']:.4g} ms (median of {len(measured['p50s'])}), FLOPs "
                  f"{fmt_count(result.student['flops'])}; artifact {measured['artifact']}", markup=False,
                  soft_wrap=True)


def _say_report(run_dir: str, written) -> None:
    """Where the report is (stderr), or how to make it."""
    if written is not None:
        console.print(f"report: {written.html}", markup=False, soft_wrap=True)
    else:
        console.print(f"report: `edgekd report {run_dir}` writes it", markup=False, soft_wrap=True)


def blocks(model: str = typer.Option(..., "--model", "-m", help="The network (as compress --model takes it)."),
           input_shape: str = InputShapeOpt, data: str = DataOpt, dataset: str = DatasetOpt,
           json_: bool = JsonOpt) -> None:
    """List a network's candidate blocks (top-level stages) to help write a recipe: FLOPs, params, prunable
    channel groups, and the groups that stay fixed (and why)."""
    from edgekd import api

    shape, stages = api.model_blocks(model, input_shape, data, dataset)
    if json_:
        emit_json({"model": model, "input_shape": list(shape), "blocks": [stage.to_dict() for stage in stages]})
        return
    rows = [(stage.name, fmt_count(stage.flops), fmt_count(stage.params),
             f"{stage.prunable_groups} ({stage.prunable_channels} ch)",
             "; ".join(f"{g['size']} ch: {g['reason']}" for g in stage.fixed_groups) or "-")
            for stage in stages]
    print_table(("block", "FLOPs", "params", "prunable groups", "fixed groups"), rows,
                title=f"{model} at input {'x'.join(map(str, shape))}")
