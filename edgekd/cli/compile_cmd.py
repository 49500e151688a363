"""``edgekd compile MODEL --target T`` and ``edgekd targets list|show`` (thin: parse → api → render)."""

from __future__ import annotations

import typer
import yaml
from rich.table import Table

from edgekd.cli.common import JsonOpt, console, emit_json, key_value_table

targets_app = typer.Typer(help="List and show target profiles (edge boards).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_)
    app.add_typer(targets_app, name="targets")


def compile_(
    model: str = typer.Argument(..., help="Run directory (holding model.pt) or a saved model file."),
    target: str = typer.Option(..., "--target", "-t", help="Target name (see `edgekd targets list`) or YAML path."),
    out: str = typer.Option(None, "--out", "-o",
                            help="Artifact directory (default <run dir>/artifacts/<target> or "
                                 "artifacts/<model>-<target>)."),
    tune_trials: int = typer.Option(0, "--tune-trials", min=0,
                                    help="MetaSchedule trials spread over the model's tasks (0 = untuned); "
                                         "records are kept per target and reused."),
    tune_minutes: float = typer.Option(None, "--tune-minutes", min=0.1,
                                       help="Stop tuning after this many minutes; records so far are kept."),
    no_weight_prepack: bool = typer.Option(False, "--no-weight-prepack",
                                           help="Keep the weights' layout when tuning (no blocked layouts)."),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="Skip the ONNX export."),
    json_: bool = JsonOpt,
) -> None:
    """Compile a model with TVM for a target: model library, runner, runtime libs, reference I/O, ONNX."""
    from edgekd.compile import CompileOptions, compile_model, default_output_dir

    out_dir = out or default_output_dir(model, target)
    options = CompileOptions(tune_trials=tune_trials, tune_max_minutes=tune_minutes, onnx=not no_onnx,
                             weight_prepack=not no_weight_prepack)
    artifact = compile_model(model, target, out_dir, options)
    if json_:
        emit_json(artifact.to_json())
        return
    manifest = artifact.manifest
    rows = [("artifact", artifact.path), ("target", f"{manifest.target.name} {manifest.target.tvm_target}"),
            ("model", f"{manifest.model.name} input {manifest.input.shape}"),
            ("tuned", f"{manifest.tuned} ({manifest.tuning.trials} trials, {manifest.tuning.tasks_reused}/"
                      f"{manifest.tuning.tasks} tasks reused, {manifest.tuning.seconds:.1f} s)"),
            ("files", ", ".join(artifact.files)), ("time", f"{artifact.seconds:.1f} s")]
    console.print(key_value_table("compiled", rows))


@targets_app.command("list")
def list_(json_: bool = JsonOpt) -> None:
    """Target profiles shipped with edgekd and in $EDGEKD_CONFIG_DIR/targets (user profiles win on name clashes)."""
    from edgekd.config.target import list_targets

    profiles = list_targets()
    if json_:
        emit_json([{"name": p.name, "arch": p.arch, "description": p.description, "path": p.source}
                   for p in profiles])
        return
    table = Table("name", "arch", "cpu", "toolchain", "description")
    for profile in profiles:
        table.add_row(profile.name, profile.arch, profile.tvm_target.mcpu, profile.toolchain, profile.description)
    console.print(table)


@targets_app.command("show")
def show(name: str = typer.Argument(..., help="Target name or YAML path."), json_: bool = JsonOpt) -> None:
    """Print one validated target profile."""
    from edgekd.config.target import load_target

    profile = load_target(name)
    document = profile.model_dump(mode="json", by_alias=True)
    if json_:
        emit_json(document | {"path": profile.source})
    else:
        print(f"# {profile.source}")
        print(yaml.safe_dump(document, sort_keys=False, width=110), end="")
