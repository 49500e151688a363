"""How well edgekd's per-board latency model predicts, and what it costs to build (issue 9's benchmark).

    .venv/bin/python scripts/bench_latency_model.py [--families quickstart mbv2] [--modes untuned tuned]
                                                    [--device local | --loopback] [--heldout 40]
                                                    [--out ~/.cache/edgekd/bench-latency]

For each network family (``quickstart``: the quickstart recipe's MobileNetV2 x0.5 on 32x32 shapes; ``mbv2``: the
``mbv2`` recipe's CIFAR MobileNetV2 x1.0) and mode (``untuned``, ``tuned``: the lattice tuned first, ``--tune-trials``
a task), ``edgekd latency profile`` runs on the device (``local`` = this host, a real board; ``--loopback``: this
host through a real sshd on 127.0.0.1, the whole SSH path, its tuning database the board's own) and the cell
records: profiling time by phase, lattice points and kernels measured, lattice refinements, calibration, the
share of held-out grid configurations predicted within ±10% and ±5% of their measured p50 (median of interleaved
rounds), the noise floor (median round-to-round spread), and the measured table of one pointwise family (the
staircase in channel count).

Resumable: finished cells are kept in ``OUT/cells/<family>-<mode>.json`` (outside the work tree) and skipped; an
interrupted profile re-measures only what is missing (kernel points are cached by content in the user cache).
The table goes into the ``## Latency model: held-out accuracy (bench script)`` section of ``docs/benchmarks.md``
(``--docs``) after every cell.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd import api  # noqa: E402
from edgekd.atomic import atomic_write_json  # noqa: E402
from edgekd.paths import cache_dir  # noqa: E402
from edgekd.results.markdown import write_section  # noqa: E402

FAMILIES = {"quickstart": ("quickstart", []), "mbv2": ("mbv2", ["data.root=" + str(ROOT.parent / "shared" / "data")])}
SECTION = "## Latency model: held-out accuracy (bench script)"


def run_cell(family: str, mode: str, args) -> dict:
    recipe_name, overrides = FAMILIES[family]
    recipe = api.load_recipe(recipe_name, overrides=overrides)
    options = api.ProfileOptions(mode=mode, levels=args.levels, refine=args.refine, calibration=args.calibration,
                                 heldout=args.heldout, rounds=args.rounds, seed=0, tune_trials=args.tune_trials)
    started = time.perf_counter()
    model = api.profile_recipe(recipe, args.board or args.device, options)
    wall = time.perf_counter() - started
    pointwise = max((t for name, t in model.tables.items() if name.startswith("conv-k1x1")),
                    key=lambda t: len(t.a_in) * len(t.a_out))
    return {"family": family, "mode": mode, "device": args.device, "host": platform.node(), "wall_s": round(wall, 1),
            "summary": model.summary(), "validation": model.validation.model_dump(),
            "calibration": model.calibration.model_dump(),
            "staircase": pointwise.model_dump(), "options": {k: getattr(options, k) for k in
                                                            ("levels", "refine", "calibration", "heldout", "rounds",
                                                             "tune_trials")}}


def table(cells: list[dict]) -> str:
    lines = ["| family | mode | device | profiling (min) | of it tuning (min; tasks × trials) | "
             "lattice points (cached) | kernels timed | networks | ±10% held out | ±5% held out | "
             "noise (median spread) | α, β |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s, st = c["summary"], c["summary"]["stats"]
        h = s["heldout"]
        tuning = (f"{st.get('tune_s', 0) / 60:.1f}; {st.get('tasks_tuned', 0):.0f} × {c['options'].get('tune_trials')}"
                  if c["mode"] == "tuned" else "-")
        lines.append(
            f"| {c['family']} | {c['mode']} | {c['device']} | {c['wall_s'] / 60:.1f} | {tuning} | "
            f"{st.get('points', 0):.0f} ({st.get('points_cached', 0):.0f}) | {st.get('kernels_timed', 0):.0f} | "
            f"{st.get('networks', 0):.0f} | {100 * h['within_10pct']:.0f}% of {h['configurations']} | "
            f"{100 * h['within_5pct']:.0f}% | {s['noise_pct']}% | {s['calibration']['alpha']:.3f}, "
            f"{s['calibration']['beta_ms']:.3f} ms |")
    if not any(c["mode"] == "tuned" for c in cells):
        lines.append("| any | tuned | - | - | - | - | - | not measured yet (`--modes tuned`: the lattice's kernels and "
                     "every network's new tasks tuned first) | | | | |")
    return "\n".join(lines)


def staircase(cells: list[dict]) -> str:
    out = []
    for c in cells:
        t = c["staircase"]
        out.append(f"\n{c['family']} {c['mode']}, family `{t['family']}` (ms; rows: input channels, columns: output "
                   "channels):\n")
        out.append("| in \\ out | " + " | ".join(str(b) for b in t["a_out"]) + " |")
        out.append("|---" * (len(t["a_out"]) + 1) + "|")
        for a, row in zip(t["a_in"], t["ms"], strict=True):
            out.append(f"| {a} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(out)


def write_docs(path: Path, cells: list[dict], command: str, out: Path) -> None:
    body = (f"Command: `{command}` (resumable; cells in `{out}/cells`). Kernels over a width lattice are timed on the "
            "board by `edgekd-timer`; whole networks by `edgekd-runner` (p50, median of interleaved rounds). Held-out "
            "configurations are random per-group widths on the channel grid that the calibration never saw.\n\n"
            + table(cells) + "\n" + staircase(cells) + "\n")
    write_section(path, SECTION, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=["quickstart", "mbv2"], choices=sorted(FAMILIES))
    parser.add_argument("--modes", nargs="+", default=["untuned"], choices=["untuned", "tuned"])
    parser.add_argument("--tune-trials", type=int, default=api.ProfileOptions.tune_trials,
                        help="tuned mode: MetaSchedule trials per task (lattice kernels and networks' new tasks)")
    parser.add_argument("--device", default="local")
    parser.add_argument("--loopback", action="store_true",
                        help="profile through a loopback sshd board (device 'loop', set up under OUT/loopback-board)")
    parser.add_argument("--levels", type=int, default=api.ProfileOptions.levels)
    parser.add_argument("--refine", type=int, default=api.ProfileOptions.refine)
    parser.add_argument("--calibration", type=int, default=6)
    parser.add_argument("--heldout", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=cache_dir() / "bench-latency")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    args.board, server = None, None
    if args.loopback:
        from edgekd.testing.boards import loopback_board

        server, args.board = loopback_board(args.out / "loopback-board", "loop")
        args.device = args.board.name
    try:
        profile_all(args)
    finally:
        if server is not None:
            server.stop()


def profile_all(args) -> None:
    command = "python scripts/bench_latency_model.py " + " ".join(sys.argv[1:])
    cells = []
    for family in args.families:
        for mode in args.modes:
            path = args.out / "cells" / f"{family}-{mode}-{args.device}.json"
            if path.is_file():
                cell = json.loads(path.read_text())
            else:
                print(f"profiling {family} ({mode}) on {args.device}", file=sys.stderr)
                cell = run_cell(family, mode, args)
                atomic_write_json(path, cell)
            cells.append(cell)
            write_docs(args.docs, cells, command.strip(), args.out)
            s = cell["summary"]
            print(f"{family} {mode}: {100 * s['heldout']['within_10pct']:.0f}% within ±10% of "
                  f"{s['heldout']['configurations']}, noise {s['noise_pct']}%, {cell['wall_s'] / 60:.1f} min",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
