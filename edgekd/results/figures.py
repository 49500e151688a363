"""The report's figures: each a function from the figure's data (the JSON embedded beside it in the report)
to PNG bytes. matplotlib's object API on the Agg canvas: no pyplot, no global backend, no display.

Every function draws exactly what its data holds; choosing rows (e.g. leaving emulated ones off latency
axes) is :mod:`edgekd.results.report`'s job.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

__all__ = ["accuracy_latency", "block_budgets", "block_widths", "latency_distribution", "peak_memory", "power",
           "power_trace", "render"]

TEACHER, STUDENT, FRONT = "#8c8c8c", "#1f77b4", "#d62728"
DPI = 110


def _figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def accuracy_latency(data: dict[str, Any]) -> bytes:
    """Accuracy against measured latency (p50), one marker per artifact × device × runtime; the Pareto front
    joined by a line and ringed."""
    figure = _figure()
    axes = figure.add_subplot()
    points = data["points"]
    markers = {"student": "o", "pruned": "s", "teacher": "^"}
    for point in points:
        axes.scatter(point["latency_ms"], point["accuracy"], s=46, zorder=3,
                     marker=markers.get(point["role"], "D"),
                     color=TEACHER if point["role"] == "teacher" else STUDENT)
        axes.annotate(point["label"], (point["latency_ms"], point["accuracy"]), textcoords="offset points",
                      xytext=(6, 5), fontsize=8)
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["latency_ms"])
    if front:
        axes.plot([p["latency_ms"] for p in front], [p["accuracy"] for p in front], color=FRONT, lw=1.2,
                  drawstyle="steps-post", zorder=2, label="Pareto front")
        axes.scatter([p["latency_ms"] for p in front], [p["accuracy"] for p in front], s=130, facecolors="none",
                     edgecolors=FRONT, zorder=4)
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("measured latency p50 (ms)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy vs measured latency")
    axes.grid(alpha=0.3)
    axes.margins(0.15)
    return _png(figure)


def block_widths(data: dict[str, Any]) -> bytes:
    """Channels per block: the dense teacher's against the compact student's."""
    blocks = data["blocks"]
    figure = _figure(width=max(5.0, 1.2 * len(blocks) + 2))
    axes = figure.add_subplot()
    xs = list(range(len(blocks)))
    before = axes.bar([x - 0.2 for x in xs], [b["teacher"] for b in blocks], 0.4, color=TEACHER, label="teacher")
    after = axes.bar([x + 0.2 for x in xs], [b["student"] for b in blocks], 0.4, color=STUDENT, label="student")
    axes.bar_label(before, fontsize=8)
    axes.bar_label(after, fontsize=8)
    axes.set_xticks(xs, [b["name"] for b in blocks])
    axes.set_ylabel("channels")
    axes.set_title("Channels per block, teacher vs student")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def block_budgets(data: dict[str, Any]) -> bytes:
    """Per block and cost kind: the budget and the attained cost, as fractions of the dense block."""
    bars = data["bars"]
    figure = _figure(width=max(5.0, 1.2 * len(bars) + 2))
    axes = figure.add_subplot()
    xs = list(range(len(bars)))
    axes.bar([x - 0.2 for x in xs], [b["budget_fraction"] for b in bars], 0.4, color="#ffbb78", label="budget")
    attained = axes.bar([x + 0.2 for x in xs], [b["attained_fraction"] for b in bars], 0.4, color=STUDENT,
                        label="attained")
    axes.bar_label(attained, fmt="%.2f", fontsize=8)
    axes.set_xticks(xs, [f"{b['block']}\n{b['kind']}" for b in bars])
    axes.set_ylabel("fraction of the dense block")
    axes.set_title("Budget vs attained, per block")
    axes.axhline(1.0, color=TEACHER, lw=0.8, ls="--")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def latency_distribution(data: dict[str, Any]) -> bytes:
    """Per artifact: the per-repeat latency p50 as a box, every repeat as a dot."""
    series = data["series"]

    def draw(axes) -> None:
        axes.boxplot([s["values"] for s in series], tick_labels=[s["label"] for s in series], widths=0.5)
        for index, item in enumerate(series, start=1):
            axes.scatter([index] * len(item["values"]), item["values"], s=14, color=STUDENT, alpha=0.7, zorder=3)

    return _per_artifact(series, draw, "latency p50 per repeat (ms)", "Latency distribution per artifact")


def peak_memory(data: dict[str, Any]) -> bytes:
    """Per artifact: the runner's peak resident memory."""
    series = data["series"]

    def draw(axes) -> None:
        bars = axes.bar([s["label"] for s in series], [s["peak_rss_mb"] for s in series], color=STUDENT, width=0.5)
        axes.bar_label(bars, fmt="%.1f", fontsize=8)
        axes.set_xlim(-0.8, len(series) - 0.2)

    return _per_artifact(series, draw, "peak RSS (MB)", "Peak memory per artifact")


def _per_artifact(series: list[dict[str, Any]], draw: Callable[[Any], None], ylabel: str, title: str) -> bytes:
    """One column per artifact: a figure as wide as ``series`` needs, ``draw(axes)``, then the shared labelling."""
    figure = _figure(width=max(5.0, 1.4 * len(series) + 2))
    axes = figure.add_subplot()
    draw(axes)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.tick_params(axis="x", labelsize=8, labelrotation=10)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def power(data: dict[str, Any]) -> bytes:
    """Per artifact: idle and running power on the sensed rail, and energy per inference."""
    series = data["series"]
    figure = _figure(width=max(7.0, 1.6 * len(series) + 3))
    left, right = figure.subplots(1, 2)
    xs = list(range(len(series)))
    left.bar([x - 0.2 for x in xs], [s["idle_mw"] or 0 for s in series], 0.4, color=TEACHER, label="idle")
    left.bar([x + 0.2 for x in xs], [s["run_mw"] or 0 for s in series], 0.4, color=FRONT, label="running")
    left.set_xticks(xs, [s["label"] for s in series], fontsize=8)
    left.set_xlim(-0.8, len(series) - 0.2)
    right.set_xlim(-0.8, len(series) - 0.2)
    left.set_ylabel("power (mW)")
    left.set_title("Power per rail")
    left.legend(fontsize=8)
    energy = right.bar([s["label"] for s in series], [s["energy_per_inference_mj"] or 0 for s in series],
                       color=STUDENT, width=0.5)
    right.bar_label(energy, fmt="%.3g", fontsize=8)
    right.set_ylabel("energy per inference (mJ)")
    right.set_title("Energy per inference")
    right.tick_params(axis="x", labelsize=8)
    return _png(figure)


def power_trace(data: dict[str, Any]) -> bytes:
    """Per configuration: the sensed rail's power over one bench, the timed runs shaded."""
    series = data["series"]
    figure = _figure(width=7.0)
    axes = figure.subplots(1, 1)
    for index, item in enumerate(series):
        times = [point[0] for point in item["trace"]]
        watts = [point[1] for point in item["trace"]]
        line, = axes.plot(times, watts, linewidth=1.2, label=f"{item['label']} ({item['rail'] or 'rail'})")
        if item["run_window_s"]:
            axes.axvspan(*item["run_window_s"], color=line.get_color(), alpha=0.12 if index else 0.18)
    axes.set_xlabel("time since the first sample (s)")
    axes.set_ylabel("power (mW)")
    axes.set_title("Power trace (timed runs shaded)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _png(figure)


#: figure name → drawing function (the report's figure order)
DRAW = {
    "accuracy_latency": accuracy_latency,
    "block_widths": block_widths,
    "block_budgets": block_budgets,
    "latency_distribution": latency_distribution,
    "peak_memory": peak_memory,
    "power": power,
    "power_trace": power_trace,
}


def render(name: str, data: dict[str, Any]) -> bytes:
    """The PNG of figure ``name`` drawn from ``data``."""
    return DRAW[name](data)
