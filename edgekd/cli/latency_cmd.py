"""``edgekd latency profile|show|list``: a board's latency model of a recipe's network family."""

from __future__ import annotations

import typer

from edgekd.cli.common import DataOpt, JsonOpt, RecipeOpt, SetOpt, console, emit_json, print_table
from edgekd.cli.common import key_value_table as kv

latency_app = typer.Typer(help="Latency models measured on a board (the cost `structure.cost: latency` learns under).",
                          no_args_is_help=True)

DeviceOpt = typer.Option(..., "--device", "-d", help="A configured device (`edgekd device list`), or local.")
ModeOpt = typer.Option("untuned", "--mode", help="untuned, or tuned (the target database's schedules).")


def register(app: typer.Typer) -> None:
    app.add_typer(latency_app, name="latency")


@latency_app.command("profile")
def profile(recipe: str = RecipeOpt, device: str = DeviceOpt, mode: str = ModeOpt, data: str = DataOpt,
            set_: list[str] = SetOpt,
            grid: int = typer.Option(0, "--grid", min=0,
                                     help="Channel multiple (default: the recipe's round_to, else the target's)."),
            levels: int = typer.Option(None, "--levels", min=2,
                                       help="Untuned: lattice widths per varying axis of an op family; tuned: "
                                            "widths per group of its coarse grid [default: 8 untuned, 5 tuned]."),
            refine: int = typer.Option(None, "--refine", min=0,
                                       help="Passes adding lattice levels where an interval's midpoint is "
                                            "mispredicted by > 5% [default: 0]."),
            calibration: int = typer.Option(6, "--calibration", min=1, help="Random whole networks fitting α."),
            heldout: int = typer.Option(40, "--heldout", min=0, help="Held-out whole networks for the ±10% share."),
            rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved repeats of every whole network."),
            tune_trials: int = typer.Option(None, "--tune-trials", min=1,
                                            help="--mode tuned: MetaSchedule trials per task, for every lattice "
                                                 "kernel and every new task of the whole networks [default: 8]."),
            seed: int = typer.Option(0, "--seed"),
            json_: bool = JsonOpt) -> None:
    """Measure the recipe's network family on the device (kernels over a width lattice, whole networks to
    calibrate and to hold out), fit its latency model and save it in the user cache."""
    from edgekd import api

    resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
    given = (("levels", levels), ("refine", refine), ("tune_trials", tune_trials))
    lattice = {key: value for key, value in given if value is not None}
    options = api.ProfileOptions(mode=mode, grid=grid, calibration=calibration, heldout=heldout, rounds=rounds,
                                 seed=seed, **lattice)
    model = api.profile_recipe(resolved, device, options)
    _render(model, json_)


@latency_app.command("show")
def show(recipe: str = RecipeOpt, device: str = DeviceOpt, mode: str = ModeOpt, data: str = DataOpt,
         set_: list[str] = SetOpt, json_: bool = JsonOpt) -> None:
    """The saved latency model of the recipe's network on the device: provenance and held-out accuracy."""
    from edgekd import api

    resolved = api.load_recipe(recipe, overrides=set_, data_root=data)
    _render(api.show_latency_model(resolved, device, mode), json_)


@latency_app.command("list")
def list_(device: str = typer.Option(None, "--device", "-d", help="Only this device."), json_: bool = JsonOpt) -> None:
    """Every saved latency model, one line each."""
    from edgekd import api

    found = api.list_latency_models(device)
    if json_:
        emit_json([{"path": str(path), **model.summary()} for path, model in found])
        return
    print_table(["device", "network", "recipe", "mode", "threads", "grid", "dense ms", "±10%", "±5%", "noise %",
                 "created"],
                [(m.provenance.device, m.network.name, m.network.recipe, m.provenance.mode, m.provenance.threads,
                  m.grid, f"{m.dense_ms:.3f}", _share(m.validation.within_10pct, m.validation.configurations),
                  _share(m.validation.within_5pct, m.validation.configurations), m.validation.noise_pct,
                  m.provenance.created) for _path, m in found])


def _share(value: float, count: int) -> str:
    return f"{100 * value:.0f}% of {count}" if count else "-"


def _render(model, json_: bool) -> None:
    summary = model.summary()
    if json_:
        emit_json(summary)
        return
    p, v, c = model.provenance, model.validation, model.calibration
    console.print(kv("edgekd latency", [
        ("network", f"{model.network.name} {model.network.kwargs} input {model.network.input_shape}"),
        ("device / target / board", f"{p.device} / {p.target} / {p.board}"),
        ("mode / threads / governor", f"{p.mode} / {p.threads} / {p.governor}"),
        ("runtime", ", ".join(f"{k} {v}" for k, v in p.runtime.items())),
        ("families / ops / grid", f"{len(model.tables)} / {len(model.ops)} / {model.grid}"
                                  + (f" (coarse: {len(model.multiples)} groups with own steps, "
                                     f"{sorted(set(model.multiples.values()))})" if model.multiples else "")),
        ("dense network (predicted)", f"{model.dense_ms:.4g} ms"),
        ("calibration", f"network = {c.alpha:.4f} x Σ ops + {c.beta_ms:.4g} ms ({c.samples} networks)"),
        ("held out", f"{_share(v.within_10pct, v.configurations)} within ±10%, "
                     f"{_share(v.within_5pct, v.configurations)} within ±5%, noise {v.noise_pct}%"),
        ("measured", ", ".join(f"{k} {v:g}" for k, v in model.stats.items())),
    ]))
