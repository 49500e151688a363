"""Compile a network for a board and bench artifacts on it interleaved, every row tagged with the run it serves.

Shared by ``edgekd compress --device`` (one network, linked to its compress run) and ``edgekd tune`` (each round's
network beside the dense one and the previous round's). Compiles go through
:func:`~edgekd.pipeline.compile.compile_on_device` (tuning measured on the board, the target's database reused);
an artifact directory already complete is kept, so a resumed run does not compile twice.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.compile.api import CompileOptions
from edgekd.compile.artifact import MANIFEST_NAME
from edgekd.config.devices import Device
from edgekd.config.target import TargetProfile
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, BenchResult, bench_interleaved
from edgekd.errors import ConfigError
from edgekd.pipeline.compile import compile_on_device
from edgekd.results.store import ResultsStore

__all__ = ["Measured", "check_deploy_trials", "compile_for_board", "bench_tagged", "summarize", "paired_share"]


def check_deploy_trials(command: str, latency_mode: str, tune_trials: int, trials_per_task: int | None = None
                        ) -> None:
    """Refuse (one line, before anything runs) trials that cannot deploy what the latency model prices: fewer than
    one a task, or none at all under a tuned model (tuned kernels' milliseconds sizing untuned artifacts)."""
    if trials_per_task is not None and trials_per_task < 1:
        raise ConfigError(f"{command}: --tune-trials-per-task {trials_per_task}: at least 1")
    if latency_mode == "tuned" and tune_trials == 0 and trials_per_task is None:
        raise ConfigError(f"{command}: --latency-mode tuned predicts tuned kernels, but --tune-trials 0 deploys "
                          "untuned ones; give the compiles trials, or use --latency-mode untuned")


def compile_for_board(model: str | Path, device: Device, profile: TargetProfile, out: Path, tune_trials: int,
                      say: Callable[[str], None] | None = None, trials_per_task: int | None = None) -> Path:
    """``model`` compiled for ``profile`` into ``out`` with ``tune_trials`` MetaSchedule trials timed on ``device``,
    or ``trials_per_task`` for each task the target's database has fewer for (kept as it is when ``out`` already
    holds a complete artifact)."""
    if (out / MANIFEST_NAME).is_file():
        return out
    if say is not None:
        trials = f"{trials_per_task} tuning trials a task" if trials_per_task else f"{tune_trials} tuning trials"
        say(f"compile {model} for {profile.name} ({trials})")
    options = CompileOptions(tune_trials=tune_trials, tune_trials_per_task=trials_per_task)
    return compile_on_device(model, profile, out, options, device=device).path


def bench_tagged(device: Device, artifacts: list[Path], tags: list[dict[str, Any]], repeats: int,
                 options: BenchOptions, results: ResultsStore | None) -> list[list[BenchResult]]:
    """The artifacts benched in ``repeats`` interleaved rounds on ``device`` (with ``options.baselines`` after each);
    each row is stored as soon as it is measured, with the artifact's ``tags``. An emulated board is refused: its
    timings are not latency."""

    def keep(index: int, result: BenchResult) -> None:
        if not result.latency_valid:
            raise ConfigError(f"device {device.name} is emulated: its timings are the emulator's, not latency; "
                              "measure on a real board")
        if results is not None:
            results.append({**result.to_row(), **tags[index]})

    with connect(device) as conn:
        return bench_interleaved(conn, device, artifacts, options, repeats, on_result=keep)


@dataclass
class Measured:
    """One artifact's interleaved measurements, summarised: medians over the bench rounds."""

    device: str
    target: str
    artifact: str
    p50_ms: float
    p50s: list[float] = field(default_factory=list)
    tuned: bool = False
    tune_trials: int = 0
    runtime: str = "tvm"
    threads: int | None = None
    governor: str | None = None
    peak_rss_mb: float | None = None
    energy_per_inference_mj: float | None = None


def _median(values) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def summarize(results: list[BenchResult], runtime: str = "tvm") -> Measured:
    """The medians of ``runtime``'s results among ``results`` (a bench also runs baselines after TVM)."""
    results = [r for r in results if r.runtime == runtime]
    if not results:
        raise ValueError(f"no {runtime} measurement to summarise")
    first = results[0]
    p50s = [float(r.timing_ms["p50"]) for r in results]
    return Measured(device=first.device, target=first.target, artifact=first.artifact, p50_ms=statistics.median(p50s),
                    p50s=p50s, tuned=first.tuned, tune_trials=first.tune_trials, runtime=first.runtime,
                    threads=first.threads, governor=first.probe.governor,
                    peak_rss_mb=_median(r.to_json()["peak_rss_mb"] for r in results),
                    energy_per_inference_mj=_median(r.power.energy_per_inference_mj if r.power else None
                                                    for r in results))


def paired_share(p50s: list[float], reference_p50s: list[float]) -> float:
    """``p50s`` as a share of ``reference_p50s`` benched interleaved with them: the median over the bench rounds of
    each round's own ratio. A round measures both back to back, so a slow or fast spell of the board falls on both;
    medians taken apart can pair a slow candidate with a fast reference (a shared host here flips between states up
    to 2x apart within seconds: CI once saw a candidate's rounds at 0.15/0.30 ms give 0.72x by separate medians
    and 0.49x paired)."""
    if len(p50s) != len(reference_p50s) or not p50s:
        raise ValueError(f"pairing {len(p50s)} bench rounds with {len(reference_p50s)}")
    return statistics.median(p / r for p, r in zip(p50s, reference_p50s, strict=True))
