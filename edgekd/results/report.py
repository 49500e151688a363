"""``edgekd report PATH``: one self-contained HTML page (figures embedded as PNG data URIs, no script or style
fetched from anywhere, opens from disk) and the PNGs beside it.

Input, stored JSON only: a compress run directory (``report.json``: per-block channels, budgets and costs;
teacher/student accuracy) with the store rows measured from it, or the results store itself (every row).
A tune run (``tune.json``) gets its own sections once ``edgekd tune`` writes one: add a builder to
:data:`KINDS` (predicted vs measured latency per round, the budgets chosen).

Output: ``OUT/index.html`` and ``OUT/<figure>.png`` (default ``RUN/report/``, or ``<store>-report/`` beside
the store file). Each figure's data is embedded beside it as ``<script type="application/json"
class="figure-data" data-figure="NAME">``, and the page's contents as ``<script type="application/json"
id="report-manifest">``, so what is drawn can be checked.

Rows from an emulated board (qemu) never appear on a latency, memory or power axis: their timings are not
the device's. They are listed, like every row, in the provenance table.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgekd.atomic import atomic_write_bytes, atomic_write_text
from edgekd.errors import ConfigError
from edgekd.results.pareto import pareto_front
from edgekd.results.query import enrich, rows_for_run
from edgekd.results.store import ResultsStore

__all__ = ["KINDS", "Report", "build_report", "default_report_dir", "report_kind", "report_source_for_artifact"]

PROVENANCE = ["record_id", "timestamp", "label", "device", "target", "arch", "runtime", "threads", "affinity",
              "governor", "tuned", "emulated", "latency_valid", "version_tvm", "version_edgekd", "version_torch",
              "tvm_runtime", "runner_version", "cpu_model", "host"]


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html: Path
    kind: str
    source: Path
    figures: list[str]
    pngs: list[Path]
    rows: int
    emulated_rows: int
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"html": str(self.html), "kind": self.kind, "source": str(self.source), "figures": self.figures,
                "pngs": [str(p) for p in self.pngs], "rows": self.rows, "emulated_rows": self.emulated_rows,
                "skipped": self.skipped, "notes": self.notes}


# ---------------------------------------------------------------------------------------------- inputs --
def report_kind(path: Path) -> str:
    """``compress`` (a run directory with ``report.json``), ``tune`` (with ``tune.json``) or ``store`` (a file)."""
    if path.is_dir():
        if (path / "tune.json").is_file():
            return "tune"
        if (path / "report.json").is_file():
            return "compress"
        raise ConfigError(f"{path}: not a compress run (no report.json) nor a tune run (no tune.json); "
                          "give a run directory or the results store file")
    if path.is_file():
        return "store"
    raise ConfigError(f"{path}: no such run directory or results store")


def default_report_dir(path: Path) -> Path:
    """``RUN/report`` for a run directory, ``<store stem>-report/`` beside a store file."""
    return path / "report" if path.is_dir() else path.with_name(f"{path.stem}-report")


def report_source_for_artifact(artifact: str | Path, store: str | Path | None = None) -> Path:
    """What a bench of ``artifact`` should report on: the compress run its model came from (or that holds it)
    when there is one, else the results store."""
    from edgekd.results.query import artifact_provenance

    path = Path(artifact).resolve()
    runs = [path if path.is_dir() else path.parent,  # a run directory or a model file given as the artifact
            artifact_provenance(path).get("run"), path.parent.parent if path.parent.name == "artifacts" else None]
    for run in runs:
        if run and (Path(run) / "report.json").is_file():
            return Path(run)
    return ResultsStore(store).path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


# ------------------------------------------------------------------------------------ figure data -------
def _clean(value: Any) -> Any:
    """JSON-ready scalars (NaN → None, numpy → Python)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _labelled(frame):
    """Rows with a ``label`` per measured configuration (artifact × device × runtime × threads), unique."""
    if not len(frame):
        frame = frame.copy()
        frame["label"] = []
        return frame
    frame = frame.copy()
    for column in ("role", "device", "runtime", "threads", "target", "artifact", "record_id"):
        if column not in frame:
            frame[column] = None
    keys = list(zip(frame["artifact"], frame["device"], frame["runtime"], frame["threads"], strict=True))
    labels: dict[tuple, str] = {}
    used: dict[str, int] = {}
    for key, role, target in zip(keys, frame["role"], frame["target"], strict=True):
        if key in labels:
            continue
        threads = f", {int(key[3])}t" if _clean(key[3]) is not None else ""
        base = f"{role or 'model'} · {key[1]}/{key[2]}{threads}"
        if base in used:
            base = f"{base} ({target})"
        used[base] = used.get(base, 0) + 1
        labels[key] = base if used[base] == 1 else f"{base} #{used[base]}"
    frame["label"] = [labels[k] for k in keys]
    return frame


def _timed(frame):
    """Rows whose timings are device latency (never an emulated row)."""
    if not len(frame):
        return frame
    valid = frame["latency_valid"].fillna(False).astype(bool) if "latency_valid" in frame else True
    emulated = frame["emulated"].fillna(False).astype(bool) if "emulated" in frame else False
    return frame[valid & ~emulated]


def _series(frame, column: str) -> list[dict[str, Any]]:
    out = []
    if not len(frame) or column not in frame:
        return out
    for label, group in frame.groupby("label", sort=False):
        values = [_clean(v) for v in group[column]]
        keep = [(v, r) for v, r in zip(values, group["record_id"], strict=True) if v is not None]
        if keep:
            out.append({"label": label, "values": [v for v, _ in keep], "record_ids": [r for _, r in keep]})
    return out


def _accuracy_latency(timed) -> dict[str, Any] | None:
    if not len(timed) or "accuracy" not in timed or "latency_ms_p50" not in timed:
        return None
    points = []
    for label, group in timed.groupby("label", sort=False):
        group = group[group["latency_ms_p50"].notna() & group["accuracy"].notna()]
        if not len(group):
            continue
        first = group.iloc[0]
        points.append({
            "label": label, "role": _clean(first.get("role")), "device": _clean(first.get("device")),
            "target": _clean(first.get("target")), "runtime": _clean(first.get("runtime")),
            "threads": _clean(first.get("threads")), "artifact": _clean(first.get("artifact")),
            "latency_ms": float(group["latency_ms_p50"].median()),
            "latency_ms_p90": _clean(group["latency_ms_p90"].median()) if "latency_ms_p90" in group else None,
            "accuracy": float(group["accuracy"].iloc[-1]), "repeats": len(group),
            "record_ids": [str(r) for r in group["record_id"]],
        })
    if not points:
        return None
    front = set(pareto_front([(p["latency_ms"], p["accuracy"]) for p in points]))
    for index, point in enumerate(points):
        point["pareto"] = index in front
    return {"x": "latency_ms_p50 (median over repeats)", "y": "test accuracy", "points": points}


def _measurement_figures(frame) -> dict[str, dict[str, Any]]:
    """accuracy_latency, latency_distribution, peak_memory and power from store rows (emulated rows left out)."""
    timed = _timed(frame)
    figures: dict[str, dict[str, Any]] = {}
    if (data := _accuracy_latency(timed)) is not None:
        figures["accuracy_latency"] = data
    if series := _series(timed, "latency_ms_p50"):
        figures["latency_distribution"] = {"y": "latency_ms_p50 per repeat", "series": series}
    if series := _series(timed, "peak_rss_mb"):
        figures["peak_memory"] = {"y": "peak_rss_mb (max over repeats)", "series": [
            {"label": s["label"], "peak_rss_mb": max(s["values"]), "record_ids": s["record_ids"]} for s in series]}
    powered = timed
    if len(powered) and {"energy_per_inference_mj", "run_mw"} & set(powered.columns):
        columns = [c for c in ("energy_per_inference_mj", "run_mw") if c in powered]
        powered = powered[powered[columns].notna().any(axis=1)]
        series = []
        for label, group in powered.groupby("label", sort=False):
            mean = {c: _clean(group[c].mean()) if c in group else None
                    for c in ("idle_mw", "run_mw", "energy_per_inference_mj")}
            series.append({"label": label, "rail": _clean(group["power_rail"].iloc[0]) if "power_rail" in group
                           else None, **mean, "record_ids": [str(r) for r in group["record_id"]]})
        if series:
            figures["power"] = {"series": series}
    if "power_trace" in timed:
        traces = []
        for label, group in timed[timed["power_trace"].notna()].groupby("label", sort=False):
            first = group.iloc[0]
            window = first.get("power_run_window_s")
            traces.append({"label": label, "rail": _clean(first.get("power_rail")), "trace": list(first["power_trace"]),
                           "run_window_s": list(window) if isinstance(window, list) else None,
                           "record_id": str(first["record_id"])})
        if traces:
            figures["power_trace"] = {"series": traces}
    return figures


def _block_figures(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    blocks = report.get("blocks") or []
    if not blocks:
        return {}
    widths = {"blocks": [{"name": b["name"], "teacher": b["channels_before"], "student": b["channels_after"],
                          "frozen": b.get("frozen", False)} for b in blocks]}
    bars = []
    for block in blocks:
        for kind, budget in (block.get("budget") or {}).items():
            dense = block.get(f"dense_{kind}") or 0
            attained = block.get(kind)
            if not dense or attained is None:
                continue
            bars.append({"block": block["name"], "kind": kind, "budget": budget, "attained": attained,
                         "dense": dense, "budget_fraction": budget / dense, "attained_fraction": attained / dense,
                         "met": attained <= budget * 1.0001})
    figures = {"block_widths": widths}
    if bars:
        figures["block_budgets"] = {"bars": bars}
    return figures


def _provenance(frame) -> list[dict[str, Any]]:
    rows = []
    for _, row in frame.iterrows():
        rows.append({c: _clean(row.get(c)) if c in row else None for c in PROVENANCE})
    return rows


# ----------------------------------------------------------------------------------------- kinds -------
def _compress(path: Path, store: ResultsStore) -> dict[str, Any]:
    report = _read_json(path / "report.json")
    frame = enrich(store.frame())
    frame = _labelled(rows_for_run(frame, path))
    figures = _block_figures(report) | _measurement_figures(frame)
    teacher, student = report.get("teacher") or {}, report.get("student") or {}
    summary = [
        ("run", str(path)), ("target", report.get("target") or "-"),
        ("teacher: accuracy / FLOPs / params", _triple(teacher)),
        ("student: accuracy / FLOPs / params", _triple(student)),
        ("pruned accuracy before finetuning", _fmt((report.get("pruning") or {}).get("pruned_test_acc"))),
        ("bench rows from this run", str(len(frame))),
    ]
    notes = []
    if not len(frame):
        notes.append(f"No measurement of this run in {store.path} yet: `edgekd compile {path} --target TARGET` "
                     "then `edgekd bench ARTIFACT --device DEVICE` adds accuracy-vs-latency, latency and memory.")
    return {"title": f"edgekd report: {path.name}", "summary": summary, "figures": figures, "frame": frame,
            "notes": notes}


def _store(path: Path, store: ResultsStore) -> dict[str, Any]:
    frame = _labelled(enrich(store.frame()))
    summary = [("store", str(path)), ("rows", str(len(frame)))]
    notes = [] if len(frame) else [f"{path} holds no measurement yet (`edgekd bench` adds rows)."]
    return {"title": f"edgekd report: {path.name}", "summary": summary, "figures": _measurement_figures(frame),
            "frame": frame, "notes": notes}


def _tune(path: Path, store: ResultsStore) -> dict[str, Any]:
    raise ConfigError(f"{path}: tune reports come with `edgekd tune` (not in this version)")


#: report kind → builder(path, store) -> {title, summary, figures, frame, notes}; see :func:`report_kind`.
KINDS = {"compress": _compress, "store": _store, "tune": _tune}


# ------------------------------------------------------------------------------------------- page -------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _count(value: Any) -> str:
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _triple(model: dict[str, Any]) -> str:
    return f"{_fmt(model.get('test_acc'))} / {_count(model.get('flops'))} / {_count(model.get('params'))}"


def _json_script(data: Any, **attributes: str) -> str:
    text = json.dumps(data, indent=1, default=str, allow_nan=False).replace("</", "<\\/")
    attrs = "".join(f' {k.rstrip("_").replace("_", "-")}="{html.escape(v)}"' for k, v in attributes.items())
    return f'<script type="application/json"{attrs}>\n{text}\n</script>'


CAPTIONS = {
    "accuracy_latency": "Test accuracy against measured latency (median p50 over repeats); ringed: the Pareto "
                        "front. Emulated measurements are never drawn here.",
    "block_widths": "Channels each block kept: the dense teacher's against the compact student's.",
    "block_budgets": "Each block's budget and attained cost, as fractions of the dense block.",
    "latency_distribution": "Latency p50 of every repeat (one runner invocation each), per artifact.",
    "peak_memory": "Peak resident memory of the runner (model loaded and running), per artifact.",
    "power": "Idle and running power on the sensed rail, and energy per inference.",
    "power_trace": "Power on the sensed rail during one bench of each configuration (timed runs shaded).",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f3f3f3; } figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; } .note { background: #fff6d5; padding: 0.5em 1em; }
.emulated { color: #8a6d00; } .scroll { overflow-x: auto; }
"""


def _page(content: dict[str, Any], figures: list[tuple[str, bytes, dict[str, Any]]], provenance: list[dict],
          manifest: dict[str, Any]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             # nothing may be fetched: images are data URIs, no script runs
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
             "style-src 'unsafe-inline'\">",
             f"<title>{esc(content['title'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>{esc(content['title'])}</h1>", "<table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in content["summary"]]
    parts.append("</table>")
    parts += [f'<p class="note">{esc(note)}</p>' for note in content["notes"]]
    for name, png, data in figures:
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        parts += [f'<figure id="fig-{name}" data-figure="{name}">',
                  f'<img src="{uri}" alt="{esc(name)}">',
                  f"<figcaption>{esc(CAPTIONS.get(name, name))} (<code>{name}.png</code>)</figcaption>",
                  _json_script(data, class_="figure-data", data_figure=name), "</figure>"]
    parts.append("<h2>Provenance of every number</h2>")
    if provenance:
        parts.append('<div class="scroll"><table id="provenance"><tr>'
                     + "".join(f"<th>{esc(c)}</th>" for c in PROVENANCE) + "</tr>")
        for row in provenance:
            css = ' class="emulated"' if row.get("emulated") else ""
            parts.append(f"<tr{css}>" + "".join(f"<td>{esc(_fmt(row.get(c)))}</td>" for c in PROVENANCE) + "</tr>")
        parts.append("</table></div>")
        if any(row.get("emulated") for row in provenance):
            parts.append('<p class="emulated">Highlighted rows ran on an emulated board (qemu): their timings are '
                         "not device latency and appear in no figure.</p>")
    else:
        parts.append("<p>No measurement rows.</p>")
    parts.append(_json_script(provenance, id="provenance-data"))
    parts.append(_json_script(manifest, id="report-manifest"))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(path: str | Path, out: str | Path | None = None, store: str | Path | None = None) -> Report:
    """Write the report of ``path`` (a compress run directory or a results store file) into ``out``.

    Args:
        path: a compress run directory (``report.json``) or a results store (JSON lines).
        out: the output directory (default :func:`default_report_dir`); gets ``index.html`` and one PNG per figure.
        store: for a run, the results store to take its measurements from (default ``$EDGEKD_RESULTS``).

    Raises:
        ConfigError: ``path`` is neither, or its JSON is unreadable.
    """
    path = Path(path).expanduser().resolve()
    kind = report_kind(path)
    results = ResultsStore(path if kind == "store" else store)
    content = KINDS[kind](path, results)
    directory = Path(out).expanduser() if out else default_report_dir(path)
    directory.mkdir(parents=True, exist_ok=True)
    from edgekd.results.figures import DRAW, render

    drawn = []
    pngs = []
    for name in DRAW:  # the page's figure order
        if name not in content["figures"]:
            continue
        data = content["figures"][name]
        png = render(name, data)
        pngs.append(atomic_write_bytes(directory / f"{name}.png", png))
        drawn.append((name, png, data))
    frame = content["frame"]
    provenance = _provenance(frame)
    emulated = sum(1 for row in provenance if row.get("emulated"))
    manifest = {"kind": kind, "source": str(path), "figures": [name for name, _, _ in drawn],
                "rows": len(provenance), "emulated_rows": emulated, "skipped_lines": results.skipped,
                "generated": datetime.now(UTC).isoformat(timespec="seconds")}
    page = atomic_write_text(directory / "index.html", _page(content, drawn, provenance, manifest))
    for written in (page, *pngs):  # readable like any file a user writes (atomic writes start private)
        written.chmod(0o644)
    notes = list(content["notes"])
    if results.skipped:
        notes.append(f"skipped {results.skipped} unreadable line(s) in {results.path}")
    return Report(html=page, kind=kind, source=path, figures=manifest["figures"], pngs=pngs,
                  rows=len(provenance), emulated_rows=emulated, skipped=results.skipped, notes=notes)
