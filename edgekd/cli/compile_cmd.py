"""``edgekd compile MODEL --target T`` and ``edgekd targets list|show`` (thin: parse → api → render)."""

from __future__ import annotations

import contextlib

import typer
import yaml

from edgekd.cli.common import JsonOpt, console, emit_json, key_value_table, print_table, print_text

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
    device: str = typer.Option(None, "--device", "-d",
                               help="Time tuning candidates on this board over SSH (see `edgekd device add`); "
                                    "records are kept per target and board CPU."),
    json_: bool = JsonOpt,
) -> None:
    """Compile a model with TVM for a target: model library, runner, runtime libs, reference I/O, ONNX."""
    from edgekd import api

    out_dir = out or api.default_output_dir(model, target)
    options = api.CompileOptions(tune_trials=tune_trials, tune_max_minutes=tune_minutes, onnx=not no_onnx,
                                 weight_prepack=not no_weight_prepack)
    bar = (api.task_progress(f"tuning for {target}", total=tune_trials, unit="trials") if tune_trials
           else contextlib.nullcontext(lambda *args: None))
    with bar as advance:
        def on_batch(trials: int, task: str, fastest_ms: float | None) -> None:
            advance(trials, f"{task}: {fastest_ms:.3g} ms" if fastest_ms is not None else f"{task}: -")

        if device:
            artifact = api.compile_on_device(model, target, out_dir, options, device=device, on_batch=on_batch)
        else:
            artifact = api.compile_model(model, target, out_dir, options, on_batch=on_batch)
    if not artifact.tuned:
        console.print("note: this artifact is untuned: on CPUs untuned TVM is about two orders of magnitude slower "
                      "than tuned (and than ONNX Runtime); tune with --tune-trials N (e.g. 500; records are kept "
                      "and reused) and, for a board, --device NAME", markup=False, soft_wrap=True)
    if json_:
        emit_json(artifact.to_json())
        return
    manifest = artifact.manifest
    rows = [("artifact", artifact.path), ("target", f"{manifest.target.name} {manifest.target.tvm_target}"),
            ("model", f"{manifest.model.name} input {manifest.input.shape}"),
            ("tuned", f"{manifest.tuned} ({manifest.tuning.trials} trials, {manifest.tuning.tasks_reused}/"
                      f"{manifest.tuning.tasks} tasks reused, {manifest.tuning.seconds:.1f} s, cost model "
                      f"pre-trained on {manifest.tuning.cost_model_records} records)"),
            ("files", ", ".join(artifact.files)), ("time", f"{artifact.seconds:.1f} s")]
    console.print(key_value_table("compiled", rows))


@targets_app.command("list")
def list_(json_: bool = JsonOpt) -> None:
    """Target profiles shipped with edgekd and in $EDGEKD_CONFIG_DIR/targets (user profiles win on name clashes).

    An invalid profile is listed with its error (and "error" in --json); the others stay usable.
    """
    from edgekd import api

    entries = api.scan_targets()
    if json_:
        emit_json([_target_row(entry) for entry in entries])
        return
    rows, styles = [], []
    for entry in entries:
        profile = entry.value
        if profile is None:
            rows.append((entry.name, "-", "-", "-", f"INVALID: {entry.error}"))
            styles.append("red")
        else:
            rows.append((profile.name, profile.arch, profile.tvm_target.mcpu, profile.toolchain, profile.description))
            styles.append(None)
    print_table(("name", "arch", "cpu", "toolchain", "description"), rows, styles=styles)


def _target_row(entry) -> dict:
    profile = entry.value
    if profile is None:
        return {"name": entry.name, "path": str(entry.path), "error": entry.error}
    return {"name": profile.name, "arch": profile.arch, "cpu": profile.tvm_target.mcpu,
            "toolchain": profile.toolchain, "description": profile.description, "path": profile.source,
            "error": None}


@targets_app.command("show")
def show(name: str = typer.Argument(..., help="Target name or YAML path."), json_: bool = JsonOpt) -> None:
    """Print one validated target profile."""
    from edgekd import api

    profile = api.load_target(name)
    document = profile.model_dump(mode="json", by_alias=True)
    if json_:
        emit_json(document | {"path": profile.source})
    else:
        print_text(f"# {profile.source}\n" + yaml.safe_dump(document, sort_keys=False, width=110))
