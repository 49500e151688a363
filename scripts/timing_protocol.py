"""The host benchmarks' timing protocol for runtimes driven from Python (TFLite's benchmark_model style): warm-up
>= 1 run and >= 0.5 s, then >= 50 runs and >= 1 s, each run timed alone; TFLite-style statistics in ms.

Dependency-free but numpy on purpose: ``bench_runtime.py`` (our venv) and ``litert_time.py`` (the LiteRT
environment, which must not import edgekd or torch) both import it from ``scripts/``, so PyTorch, ONNX Runtime
and LiteRT are timed by the same loop.
"""

from __future__ import annotations

import time

import numpy as np

WARMUP_SECONDS, MIN_RUNS, MIN_SECONDS = 0.5, 50, 1.0


def stats(samples_ms: list[float]) -> dict[str, float]:
    """mean/std/min/max and percentiles (the ceil(q*n)-th smallest sample) of run times in ms."""
    values = np.sort(np.asarray(samples_ms))

    def rank(q: float) -> float:
        return float(values[max(1, min(len(values), int(np.ceil(q * len(values))))) - 1])

    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values[0]), "p50": rank(0.5), "p90": rank(0.9), "p95": rank(0.95), "p99": rank(0.99),
            "max": float(values[-1]), "runs": len(values)}


def time_callable(run) -> dict[str, float]:
    """Time ``run()`` by the protocol above."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < WARMUP_SECONDS:
        run()
    samples: list[float] = []
    timed_start = time.perf_counter()
    while len(samples) < MIN_RUNS or time.perf_counter() - timed_start < MIN_SECONDS:
        begin = time.perf_counter()
        run()
        samples.append((time.perf_counter() - begin) * 1e3)
    return stats(samples)


def time_artifact(artifact, threads: int) -> dict[str, float]:
    """A TVM artifact timed by its own ``edgekd-runner`` through ``edgekd bench --device local`` with the same
    protocol (not stored in the results). Imports edgekd lazily: the LiteRT environment imports this module too."""
    from edgekd import api

    options = api.BenchOptions(threads=threads, runs=MIN_RUNS, min_seconds=MIN_SECONDS,
                               warmup_seconds=WARMUP_SECONDS, idle_seconds=0.0, power=False)
    [result] = api.bench(artifact, device="local", options=options, store=False)
    return result.timing_ms | {"runs": result.runner["runs"], "max_abs_err": result.max_abs_diff}
