"""``edgekd tune``: compress, compile and bench on the board, round after round, until a measured latency target
is met."""

from __future__ import annotations

import typer

from edgekd.cli.common import DataOpt, JsonOpt, OutOpt, RecipeOpt, ResumeOpt, SetOpt, console, emit_json, print_table


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)


def tune(recipe: str = RecipeOpt,
         device: str = typer.Option(..., "--device", "-d", help="The board (`edgekd device list`, or local); its "
                                                                 "target is the compile target."),
         latency_ms: float = typer.Option(None, "--latency-ms", help="Target p50 on the board, in milliseconds."),
         latency_ratio: float = typer.Option(None, "--latency-ratio",
                                             help="Target as a share of the dense network's p50, measured in the "
                                                  "same interleaved bench (0.6 = 40% faster)."),
         max_rounds: int = typer.Option(3, "--max-rounds", min=1, help="Compress → compile → bench rounds at most."),
         repeats: int = typer.Option(3, "--repeats", min=1, help="Interleaved bench rounds per measurement."),
         tune_trials: int = typer.Option(500, "--tune-trials", min=0,
                                         help="MetaSchedule trials per compile (tasks already in the target's "
                                              "database are reused; 0 = untuned)."),
         trials_per_task: int = typer.Option(None, "--tune-trials-per-task", min=1,
                                             help="Instead of --tune-trials: this many trials for every task the "
                                                  "target's database has fewer for."),
         margin: float = typer.Option(0.05, "--margin", min=0.0, max=0.5,
                                      help="Aim this share below the target (measurement noise)."),
         latency_mode: str = typer.Option("untuned", "--latency-mode",
                                          help="The latency model sizing the budgets: untuned (minutes to profile) "
                                               "or tuned (the deployed kernels', profiled with the target's "
                                               "database: every lattice kernel tuned, hours on a board; `edgekd "
                                               "latency profile --mode tuned` makes it ahead)."),
         teacher: str = typer.Option(None, "--teacher", help="Dense teacher run dir or model.pt."),
         data: str = DataOpt, set_: list[str] = SetOpt, out: str = OutOpt, resume: bool = ResumeOpt,
         json_: bool = JsonOpt) -> None:
    """Find the most accurate compact network that measures within the target on the board: per-block latency
    budgets from the board's latency model, corrected by what each round measures."""
    from edgekd import api

    resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
    options = api.TuneOptions(max_rounds=max_rounds, repeats=repeats, tune_trials=tune_trials,
                              tune_trials_per_task=trials_per_task, margin=margin,
                              profile=api.ProfileOptions(mode=latency_mode))
    result = api.tune(resolved, device, latency_ms=latency_ms, latency_ratio=latency_ratio, options=options,
                      teacher=teacher, out=out, resume=resume,
                      on_event=lambda message: console.print(f"tune: {message}", markup=False, soft_wrap=True))
    if json_:
        emit_json(result.to_dict())
    else:
        rows = [(r.index, f"{r.ask_ms:.4g}", _ms(r.predicted_ms), _ms(r.measured_p50_ms), _ms(r.dense_p50_ms),
                 _ms(r.share), _ms(r.target_ms), "yes" if r.met else "no",
                 _acc(r.test_acc), "finetuned" if r.finetuned else "pruned", r.run_dir) for r in result.rounds]
        print_table(("round", "ask ms", "predicted ms", "measured p50 ms", "dense p50 ms", "x dense (paired)",
                     "target ms", "met", "test acc", "network", "run dir"), rows,
                    title=f"edgekd tune on {result.device} ({result.target})")
    console.print(f"tune: {result.message}; network {result.model}, artifact {result.artifact}", markup=False,
                  soft_wrap=True)
    if not result.met:
        raise typer.Exit(1)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
