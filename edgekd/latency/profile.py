"""Profile a board: measure a network family's kernels and whole networks there, fit and validate a latency model.

Input: a network (its widest member), its input shape, a configured device and its target profile, and
:class:`ProfileOptions`. Output: a :class:`~edgekd.latency.model.LatencyModel`.

How (the numbers behind the choice are in ``docs/benchmarks.md``):

1. **Kernels over a width lattice.** Each op family's lattice (:func:`edgekd.latency.design.lattices`) is built as
   TVM's fused kernels for the target (:func:`edgekd.latency.kernels.build_kernels`: the same TIR a compile of the
   network produces, cross-compiled with the target's toolchain) and timed on the board by ``edgekd-timer`` in
   batches, in ``passes`` passes of their own random order (each kernel's median)
   (:class:`~edgekd.device.tuning_runner.BoardMeasurer`, MetaSchedule's statistics), under the board's run lock. A
   kernel already timed on this board (same TIR, runtime, threads and timer settings) is read from the measurement
   cache, so a second profile of a related family costs only what is new.
2. **Whole networks.** Width configurations on the grid are pruned from the network (the real surgery),
   compiled like an artifact and run by ``edgekd-runner`` (:func:`edgekd.device.bench.bench`), in interleaved
   rounds (every configuration once per round); the measured latency of a configuration is the median of its
   rounds' p50, its spread (max − min) / median is the noise. Calibration configurations (random ones, like the
   pruned networks the model is asked about) fit α of ``network = α · Σ ops``; held-out ones, never seen by the
   fit, give the share predicted within ±10% and ±5%.

Tuned mode (``mode="tuned"``, the mode deployed artifacts use): each tuned kernel is one draw of a few trials, and
neighbouring widths' draws scatter 2-4x around their trend, so no table through some widths predicts the kernels of
others (measured: 50-65% of 20 networks within ±10%, where the sum of each network's *own* kernels gave 100%). So
tuned mode measures exactly the kernels networks will have: every prunable group gets a coarser multiple of the grid
that leaves it ``levels`` widths (:func:`~edgekd.latency.design.coarse_multiples`), the lattice is every width each
op takes on that grid (:func:`~edgekd.latency.design.exact_lattices`), and each op is built with the elementwise ops
its network fuses after it (:mod:`edgekd.latency.fusion`: a projection conv has no ReLU6, a residual block's adds
its input), so a lattice kernel *is* the network's kernel — the same workload, the same database record. Before a
lattice point is measured, its tasks are tuned into the board's database with ``tune_trials`` trials each
(:class:`_Tuning`, MetaSchedule timed on the board, chunks of 64 tasks, resumable through the ledger), and its
kernels are built with the best schedules; every whole network is compiled as ``edgekd compile --device`` would (its
conv / linear kernels that are not lattice tasks are counted in ``stats["network_kernels_missed"]``, and would be
tuned there). The model records the coarse grid (``multiples``) and a digest of its lattice tasks' ledger entries: a
later compile that tunes one of them again makes the model stale; tuning other networks into the database does not.
Untuned kernels are deterministic staircases that interpolation between the fine grid's levels follows (100% of 40
within ±10%), so untuned mode keeps the channel grid and the lattice of :func:`~edgekd.latency.design.lattices`.

An emulated board is refused (its timings are the emulator's, not latency).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.atomic import atomic_write_json
from edgekd.compile.api import CompileOptions, compile_model
from edgekd.compile.artifact import utc_now
from edgekd.compile.tuning import board_key, database_dir, open_database, read_ledger, task_key, tune_tasks
from edgekd.config.devices import Device
from edgekd.config.target import TargetProfile
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench_interleaved
from edgekd.device.lock import board_lock
from edgekd.device.probe import check_fits, probe
from edgekd.device.tuning_runner import BoardMeasurer, Candidate, EvaluatorSettings
from edgekd.errors import CompileError, ConfigError, DeviceError
from edgekd.latency.design import (
    FamilyPlan,
    coarse_multiples,
    dense_widths,
    exact_lattices,
    lattices,
    masks_for,
    op_widths,
    random_widths,
)
from edgekd.latency.fusion import epilogues
from edgekd.latency.kernels import Kernel, OpShape, build_kernels, build_tasks, network_tasks, op_tasks
from edgekd.latency.model import (
    Calibration,
    LatencyModel,
    NetworkKey,
    Provenance,
    Table,
    Validation,
    check_mode,
)
from edgekd.latency.store import ledger_digest, tuning_digest
from edgekd.learn.progress import task_progress
from edgekd.paths import cache_dir
from edgekd.structure.groups import ChannelGraph, trace_groups
from edgekd.structure.prune import prune_model
from edgekd.structure.widths import WidthGrid

__all__ = ["ProfileOptions", "profile_network", "kernel_sums", "runtime_versions", "predict_raw", "fit_calibration"]

Progress = Callable[[str, int, int], None]

# Untuned: lattice levels per axis, measured on CIFAR MobileNetV2 (docs/benchmarks.md, "Latency model"): 8 levels,
# no refinement, 100% of 40 held out within ±10% in 8 min (its kernels are staircases that interpolation follows).
# Tuned: widths per group on the coarse grid; 5 gives CIFAR MobileNetV2 a lattice of 524 points (4: 397, 6: 662),
# each one task to tune (~4 s at 4 trials on this host).
LEVELS = {"untuned": 8, "tuned": 5}


@dataclass(frozen=True)
class ProfileOptions:
    """Knobs of one profile.

    Attributes:
        mode: ``untuned`` (kernels as an untuned compile builds them) or ``tuned`` (the target database's best
            schedules, the mode deployed artifacts use).
        grid: channel multiple of the lattice and of every configuration (the target's or the recipe's).
        levels: untuned: grid widths per varying axis of a family's lattice; tuned: widths per group of the coarse
            grid (None: the mode's, :data:`LEVELS`).
        refine, refine_tolerance, refine_levels: passes adding a lattice level where the table mispredicts an
            interval's midpoint by more than the tolerance (at most ``refine_levels`` per family and pass).
        calibration: whole networks fitting α (random configurations).
        heldout: whole networks the fit never sees, for the ±10% / ±5% shares.
        rounds: interleaved repeats of every whole network.
        seed: of the random configurations.
        runs, min_seconds: ``edgekd-runner``'s timed runs per whole-network measurement.
        jobs: whole networks compiled at once (worker processes; tuned mode compiles one at a time).
        timer: the kernel timer's statistics.
        passes: every kernel is timed in this many passes, each in its own random order, and its median kept: this
            host flips between states up to 2x apart for minutes, and one pass in lattice order hands a slow spell
            to whole families (measured: networks' own kernels summed over 1 pass predicted 58% of 20 within ±10%,
            over 3 passes 100%; the passes' sums spread 11%).
        tune_trials: tuned mode: MetaSchedule trials per task, for every lattice kernel and every new task of the
            whole networks (tasks the target's ledger already gives as many are reused, so an interrupted profile
            resumes its tuning).
    """

    mode: str = "untuned"
    grid: int = 8
    levels: int | None = None
    refine: int = 0
    refine_tolerance: float = 0.05
    refine_levels: int = 2
    calibration: int = 6
    heldout: int = 40
    rounds: int = 3
    seed: int = 0
    runs: int = 20
    min_seconds: float = 0.3
    jobs: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    timer: EvaluatorSettings = field(default_factory=lambda: EvaluatorSettings(number=1, repeat=5,
                                                                              min_repeat_ms=20.0))
    tune_trials: int = 8
    passes: int = 3

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.levels is None:
            object.__setattr__(self, "levels", LEVELS[self.mode])


def predict_raw(tables: dict[str, Table], ops: dict[str, str], widths: dict[str, tuple[int, int]]) -> float:
    """Σ over ops of the uncalibrated table value at their widths (ms)."""
    return sum(tables[ops[name]].value(a_in, a_out) for name, (a_in, a_out) in widths.items())


def fit_calibration(raw: list[float], measured: list[float], widths: list[dict[int, int]] | None = None
                    ) -> Calibration:
    """``measured = α · raw``, α the median of the calibration networks' measured ÷ predicted.

    Why not least squares with an offset: random configurations span well under 2× in Σ ops, so an intercept is
    not identifiable from a handful of networks, and one network with an unlucky kernel (a few tuning trials that
    found a poor schedule) tilts the line for every prediction. Re-scored on saved profiles (``docs/benchmarks.md``,
    "Latency model"): tuned MobileNetV2, 6 calibration networks, within ±10% 0.80 → 0.88; untuned unchanged."""
    if not raw:
        return Calibration()
    alpha = statistics.median(y / x for x, y in zip(raw, measured, strict=True))
    rows = [{"raw_ms": round(x, 4), "measured_ms": round(y, 4)} for x, y in zip(raw, measured, strict=True)]
    for row, w in zip(rows, widths or [], strict=False):
        row["widths"] = {str(k): v for k, v in w.items()}
    return Calibration(alpha=alpha, beta_ms=0.0, samples=len(raw), rows=rows)


class _PointCache:
    """Measured lattice points by content: ``<cache>/latency/points/<board>/<digest>.json``, the digest over the op
    shape, the target, the kernels' schedules (``untuned``, or a digest of the ledger entries of the point's tasks:
    their records change only when their trials do), the threads and the timer settings. A second profile of the
    same family, or of another family sharing op shapes, re-measures nothing."""

    def __init__(self, board: str, context: dict) -> None:
        self.root = cache_dir() / "latency" / "points" / board
        self.context = context

    def _path(self, shape: OpShape, schedules: str) -> Path:
        text = json.dumps({"shape": asdict(shape), **self.context, "schedules": schedules}, sort_keys=True,
                          default=str)
        return self.root / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"

    def get(self, shape: OpShape, schedules: str) -> float | None:
        try:
            return float(json.loads(self._path(shape, schedules).read_text())["ms"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, shape: OpShape, schedules: str, ms: float, kernels: list[dict]) -> None:
        atomic_write_json(self._path(shape, schedules), {"ms": ms, "shape": asdict(shape), "kernels": kernels,
                                                         **self.context, "schedules": schedules,
                                                         "created": utc_now()})


def _median_ms(costs: list[float]) -> float:
    return statistics.median(costs) * 1e3


def _midpoint(low: int, high: int, grid: int) -> int | None:
    middle = int(round((low + high) / 2 / grid)) * grid
    return middle if low < middle < high else None


def _midpoints(plan: FamilyPlan, grid: int) -> list[tuple[str, int, int]]:
    """Probe points: the midpoint of every interval of each varying axis, at both ends of the other axis."""
    points = []
    if not plan.depthwise and len(plan.a_in) > 1:
        for low, high in zip(plan.a_in, plan.a_in[1:], strict=False):
            if (m := _midpoint(low, high, grid)) is not None:
                points += [(plan.family, m, b) for b in {plan.a_out[0], plan.a_out[-1]}]
    if len(plan.a_out) > 1:
        for low, high in zip(plan.a_out, plan.a_out[1:], strict=False):
            if (m := _midpoint(low, high, grid)) is not None:
                ends = [0] if plan.depthwise else sorted({plan.a_in[0], plan.a_in[-1]})
                points += [(plan.family, a, m) for a in ends]
    return points


def _add_level(plan: FamilyPlan, a_in: int, a_out: int) -> int:
    """Make the probe's width a level of the axis it probed (the one not at a lattice level)."""
    if a_out not in plan.a_out:
        plan.a_out = sorted({*plan.a_out, a_out})
        return 1
    if not plan.depthwise and a_in not in plan.a_in:
        plan.a_in = sorted({*plan.a_in, a_in})
        return 1
    return 0


class _PointMeasurer:
    """Lattice points → milliseconds (Σ weight × kernel time), from the cache or built and timed on the board."""

    def __init__(self, profiler: _Profiler, conn, cache: _PointCache, target, compiler: str | None,
                 tuning: _Tuning | None) -> None:
        self.profiler, self.conn, self.cache = profiler, conn, cache
        self.target, self.compiler, self.tuning = target, compiler, tuning
        self.values: dict[tuple[str, int, int], float] = {}
        self.stats = {"points": 0, "points_cached": 0, "kernels_timed": 0, "kernels_untuned": 0, "build_s": 0.0,
                      "time_kernels_s": 0.0}

    def table(self, plan: FamilyPlan) -> list[list[float]]:
        return [[self.values[(plan.family, a, b)] for b in plan.a_out] for a in plan.a_in]

    def __call__(self, shapes: dict[tuple[str, int, int], OpShape]) -> dict[tuple[str, int, int], float]:
        new = {point: shape for point, shape in shapes.items() if point not in self.values}
        schedules = self.tuning.prepare(new) if self.tuning else dict.fromkeys(new, "untuned")
        todo = {}
        for point, shape in new.items():
            self.stats["points"] += 1
            cached = self.cache.get(shape, schedules[point])
            if cached is not None:
                self.values[point] = cached
                self.stats["points_cached"] += 1
            else:
                todo[point] = shape
        if todo:
            self._measure(todo, schedules)
        return {point: self.values[point] for point in shapes}

    def _measure(self, todo: dict[tuple[str, int, int], OpShape], schedules: dict[tuple[str, int, int], str]) -> None:
        say = self.profiler.say
        started = time.perf_counter()
        database = self.tuning.database() if self.tuning else None
        with tempfile.TemporaryDirectory(prefix="edgekd-kernels-") as scratch:
            built: dict[tuple[str, int, int], list[Kernel]] = {}
            for index, (point, shape) in enumerate(todo.items()):
                built[point] = build_kernels(shape, self.target, self.compiler, Path(scratch), database)
                say("build kernels", index + 1, len(todo))
            self.stats["build_s"] = round(self.stats["build_s"] + time.perf_counter() - started, 1)
            unique = {k.key: k for kernels in built.values() for k in kernels}
            self.stats["kernels_timed"] += len(unique)
            self.stats["kernels_untuned"] += sum(1 for k in unique.values() if not k.tuned)
            started = time.perf_counter()
            timed = self.profiler.time_kernels(self.conn, list(unique.values()), self.profiler.options.passes)
            self.stats["time_kernels_s"] = round(self.stats["time_kernels_s"] + time.perf_counter() - started, 1)
        for point, kernels in built.items():
            self.values[point] = sum(k.weight * timed[k.key] for k in kernels)
            record = [{"name": k.name, "weight": k.weight, "ms": timed[k.key], "tuned": k.tuned} for k in kernels]
            self.cache.put(todo[point], schedules[point], self.values[point], record)


class _PhaseBars:
    """The default progress: one bar with an ETA on stderr per phase (build kernels, time kernels, ...)."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.bar = None
        self.update = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if what != self.phase:
            self.close()
            self.phase, self.bar = what, task_progress(what, total=total)
            self.update = self.bar.__enter__()
            done_before = 0
        else:
            done_before = self.done
        self.done = done
        self.update(advance=done - done_before)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class _Profiler:
    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], device: Device, profile: TargetProfile,
                 network: NetworkKey, options: ProfileOptions, on_progress: Progress | None) -> None:
        self.model, self.input_shape, self.device, self.profile = model.eval(), tuple(input_shape), device, profile
        self.network, self.options = network, options
        self.bars = _PhaseBars() if on_progress is None else None
        self.say = on_progress or self.bars
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up
    @functools.cached_property
    def target(self) -> tuple[Any, str | None]:
        """The TVM target of the profile and its toolchain's C compiler (built once: the kernels' and the tuning's)."""
        from edgekd.compile import build
        from edgekd.compile.toolchains import get_toolchain

        host_cpu = build.system_cpu() if self.profile.tvm_target.mcpu == "host" else None
        return build.make_target(self.profile.tvm_target.as_tvm_dict(host_cpu=host_cpu)), \
            get_toolchain(self.profile).compiler()

    # ------------------------------------------------------------------ kernels
    def _tables(self, conn, plans: list[FamilyPlan], board: str, threads: int, tuning: _Tuning | None
                ) -> dict[str, Table]:
        """Measure every family's lattice, then refine it where it is too coarse: the on-grid midpoint of each
        interval of a varying axis is measured at both ends of the other axis, and when the table mispredicts it
        by more than ``refine_tolerance`` the midpoint becomes a lattice level (nn-Meter adds samples where its
        error exceeds 10%; untuned TVM kernels have steps of 10x between neighbouring widths)."""
        measure = self._measurer(conn, board, threads, tuning)
        by_family = {plan.family: plan for plan in plans}
        rounds = self.options.refine if tuning is None else 0  # an exact lattice has no interval to refine
        for refinement in range(rounds + 1):
            measure({(p.family, a, b): self._shape(p, a, b) for p in plans for a, b in p.points()})
            if refinement == rounds:
                break
            probes = {point: self._shape(by_family[point[0]], point[1], point[2])
                      for plan in plans for point in _midpoints(plan, self.options.grid)}
            values = measure(probes)
            tables = {p.family: Table(family=p.family, a_in=p.a_in, a_out=p.a_out, ms=measure.table(p)) for p in plans}
            added = 0
            # the worst-predicted probes first, at most refine_levels new levels per family and pass: a new level
            # is a whole row of the lattice, so unbounded refinement of an erratic family multiplies its cost
            misses = sorted(((abs(tables[f].value(a, b) - m) / m, f, a, b) for (f, a, b), m in
                             ((k, values[k]) for k in probes) if m > 0), reverse=True)
            per_family: dict[str, int] = {}
            for error, family, a, b in misses:
                if error <= self.options.refine_tolerance or per_family.get(family, 0) >= self.options.refine_levels:
                    continue
                new = _add_level(by_family[family], a, b)
                per_family[family] = per_family.get(family, 0) + new
                added += new
            self.stats[f"refine{refinement + 1}_levels_added"] = added
            if not added:
                break
        self.stats.update(measure.stats)
        return {plan.family: Table(family=plan.family, a_in=plan.a_in, a_out=plan.a_out, ms=measure.table(plan))
                for plan in plans}

    def _measurer(self, conn, board: str, threads: int, tuning: _Tuning | None) -> _PointMeasurer:
        target, compiler = self.target
        timer = self.options.timer
        cache = _PointCache(board, {"target": str(target), "threads": threads,
                                    "timer": [timer.number, timer.repeat, timer.min_repeat_ms, self.options.passes],
                                    "runtime": runtime_versions()})
        return _PointMeasurer(self, conn, cache, target, compiler, tuning)

    def kernel_sums(self, configs: list[dict[int, int]]) -> list[float]:
        """Per configuration, Σ of the pruned network's own fused kernels timed on the board (:func:`kernel_sums`)."""
        target, compiler = self.target
        graph = trace_groups(self.model, self.input_shape)
        tuned = self.options.mode == "tuned"
        per_network: list[list[Kernel]] = []
        with connect(self.device) as conn, tempfile.TemporaryDirectory(prefix="edgekd-kernels-") as scratch:
            _facts, board, _threads = self._board(conn)
            database = _Tuning(self, conn, board).database() if tuned else None
            started = time.perf_counter()
            for index, widths in enumerate(configs):
                pruned = prune_model(self.model, graph, masks_for(graph, widths)).model.eval()
                tasks = network_tasks(pruned, torch.zeros(self.input_shape), target, tuned)
                per_network.append(build_tasks(tasks, target, compiler, Path(scratch), database, f"network {index}"))
                self.say("build kernels", index + 1, len(configs))
            self.stats["build_s"] = round(time.perf_counter() - started, 1)
            unique = list({k.key: k for kernels in per_network for k in kernels}.values())
            started = time.perf_counter()
            timed = self.time_kernels(conn, unique, self.options.passes)
            self.stats["time_kernels_s"] = round(time.perf_counter() - started, 1)
        self.stats.update(networks=len(configs), kernels=sum(len(k) for k in per_network),
                          kernel_calls=sum(k.weight for kernels in per_network for k in kernels),
                          kernels_timed=len(unique), kernels_untuned=sum(not k.tuned for k in unique))
        return [sum(k.weight * timed[k.key] for k in kernels) for kernels in per_network]

    def _board(self, conn) -> tuple[Any, str, int]:
        """The board's facts, its key (of its measurement caches and databases) and the threads timed with; an
        emulated board or one that does not fit the target is refused."""
        facts = probe(conn, cache_dir=self.device.cache_dir, emulated=self.device.emulated)
        if facts.emulated:
            raise ConfigError(f"device {self.device.name} runs under emulation: its timings are not latency; "
                              "profile a real board")
        check_fits(facts, device=self.device.name, target=self.profile.name, arch=self.profile.arch,
                   glibc_floor=self.profile.glibc_floor)
        board = board_key(facts.arch, facts.cpu_model, facts.emulated, facts.cpu_count)
        return facts, board, self.profile.threads.default

    @staticmethod
    def _shape(plan: FamilyPlan, a_in: int, a_out: int) -> OpShape:
        return plan.shape.at(a_in if not plan.depthwise else a_out, a_out)

    def time_kernels(self, conn, kernels: list[Kernel], passes: int = 1) -> dict[str, float]:
        """Kernel key → ms: the median of ``passes`` passes over ``kernels``, each in its own random order
        (:class:`ProfileOptions`); ``stats["pass_spread_pct"]``: the kernels' median (max − min) ÷ median."""
        runs = []
        for index in range(passes):
            order = list(kernels)
            random.Random(index).shuffle(order)
            runs.append(self._time_pass(conn, order))
        timed = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        if passes > 1:
            spread = statistics.median((max(r[k] for r in runs) - min(r[k] for r in runs)) / timed[k] for k in timed)
            self.stats["pass_spread_pct"] = round(100 * spread, 2)
        return timed

    def _time_pass(self, conn, kernels: list[Kernel]) -> dict[str, float]:
        measurer = BoardMeasurer(conn, self.device, self.profile, self.options.timer)
        timed: dict[str, float] = {}
        batch = 64
        with board_lock(conn, self.device, what=f"latency profile of {self.network.name}"):
            try:
                for start in range(0, len(kernels), batch):
                    chunk = kernels[start:start + batch]
                    results = measurer.measure([Candidate(k.library, k.args) for k in chunk])
                    if measurer.lost:
                        raise DeviceError(f"latency profile on {self.device.name}: the board was lost while timing "
                                          f"kernels ({measurer.lost}); run the profile again to go on")
                    for kernel, result in zip(chunk, results, strict=True):
                        if not result.costs:
                            raise DeviceError(f"latency profile on {self.device.name}: kernel {kernel.name} could "
                                              f"not be timed: {result.error}")
                        timed[kernel.key] = _median_ms(result.costs)
                    self.say("time kernels", min(start + batch, len(kernels)), len(kernels))
            finally:
                measurer.close()
        return timed

    # ------------------------------------------------------------------ whole networks
    def _networks(self, conn, graph: ChannelGraph, configs: list[dict[int, int]], tuning: _Tuning | None
                  ) -> list[list[float]]:
        """Per configuration, the p50 (ms) of each interleaved round (tuned mode: each network compiled as a
        deployed one is, its new tasks tuned with ``tune_trials`` each)."""
        options = BenchOptions(runs=self.options.runs, min_seconds=self.options.min_seconds, warmup_seconds=0.2,
                               repeat=1, power=False)
        p50s: list[list[float]] = [[] for _ in configs]
        with tempfile.TemporaryDirectory(prefix="edgekd-profile-nets-") as scratch:
            started = time.perf_counter()
            artifacts = (tuning.compile_networks(graph, configs, Path(scratch)) if tuning
                         else self._compile_all(graph, configs, Path(scratch)))
            self.stats["compile_networks_s"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            total, done = len(configs) * self.options.rounds, 0

            def keep(index: int, result) -> None:
                nonlocal done
                if result.runtime != "tvm":
                    return
                p50 = (result.timing_ms or {}).get("p50")
                if not result.latency_valid or p50 is None:
                    raise DeviceError(f"latency profile on {self.device.name}: no valid latency for network "
                                      f"{index} (emulated board?)")
                p50s[index].append(float(p50))
                done += 1
                self.say("run networks", done, total)

            bench_interleaved(conn, self.device, artifacts, options, self.options.rounds, on_result=keep)
            self.stats["run_networks_s"] = round(time.perf_counter() - started, 1)
        return p50s

    def _compile_all(self, graph: ChannelGraph, configs: list[dict[int, int]], scratch: Path) -> list[Path]:
        """Prune and compile every configuration, ``options.jobs`` compiles at a time (TVM's codegen and
        torch.export hold one core each; nothing is timed meanwhile)."""
        options = CompileOptions(input_shape=self.input_shape, model_name=self.network.name, onnx=False)
        jobs = []
        for index, widths in enumerate(configs):
            pruned = prune_model(self.model, graph, masks_for(graph, widths)).model
            model_file = scratch / f"n{index}.module.pt"
            torch.save(pruned, model_file)
            jobs.append((str(model_file), self.profile, str(scratch / f"n{index}"), options))
        if self.options.jobs <= 1:
            done = []
            for index, job in enumerate(jobs):
                done.append(_compile_job(*job))
                self.say("compile networks", index + 1, len(jobs))
            return [Path(p) for p in done]
        context = multiprocessing.get_context("spawn")  # a forked TVM/torch process is not safe
        paths: list[Path | None] = [None] * len(jobs)
        with ProcessPoolExecutor(max_workers=self.options.jobs, mp_context=context) as pool:
            futures = {pool.submit(_compile_job, *job): index for index, job in enumerate(jobs)}
            try:
                for count, future in enumerate(as_completed(futures)):
                    paths[futures[future]] = Path(future.result())
                    self.say("compile networks", count + 1, len(jobs))
            except BrokenProcessPool:
                raise CompileError("latency profile: a network compile worker died (out of memory?); run again "
                                   "with fewer jobs") from None
        return [p for p in paths if p is not None]

    # ------------------------------------------------------------------ all
    def run(self) -> LatencyModel:
        if self.device.emulated:
            raise ConfigError(f"device {self.device.name} is emulated: its timings are the emulator's, not latency; "
                              "profile a real board (or the host: --device local)")
        opts = self.options
        graph = trace_groups(self.model, self.input_shape)
        grid = WidthGrid.of(opts.grid)
        if opts.mode == "tuned":  # every kernel of every network on the coarse grid is a lattice point (module doc)
            grid = coarse_multiples(graph, opts.grid, opts.levels)
            plans = exact_lattices(graph, grid, epilogues(self.model, self.input_shape))
        else:
            plans = lattices(graph, opts.grid, opts.levels)
        ops = {name: plan.family for plan in plans for name in plan.ops}
        rng = random.Random(opts.seed)
        # Held out first: the same seed and count give the same held-out set whatever the calibration count
        heldout = [random_widths(graph, grid, rng) for _ in range(opts.heldout)]
        calibration = [random_widths(graph, grid, rng) for _ in range(opts.calibration)]
        started = time.perf_counter()
        with connect(self.device) as conn:
            facts, board, threads = self._board(conn)
            tuning = _Tuning(self, conn, board) if opts.mode == "tuned" else None
            tables = self._tables(conn, plans, board, threads, tuning)
            p50s = self._networks(conn, graph, calibration + heldout, tuning)
            if tuning is not None:
                self.stats.update(tuning.stats)
        raw = [predict_raw(tables, ops, op_widths(graph, masks_for(graph, w))) for w in calibration + heldout]
        dense_raw = predict_raw(tables, ops, op_widths(graph, masks_for(graph, dense_widths(graph))))
        measured = [statistics.median(p) for p in p50s]
        cal = fit_calibration(raw[:len(calibration)], measured[:len(calibration)], calibration)
        validation = _validate(raw[len(calibration):], measured[len(calibration):], p50s[len(calibration):],
                               heldout, cal, opts.rounds)
        self.stats["profile_s"] = round(time.perf_counter() - started, 1)
        self.stats["networks"] = len(calibration) + len(heldout)
        provenance = Provenance(
            device=self.device.name, target=self.profile.name, board=board, arch=facts.arch,
            cpu_model=facts.cpu_model, governor=facts.governor, threads=threads,
            affinity=list(self.profile.threads.affinity or []), runtime=runtime_versions(), mode=opts.mode,
            tuning_digest=tuning_digest(tuning.directory, sorted(tuning.lattice)) if tuning else None,
            records=str(tuning.directory) if tuning else None, tuned_tasks=sorted(tuning.lattice) if tuning else [],
            timer={"number": opts.timer.number, "repeat": opts.timer.repeat, "min_repeat_ms": opts.timer.min_repeat_ms,
                   "passes": opts.passes},
            created=utc_now(), edgekd=importlib.metadata.version("edgekd"))
        return LatencyModel(network=self.network, grid=opts.grid, multiples=grid.named_steps(graph),
                            ops=ops, tables=tables, calibration=cal,
                            provenance=provenance, validation=validation, stats=self.stats,
                            dense_ms=cal.alpha * dense_raw + cal.beta_ms)


class _Tuning:
    """Tuned mode: tasks tuned into the target's database (``tune_trials`` each, timed on the profiled board) before
    they are measured — the lattice's kernels, then each whole network's new tasks — so every number is of the
    schedules a deployed compile applies. The database is the board's, as ``edgekd compile --device`` uses it."""

    CHUNK = 64  # tasks per MetaSchedule session: the ledger is written after each, so an interruption loses little

    def __init__(self, profiler: _Profiler, conn, board: str) -> None:
        self.profiler, self.conn = profiler, conn
        self.device, self.profile, self.trials = profiler.device, profiler.profile, profiler.options.tune_trials
        self.board = None if self.device.measures_here(self.profile) else board  # as edgekd compile --device
        self.directory = database_dir(self.profile.name, self.board)
        self.target, _compiler = profiler.target
        # network_tasks_tuned: tasks the whole networks' compiles tuned (their pooling, and any kernel the lattice
        # missed); network_kernels_missed: their conv / linear kernels that are not lattice tasks (0: exact lattice)
        self.stats = {"tasks_tuned": 0, "network_tasks_tuned": 0, "network_kernels_missed": 0, "tune_s": 0.0,
                      "tune_lattice_s": 0.0, "tune_networks_s": 0.0}
        self.lattice: set[str] = set()  # ledger keys of the lattice's tasks: what the model's digest covers

    def database(self):
        return open_database(self.directory)

    @contextmanager
    def _runner(self):
        """The measure factory for MetaSchedule (None: this host), the board's run lock held."""
        if self.board is None:
            yield None
            return
        measurer = BoardMeasurer(self.conn, self.device, self.profile, relock=True, lock_timeout=60.0)
        with board_lock(self.conn, self.device, what=f"tuning for a latency profile of {self.profile.name}"):
            try:
                yield measurer.runner
            finally:
                measurer.close()
        if measurer.lost:
            raise DeviceError(f"latency profile on {self.device.name}: the board was lost while tuning "
                              f"({measurer.lost}); run the profile again to go on (tuned tasks are kept)")

    def tune(self, tasks: list, what: str) -> float:
        started = time.perf_counter()
        ledger = read_ledger(self.directory)
        unique = {task_key(t, self.target): t for t in tasks}
        todo = [t for key, t in unique.items() if ledger.get(key, {}).get("trials", 0) < self.trials]
        for start in range(0, len(todo), self.CHUNK):
            with self._runner() as measure:
                result = tune_tasks(todo[start:start + self.CHUNK], self.target, self.profile, self.trials,
                                    measure=measure, board=self.board)
            self.stats["tasks_tuned"] += result.tasks_tuned
            self.profiler.say(what, min(start + self.CHUNK, len(todo)), len(todo))
        seconds = time.perf_counter() - started
        self.stats["tune_s"] = round(self.stats["tune_s"] + seconds, 1)
        return seconds

    def prepare(self, shapes: dict[tuple[str, int, int], OpShape]) -> dict[tuple[str, int, int], str]:
        """Tune the tasks of ``shapes``' ops; per point, a digest of its tasks' ledger entries (the cache tag of
        its schedules)."""
        keys: dict[tuple[str, int, int], list[str]] = {}
        tasks = []
        for point, shape in shapes.items():
            extracted = op_tasks(shape, self.target, tuned=True)
            keys[point] = [task_key(t, self.target) for t in extracted]
            self.lattice.update(keys[point])
            tasks += extracted
        seconds = self.tune(tasks, "tune kernels")
        self.stats["tune_lattice_s"] = round(self.stats["tune_lattice_s"] + seconds, 1)
        ledger = read_ledger(self.directory)
        return {point: ledger_digest(ledger, ks) for point, ks in keys.items()}

    def compile_networks(self, graph: ChannelGraph, configs: list[dict[int, int]], scratch: Path) -> list[Path]:
        """Each configuration pruned and compiled as a deployed one is, its new tasks tuned with ``tune_trials``
        each on the board first — one at a time (tuning times candidates on the board)."""
        profiler, artifacts = self.profiler, []
        options = CompileOptions(input_shape=profiler.input_shape, model_name=profiler.network.name, onnx=False,
                                 tune_trials_per_task=self.trials)
        for index, widths in enumerate(configs):
            pruned = prune_model(profiler.model, graph, masks_for(graph, widths)).model.eval()
            kernels = [t for t in network_tasks(pruned, torch.zeros(profiler.input_shape), self.target, True)
                       if t.task_name.startswith(("fused_conv2d", "fused_matmul"))]
            self.stats["network_kernels_missed"] += sum(task_key(t, self.target) not in self.lattice for t in kernels)
            with self._runner() as measure:
                artifact = compile_model(pruned, self.profile, scratch / f"n{index}", options, measure=measure,
                                         board=self.board)
            self.stats["tasks_tuned"] += artifact.manifest.tuning.tasks_tuned
            self.stats["network_tasks_tuned"] += artifact.manifest.tuning.tasks_tuned
            seconds = artifact.manifest.tuning.seconds or 0.0
            self.stats["tune_s"] = round(self.stats["tune_s"] + seconds, 1)
            self.stats["tune_networks_s"] = round(self.stats["tune_networks_s"] + seconds, 1)
            artifacts.append(artifact.path)
            profiler.say("compile networks", index + 1, len(configs))
        return artifacts


def _compile_job(model_file: str, profile: TargetProfile, out: str, options: CompileOptions) -> str:
    """One network compile (run in a worker process): the pruned module saved by the profiler → an artifact."""
    module = torch.load(model_file, weights_only=False)  # written a moment ago by this profile, not user input
    return str(compile_model(module, profile, Path(out), options).path)


def _validate(raw: list[float], measured: list[float], rounds: list[list[float]], widths: list[dict[int, int]],
              cal: Calibration, round_count: int) -> Validation:
    rows, within10, within5, spreads = [], 0, 0, []
    for x, y, p50s, w in zip(raw, measured, rounds, widths, strict=True):
        predicted = cal.alpha * x + cal.beta_ms
        error = (predicted - y) / y
        spread = (max(p50s) - min(p50s)) / y if y > 0 else 0.0
        spreads.append(spread)
        within10 += abs(error) <= 0.10
        within5 += abs(error) <= 0.05
        rows.append({"widths": {str(k): v for k, v in w.items()}, "predicted_ms": round(predicted, 4),
                     "measured_ms": round(y, 4), "error_pct": round(100 * error, 2),
                     "spread_pct": round(100 * spread, 2), "rounds_ms": [round(p, 4) for p in p50s]})
    n = len(raw)
    return Validation(configurations=n, within_10pct=within10 / n if n else 0.0, within_5pct=within5 / n if n else 0.0,
                      noise_pct=round(100 * statistics.median(spreads), 2) if spreads else 0.0, rounds=round_count,
                      rows=rows)


def runtime_versions() -> dict[str, str]:
    from edgekd.compile.build import PIPELINE_VERSION
    from edgekd.compile.runtime_libs import host_versions

    tvm, ffi = host_versions()
    return {"tvm": tvm, "tvm_ffi": ffi, "pipeline": PIPELINE_VERSION}


def profile_network(model: nn.Module, input_shape: tuple[int, ...], device: Device, profile: TargetProfile,
                    network: NetworkKey, options: ProfileOptions | None = None,
                    on_progress: Progress | None = None) -> LatencyModel:
    """Measure ``model``'s family on ``device`` and fit its latency model (see the module docstring).

    Raises:
        ConfigError: an emulated device. DeviceError: the board is unreachable, does not fit the target, or a
        measurement failed (or was lost while tuning). CompileError / ToolchainError.
    """
    profiler = _Profiler(model, input_shape, device, profile, network, options or ProfileOptions(), on_progress)
    try:
        return profiler.run()
    finally:
        if profiler.bars is not None:
            profiler.bars.close()


def kernel_sums(model: nn.Module, input_shape: tuple[int, ...], device: Device, profile: TargetProfile,
                network: NetworkKey, configs: list[dict[int, int]], options: ProfileOptions | None = None,
                on_progress: Progress | None = None) -> tuple[list[float], dict[str, float]]:
    """Per width configuration, Σ (weight × time) of the pruned network's *own* fused kernels — the tasks its
    compile extracts, residual adds and activations as the network has them; tuned mode: the board's database's
    best schedule for each, as the compile applied it (a task without a record is built untuned and counted) —
    timed on ``device`` by ``edgekd-timer`` as lattice kernels are (``options.passes`` passes); and the
    measurement's stats.

    What a latency model would predict if its tables were exact for every kernel: against the networks' measured
    p50 it splits a model's error into the tables' (op-level surfaces through scattered tuned kernels) and the
    rest (caches, the runtime between kernels). A diagnostic (``scripts/rescore_latency_profile.py --kernels``):
    a network's tuned kernels are not known before it is compiled."""
    profiler = _Profiler(model, input_shape, device, profile, network, options or ProfileOptions(), on_progress)
    try:
        return profiler.kernel_sums(configs), profiler.stats
    finally:
        if profiler.bars is not None:
            profiler.bars.close()
