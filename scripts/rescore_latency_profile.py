"""Re-score a saved latency profile under other calibration rules and calibration sizes (without measuring again,
but for ``--kernels``).

    .venv/bin/python scripts/rescore_latency_profile.py CELL_OR_MODEL.json [...] [--sizes 3 6 8] [--draws 500]

Input: a cell of ``scripts/bench_latency_model.py`` (``OUT/cells/<family>-<mode>.json``) or a saved latency model
(``<cache>/latency/models/…json``). Every whole network the profile measured — its calibration networks (kept in
the file since stop 31) and its held-out ones — is a pair (Σ of its kernels' table values, measured p50). The pairs
are pooled, and for each calibration size k, ``--draws`` random splits take k networks to fit the calibration and
score the rest within ±10% / ±5%: the mean share over the draws, its 10th percentile, and the leave-one-out share.
A rule is judged on many splits of one run's networks rather than on the one split the run happened to draw, so a
rule chosen here is not fitted to one held-out set.

``--levels K`` (a saved latency *model* file, which holds the tables): every table is cut to K of its levels per
axis (evenly by index, both ends kept) and fitted again as the profile fits it (tuned: the least-squares surface;
untuned: interpolation), and every network's Σ recomputed from its widths — what a K-level lattice would have
predicted from the same measurements, to weigh a cheaper lattice against accuracy. Networks whose widths the file
does not keep (calibration rows before stop 31) are left out.

``--kernels DEVICE`` (a saved latency *model* file): every network's Σ is replaced by the sum of *its own* fused
kernels — the tasks its compile extracts, with the board database's schedules in tuned mode, as its compile
applied them — timed on DEVICE as the profile times its lattice (:func:`edgekd.latency.profile.kernel_sums`; run
with the profile's ``EDGEKD_CACHE_DIR`` so its database is the one read). What the model would score if its
tables were exact for every kernel: the gap to the tables' score is the tables' share of the error, what is left
is the whole network's own (caches, the runtime between kernels).

Rules: ``median`` (α = median measured ÷ Σ, what ``fit_calibration`` does), ``mean`` (mean ratio), ``origin``
(least squares through the origin), ``line`` (least squares with an offset).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

Pair = tuple[float, float]  # (Σ kernels' table values, measured p50), ms


def _median(pairs: list[Pair]) -> Callable[[float], float]:
    alpha = statistics.median(y / x for x, y in pairs)
    return lambda x: alpha * x


def _mean(pairs: list[Pair]) -> Callable[[float], float]:
    alpha = statistics.fmean(y / x for x, y in pairs)
    return lambda x: alpha * x


def _origin(pairs: list[Pair]) -> Callable[[float], float]:
    alpha = sum(x * y for x, y in pairs) / sum(x * x for x, _ in pairs)
    return lambda x: alpha * x


def _line(pairs: list[Pair]) -> Callable[[float], float]:
    if len(pairs) < 2 or len({x for x, _ in pairs}) < 2:
        return _origin(pairs)
    slope, intercept = statistics.linear_regression([x for x, _ in pairs], [y for _, y in pairs])
    return lambda x: slope * x + intercept


RULES = {"median": _median, "mean": _mean, "origin": _origin, "line": _line}


def load_pairs(path: Path) -> tuple[list[Pair], list[Pair]]:
    """(calibration pairs, held-out pairs) of a bench cell or a latency model file."""
    doc = json.loads(path.read_text())
    calibration = doc.get("calibration") or doc.get("summary", {}).get("calibration") or {}
    validation = doc.get("validation") or {}
    alpha, beta = float(calibration.get("alpha", 1.0)), float(calibration.get("beta_ms", 0.0))
    cal = [(float(r["raw_ms"]), float(r["measured_ms"])) for r in calibration.get("rows", [])]
    held = [((float(r["predicted_ms"]) - beta) / alpha, float(r["measured_ms"])) for r in validation.get("rows", [])]
    if not held:
        raise SystemExit(f"{path}: no held-out rows (validation.rows): not a latency profile or a bench cell")
    return cal, held


def _subset(levels: list[int], keep: int) -> list[int]:
    """Indices of ``keep`` levels spread evenly by index, both ends kept (all of them when there are few)."""
    if len(levels) <= keep:
        return list(range(len(levels)))
    return sorted({round(i * (len(levels) - 1) / (keep - 1)) for i in range(keep)})


def refit_pairs(path: Path, keep: int) -> tuple[list[Pair], list[Pair]]:
    """(calibration, held-out) pairs of a latency model file with its tables cut to ``keep`` levels per axis."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgekd.latency.design import masks_for, op_widths
    from edgekd.latency.model import LatencyModel, Table, fit_surface
    from edgekd.latency.profile import predict_raw
    from edgekd.models import create_model
    from edgekd.structure.groups import trace_groups

    model = LatencyModel.model_validate_json(path.read_text())
    tables = {}
    for name, table in model.tables.items():
        rows, cols = _subset(table.a_in, keep), _subset(table.a_out, keep)
        a_in, a_out = [table.a_in[i] for i in rows], [table.a_out[j] for j in cols]
        ms = [[table.ms[i][j] for j in cols] for i in rows]
        fit = fit_surface(a_in, a_out, ms) if table.fit is not None else None
        tables[name] = Table(family=table.family, a_in=a_in, a_out=a_out, ms=ms, fit=fit)
    network = create_model(model.network.name, **model.network.kwargs).eval()
    graph = trace_groups(network, model.network.input_shape)

    def raw(widths: dict[str, int]) -> float:
        return predict_raw(tables, model.ops, op_widths(graph, masks_for(graph, {int(k): v for k, v in
                                                                                  widths.items()})))

    cal = [(raw(r["widths"]), float(r["measured_ms"])) for r in model.calibration.rows if "widths" in r]
    held = [(raw(r["widths"]), float(r["measured_ms"])) for r in model.validation.rows]
    return cal, held


def kernel_pairs(path: Path, device: str) -> tuple[list[Pair], list[Pair]]:
    """(calibration, held-out) pairs of a latency model file with each network's own kernels summed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgekd.device.tuning_runner import EvaluatorSettings
    from edgekd.latency.model import LatencyModel
    from edgekd.latency.profile import ProfileOptions, kernel_sums
    from edgekd.models import create_model
    from edgekd.pipeline.latency import latency_device

    model = LatencyModel.model_validate_json(path.read_text())
    entry, profile = latency_device(device)
    network = create_model(model.network.name, **model.network.kwargs).eval()
    timer = model.provenance.timer
    options = ProfileOptions(mode=model.provenance.mode, grid=model.grid,
                             timer=EvaluatorSettings(number=timer["number"], repeat=timer["repeat"],
                                                     min_repeat_ms=timer["min_repeat_ms"]))
    rows = [r for r in model.calibration.rows if "widths" in r] + list(model.validation.rows)
    configs = [{int(k): v for k, v in r["widths"].items()} for r in rows]
    sums, stats = kernel_sums(network, model.network.input_shape, entry, profile, model.network, configs, options)
    print(f"{path}: own kernels of {len(configs)} networks on {device}: " + ", ".join(
        f"{k} {stats[k]}" for k in ("kernels", "kernels_timed", "kernels_untuned", "build_s", "time_kernels_s",
                                    "pass_spread_pct") if k in stats) + f" ({options.passes} passes)", file=sys.stderr)
    pairs = [(x, float(r["measured_ms"])) for x, r in zip(sums, rows, strict=True)]
    calibrating = sum("widths" in r for r in model.calibration.rows)
    return pairs[:calibrating], pairs[calibrating:]


def shares(fit: Callable[[float], float], scored: list[Pair]) -> tuple[float, float]:
    errors = [abs(fit(x) - y) / y for x, y in scored]
    return sum(e <= 0.10 for e in errors) / len(errors), sum(e <= 0.05 for e in errors) / len(errors)


def rescore(pairs: list[Pair], sizes: list[int], draws: int, seed: int) -> list[dict]:
    rows = []
    for name, rule in RULES.items():
        for k in [k for k in sizes if 1 <= k < len(pairs)]:
            rng = random.Random(seed)
            got = []
            for _ in range(draws):
                picked = set(rng.sample(range(len(pairs)), k))
                fit = rule([pairs[i] for i in picked])
                got.append(shares(fit, [p for i, p in enumerate(pairs) if i not in picked]))
            ten = sorted(g[0] for g in got)
            rows.append({"rule": name, "calibration": k, "within_10pct": statistics.fmean(g[0] for g in got),
                         "within_10pct_p10": ten[len(ten) // 10], "within_5pct": statistics.fmean(g[1] for g in got)})
        loo = [shares(rule(pairs[:i] + pairs[i + 1:]), [pairs[i]]) for i in range(len(pairs))]
        rows.append({"rule": name, "calibration": len(pairs) - 1, "within_10pct": statistics.fmean(s[0] for s in loo),
                     "within_10pct_p10": None, "within_5pct": statistics.fmean(s[1] for s in loo)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--sizes", nargs="+", type=int, default=[3, 6, 8, 12])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levels", type=int, default=None,
                        help="a model file's tables cut to this many levels per axis and fitted again")
    parser.add_argument("--kernels", metavar="DEVICE", default=None,
                        help="a model file's networks summed from their own kernels timed on DEVICE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = []
    for path in args.files:
        if args.kernels:
            cal, held = kernel_pairs(path, args.kernels)
        else:
            cal, held = load_pairs(path) if args.levels is None else refit_pairs(path, args.levels)
        as_run = shares(_median(cal), held) if cal else None
        report.append({"file": str(path), "levels": args.levels, "kernels": args.kernels,
                       "networks": len(cal) + len(held), "calibration_kept": len(cal), "as_run_median": as_run,
                       "rows": rescore(cal + held, args.sizes, args.draws, args.seed),
                       "pairs": [[round(x, 4), round(y, 4)] for x, y in cal + held]})
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for item in report:
        levels = f" (tables cut to {item['levels']} levels)" if item["levels"] else ""
        levels += f" (own kernels timed on {item['kernels']})" if item["kernels"] else ""
        print(f"{item['file']}{levels}: {item['networks']} networks ({item['calibration_kept']} of them the run's "
              f"calibration); the run's own split under the median rule: {item['as_run_median']}")
        print("| rule | calibration networks | within ±10% (mean of draws) | 10th percentile | within ±5% |")
        print("|---|---|---|---|---|")
        for r in item["rows"]:
            p10 = "-" if r["within_10pct_p10"] is None else f"{r['within_10pct_p10']:.2f}"
            print(f"| {r['rule']} | {r['calibration']} | {r['within_10pct']:.2f} | {p10} | {r['within_5pct']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
