"""A board's latency model of one network family: what it predicts, how it was measured, how well it held out.

Input: per-family tables of measured fused-kernel latency over a lattice of channel widths (one family = the ops
whose kernels differ only in channel counts, :func:`edgekd.latency.kernels.family_key`), a calibration of their
sum against whole networks measured on the board, and the provenance of every number. Output: predictions —
an op's latency at any widths (bilinear in the lattice: exact for a cost bilinear in the widths, as a conv's is,
and exact at lattice points: a tuned model's lattice holds every width of its coarse grid, ``multiples``; tuned
models made before that grid read a least-squares bilinear surface, ``Table.fit``),
its marginal latency per channel (a finite difference over one grid step, so the staircase neither zeroes it nor
makes it spike), and a network's latency = α · Σ ops + β.

Saved as JSON with ``schema_version``; a model whose provenance no longer matches the board (other runtime,
threads, compile mode, or the tuning records of its kernels changed since: ``tuning_digest``) is stale, never
silently reused.
"""

from __future__ import annotations

import bisect
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgekd.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "MODES", "Mode", "check_mode", "Table", "Provenance", "Calibration", "Validation",
           "NetworkKey", "LatencyModel", "interpolate", "fit_surface"]

SCHEMA_VERSION = 1
Mode = Literal["untuned", "tuned"]  # how the profiled kernels were compiled
MODES: tuple[str, ...] = get_args(Mode)


def check_mode(mode: str) -> str:
    """``mode`` when it names a latency mode; one-line ConfigError otherwise."""
    if mode not in MODES:
        raise ConfigError(f"latency mode {mode!r}: expected {' or '.join(MODES)}")
    return mode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _bracket(levels: list[int], value: float) -> tuple[int, int, float]:
    """Indices i, j of the levels around ``value`` and its weight t toward j."""
    if len(levels) == 1:
        return 0, 0, 0.0
    k = bisect.bisect_left(levels, value)
    i = min(max(k - 1, 0), len(levels) - 2)
    lo, hi = levels[i], levels[i + 1]
    return i, i + 1, (value - lo) / (hi - lo)


def interpolate(a_levels: list[int], b_levels: list[int], values: list[list[float]], a: float, b: float) -> float:
    """Bilinear interpolation of ``values[i][j]`` (at ``a_levels[i]``, ``b_levels[j]``); a width outside the
    measured range counts as the nearest measured one (never extrapolated: a line below the smallest measured
    width can reach zero or below, and no pruned width exceeds the full one)."""
    a = min(max(a, a_levels[0]), a_levels[-1])
    b = min(max(b, b_levels[0]), b_levels[-1])
    i0, i1, s = _bracket(a_levels, a)
    j0, j1, t = _bracket(b_levels, b)
    return ((1 - s) * ((1 - t) * values[i0][j0] + t * values[i0][j1])
            + s * ((1 - t) * values[i1][j0] + t * values[i1][j1]))


def _surface_terms(a_in: float, a_out: float) -> list[float]:
    return [1.0, a_in, a_out, a_in * a_out]


def fit_surface(a_levels: list[int], b_levels: list[int], values: list[list[float]]) -> list[float]:
    """Least-squares coefficients of ``c0 + c1·a + c2·b + c3·a·b`` through ``values[i][j]`` (at ``a_levels[i]``,
    ``b_levels[j]``): a conv's cost is bilinear in its channel counts, and tuned kernels scatter around that
    trend (each schedule is the best of a few trials: measured at 4 trials, neighbouring widths 2-4x apart).
    Unweighted, because a network's time is a sum, which the large kernels dominate."""
    rows = [_surface_terms(a, b) for a in a_levels for b in b_levels]
    targets = [v for row in values for v in row]
    coefficients, *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)  # rank-deficient: min norm
    return [float(c) for c in coefficients]


class Table(_Strict):
    """Measured milliseconds of one op family: ``ms[i][j]`` at ``a_in[i]`` input and ``a_out[j]`` output channels.
    A depthwise family depends on its channel count only: ``a_in`` is ``[0]`` and ``ms`` has one row.

    ``fit`` (tuned models made before the coarse grid, still read): the :func:`fit_surface` coefficients through
    ``ms``; values are read off that surface instead of interpolated between scattered measurements (never below
    zero). Untuned kernels are deterministic staircases, which interpolation between 8 levels follows, and a tuned
    model's lattice holds every width its networks take (``fit`` None for both)."""

    family: str
    a_in: list[int]
    a_out: list[int]
    ms: list[list[float]]
    fit: list[float] | None = None

    @property
    def depthwise(self) -> bool:
        return self.a_in == [0]

    def value(self, a_in: float, a_out: float) -> float:
        a_in = 0 if self.depthwise else a_in
        if self.fit is None:
            return interpolate(self.a_in, self.a_out, self.ms, a_in, a_out)
        a_in = min(max(a_in, self.a_in[0]), self.a_in[-1])  # as interpolate: never beyond the measured widths
        a_out = min(max(a_out, self.a_out[0]), self.a_out[-1])
        return max(0.0, sum(c * t for c, t in zip(self.fit, _surface_terms(a_in, a_out), strict=True)))

    def slopes(self, a_in: float, a_out: float, step: int) -> tuple[float, float]:
        """Milliseconds per channel of the input and the output side: ``(f(a + step) - f(a)) / step``, the step
        moved back inside the measured widths at either end (a depthwise family reports its one slope on the
        output side). Never negative: where the kernel one step wider measured faster (tuned kernels, each the
        best of a few trials, are not monotone in width: half the points of a 4-trial CIFAR MobileNetV2 lattice
        dip somewhere), the slope is the mean cost of a channel above the smallest measured width, or 0. The
        regularizer is linear in |γ|, and a negative coefficient makes it unbounded below: a tune round once drove
        it to −373 with λ 5138 and every γ blown up (9.5% accuracy)."""

        def one_side(levels: list[int], value: float, on_input: bool) -> float:
            if len(levels) == 1 or (self.depthwise and on_input):
                return 0.0
            at = (lambda x: self.value(x, a_out)) if on_input else (lambda x: self.value(a_in, x))
            low, high = value, value + step
            if high > levels[-1]:
                low, high = levels[-1] - step, levels[-1]
            low = max(low, levels[0])
            local = (at(high) - at(low)) / (high - low) if high > low else 0.0
            if local >= 0:  # a flat step is real (an untuned staircase): pruning inside it saves nothing
                return local
            current = min(max(value, levels[0]), levels[-1])
            if current <= levels[0]:
                current = high  # at the smallest width: the first measured segment's secant
            return max(0.0, (at(current) - at(levels[0])) / (current - levels[0])) if current > levels[0] else 0.0

        return one_side(self.a_in, a_in, True), one_side(self.a_out, a_out, False)


class Provenance(_Strict):
    """Where every number of the model came from."""

    device: str
    target: str
    board: str  # edgekd.compile.tuning.board_key of the probed CPU
    arch: str | None = None
    cpu_model: str | None = None
    governor: str | None = None
    threads: int
    affinity: list[int] = Field(default_factory=list)
    runtime: dict[str, str]  # tvm, tvm_ffi versions
    mode: Mode
    tuning_digest: str | None = None  # sha256 of the tuning records the kernels were built with (store.tuning_digest)
    records: str | None = None  # that database's directory (tuned mode)
    tuned_tasks: list[str] = Field(default_factory=list)  # ledger keys of the lattice's tasks (tuned mode)
    timer: dict[str, float] = Field(default_factory=dict)
    created: str
    edgekd: str


class Calibration(_Strict):
    """network ms = alpha · Σ predicted op ms + beta_ms: alpha the median measured ÷ predicted of random whole
    networks measured on the board (``edgekd.latency.profile.fit_calibration``); beta_ms is 0 for profiles made
    since, models made before carry their least-squares offset and are read as they are."""

    alpha: float = 1.0
    beta_ms: float = 0.0
    samples: int = 0
    rows: list[dict] = Field(default_factory=list)  # {raw_ms, measured_ms, widths}: α's networks, for re-scoring


class Validation(_Strict):
    """Held-out width configurations (on the grid, never used by the fit): predicted vs measured p50."""

    configurations: int = 0
    within_10pct: float = 0.0
    within_5pct: float = 0.0
    noise_pct: float = 0.0  # median over configurations of the repeat-to-repeat spread (max-min)/median
    rounds: int = 0
    # {widths, predicted_ms, measured_ms, error_pct, spread_pct, rounds_ms (each interleaved round's p50)}
    rows: list[dict] = Field(default_factory=list)


class NetworkKey(_Strict):
    """The network family a model describes: the builder, its arguments and the input shape."""

    name: str
    kwargs: dict = Field(default_factory=dict)
    input_shape: list[int]
    recipe: str | None = None


class LatencyModel(_Strict):
    schema_version: int = SCHEMA_VERSION
    network: NetworkKey
    grid: int  # the channel multiple the lattice and the held-out widths sit on
    # tuned profiles: group name (edgekd.structure.widths.group_name) → the group's own coarser multiple of ``grid``
    # (edgekd.latency.design.coarse_multiples); every kernel of a network whose groups sit on these is a measured
    # lattice point, and structure learning keeps its widths on them. Empty: ``grid`` for every group.
    multiples: dict[str, int] = Field(default_factory=dict)
    ops: dict[str, str]  # op name → family
    tables: dict[str, Table]
    calibration: Calibration = Field(default_factory=Calibration)
    provenance: Provenance
    validation: Validation = Field(default_factory=Validation)
    stats: dict[str, float] = Field(default_factory=dict)  # kernels, measured, cached, seconds per phase
    dense_ms: float = 0.0  # predicted latency of the full-width network

    def op_ms(self, op_name: str, a_in: float, a_out: float) -> float:
        """Calibrated milliseconds of one op (α included; β belongs to the network, not to an op)."""
        return self.calibration.alpha * self.tables[self.ops[op_name]].value(a_in, a_out)

    def op_slopes(self, op_name: str, a_in: float, a_out: float) -> tuple[float, float]:
        s_in, s_out = self.tables[self.ops[op_name]].slopes(a_in, a_out, self.grid)
        return self.calibration.alpha * s_in, self.calibration.alpha * s_out

    def summary(self) -> dict:
        """The ``--json`` / ``show`` summary."""
        v = self.validation
        return {"network": self.network.name, "recipe": self.network.recipe, "device": self.provenance.device,
                "target": self.provenance.target, "mode": self.provenance.mode, "board": self.provenance.board,
                "threads": self.provenance.threads, "grid": self.grid, "coarse_grid": bool(self.multiples),
                "families": len(self.tables),
                "ops": len(self.ops), "dense_ms": round(self.dense_ms, 4),
                "calibration": self.calibration.model_dump(exclude={"rows"}),
                "heldout": {"configurations": v.configurations, "within_10pct": v.within_10pct,
                            "within_5pct": v.within_5pct},
                "noise_pct": v.noise_pct, "created": self.provenance.created, "stats": dict(self.stats)}
