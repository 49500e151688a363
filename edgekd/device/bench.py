"""Benchmark a compiled artifact on a device: probe -> push -> run the runner -> fetch -> compare.

Input: a connection (handed in, never opened here), its :class:`~edgekd.config.devices.Device`, an
artifact directory (``manifest.json`` contract in ``docs/artifacts.md``) and :class:`BenchOptions`.
Output: one :class:`BenchResult` per repeat, with full provenance; ``to_row()`` is the flat record
for :mod:`edgekd.results.store`, ``to_json()`` the ``--json`` document.

An emulated device's timings are kept as ``emulated_time_ms`` and are never labelled latency
(``latency_ms`` is ``None``, ``latency_valid`` is false).
"""

from __future__ import annotations

import hashlib
import json
import platform
import posixpath
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgekd.config.devices import Device
from edgekd.device import cache
from edgekd.device.probe import ProbeResult, check_fits, probe
from edgekd.device.sensors import PowerReport, Sampler, sensor_spec, summarize
from edgekd.errors import ConfigError, DeviceError


@dataclass
class BenchOptions:
    """Runner and measurement settings (``None`` threads/affinity = the target profile's defaults)."""

    threads: int | None = None
    affinity: list[int] | None = None
    runs: int = 50
    min_seconds: float = 1.0
    warmup_runs: int = 1
    warmup_seconds: float = 0.5
    repeat: int = 1
    cooldown_s: float = 0.0
    timeout_s: float = 300.0
    idle_seconds: float = 1.0
    sample_period_s: float = 0.05
    power: bool = True


@dataclass
class BenchResult:
    """One measurement (one runner invocation) with its provenance."""

    device: str
    target: str
    arch: str | None
    emulated: bool
    runner: dict
    max_abs_diff: float
    top1_agree: float
    threads: int
    affinity: list[int]
    probe: ProbeResult
    push: cache.PushReport
    power: PowerReport | None
    model: str
    artifact: str
    manifest_sha256: str
    versions: dict[str, str]
    timestamp: str
    repeat_index: int = 0
    runner_wall_s: float = 0.0
    bench_wall_s: float = 0.0
    host: str = field(default_factory=platform.node)

    @property
    def latency_valid(self) -> bool:
        """False for emulated devices: their timing is not device latency."""
        return not self.emulated

    @property
    def timing_ms(self) -> dict:
        return dict(self.runner.get("latency_ms", {}))

    @property
    def timed_seconds(self) -> float:
        stamps = self.runner.get("timestamps", {})
        return max(0.0, stamps.get("timed_end_unix", 0.0) - stamps.get("timed_start_unix", 0.0))

    @property
    def overhead_s(self) -> float:
        """Bench wall time beyond the timed runs (connect, probe, push, load, warm-up, fetch)."""
        return self.bench_wall_s - self.timed_seconds

    def to_json(self) -> dict:
        """The ``edgekd bench --json`` document."""
        rss = self.runner.get("rss_kb", {})
        return {
            "device": self.device, "target": self.target, "arch": self.arch, "emulated": self.emulated,
            "latency_valid": self.latency_valid,
            "latency_ms": self.timing_ms if self.latency_valid else None,
            "emulated_time_ms": None if self.latency_valid else self.timing_ms,
            "init_ms": self.runner.get("init_ms"), "first_inference_ms": self.runner.get("first_inference_ms"),
            "runs": self.runner.get("runs"), "warmup_runs": self.runner.get("warmup_runs"),
            "peak_rss_mb": _mb(rss.get("peak")), "rss_delta_mb": _mb(_delta(rss)),
            "max_abs_diff": self.max_abs_diff, "top1_agree": self.top1_agree,
            "power": self.power.to_dict() if self.power else None,
            "threads": self.threads, "affinity": self.affinity, "governor": self.probe.governor,
            "glibc": self.probe.glibc, "cpu_model": self.probe.cpu_model,
            "model": self.model, "artifact": self.artifact, "versions": self.versions,
            "runner_version": self.runner.get("runner_version"), "tvm_runtime": self.runner.get("tvm_runtime"),
            "upload": {"uploaded": self.push.uploaded, "skipped": len(self.push.skipped),
                       "bytes": self.push.bytes_uploaded, "seconds": round(self.push.seconds, 3)},
            "repeat_index": self.repeat_index, "timestamp": self.timestamp,
            "bench_wall_s": round(self.bench_wall_s, 3), "overhead_s": round(self.overhead_s, 3),
        }

    def to_row(self) -> dict:
        """A flat, JSON-serialisable row for the results store (one column per scalar)."""
        timing = self.timing_ms
        prefix = "latency_ms" if self.latency_valid else "emulated_time_ms"
        row = {
            "timestamp": self.timestamp, "device": self.device, "target": self.target, "arch": self.arch,
            "emulated": self.emulated, "latency_valid": self.latency_valid, "host": self.host,
            "model": self.model, "artifact": self.artifact, "manifest_sha256": self.manifest_sha256,
            "runtime": "tvm", "threads": self.threads, "affinity": ",".join(map(str, self.affinity)),
            "governor": self.probe.governor, "cpu_model": self.probe.cpu_model, "os": self.probe.os,
            "glibc": self.probe.glibc, "exec_prefix": " ".join(self.probe.exec_prefix),
            "repeat_index": self.repeat_index, "runs": self.runner.get("runs"),
            "init_ms": self.runner.get("init_ms"), "first_inference_ms": self.runner.get("first_inference_ms"),
            "peak_rss_mb": _mb(self.runner.get("rss_kb", {}).get("peak")),
            "max_abs_diff": self.max_abs_diff, "top1_agree": self.top1_agree,
            "bench_wall_s": self.bench_wall_s, "uploaded_files": len(self.push.uploaded),
            "runner_version": self.runner.get("runner_version"), "tvm_runtime": self.runner.get("tvm_runtime"),
        }
        for key in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max"):
            row[f"latency_ms_{key}"] = None
            row[f"emulated_time_ms_{key}"] = None
            row[f"{prefix}_{key}"] = timing.get(key)
        for name, version in self.versions.items():
            row[f"version_{name}"] = version
        power = self.power
        row.update({"power_rail": power.rail if power else None, "idle_mw": power.idle_mw if power else None,
                    "run_mw": power.run_mw if power else None,
                    "energy_per_inference_mj": power.energy_per_inference_mj if power else None})
        return row


def _mb(kb: float | None) -> float | None:
    return None if kb is None else round(kb / 1024, 3)


def _delta(rss: dict) -> float | None:
    if rss.get("peak") is None or rss.get("before_load") is None:
        return None
    return rss["peak"] - rss["before_load"]


def _profile(device: Device, manifest):
    """The device's target profile (for threads, affinity and sensors), or None when it cannot be loaded."""
    from edgekd.config.target import load_target

    for name in (device.target, manifest.target.name):
        try:
            return load_target(name)
        except ConfigError:
            continue
    return None


def bench(conn, device: Device, artifact: str | Path, options: BenchOptions | None = None) -> list[BenchResult]:
    """Measure ``artifact`` on ``device`` ``options.repeat`` times.

    Args:
        conn: connection for ``device`` (``edgekd.device.connect(device)``); opened lazily by its calls.
        device: the device entry (exec prefix, cache dir, emulated flag, sensors).
        artifact: artifact directory written by ``edgekd compile``.
        options: runner and measurement settings.

    Returns:
        One BenchResult per repeat.

    Raises:
        DeviceError: board unreachable/untrusted, architecture or glibc mismatch (before any upload),
            unwritable cache, upload failure, runner crash or timeout, invalid runner output.
        CheckpointError: not an artifact.
    """
    from edgekd.compile.artifact import read_manifest

    started = time.perf_counter()
    options = options or BenchOptions()
    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    if not manifest.runner:
        raise DeviceError(f"{artifact}: the artifact has no runner (compiled without one); recompile with the runner")
    profile = _profile(device, manifest)
    sensors = list(device.sensors or (profile.power_sensors if profile else []))
    facts = probe(conn, cache_dir=device.cache_dir, sensor_specs=[sensor_spec(s) for s in sensors],
                  emulated=device.emulated)
    check_fits(facts, device=device.name, target=manifest.target.name, arch=manifest.target.arch,
               glibc_floor=manifest.target.glibc_floor)
    report = cache.push(conn, artifact, dict(manifest.files), device.cache_dir)
    threads = options.threads or (profile.threads.default if profile else 1)
    affinity = options.affinity if options.affinity is not None else (
        list(profile.threads.affinity) if profile and profile.threads.affinity else [])
    live = [s for s in sensors if _present(s, facts)] if options.power else []
    results = []
    for index in range(options.repeat):
        if index and options.cooldown_s > 0:
            time.sleep(options.cooldown_s)
        runner, output, wall, power = _run_once(conn, device, manifest, report.stage_dir, options, threads,
                                                affinity, live)
        diff, top1 = compare(output, np.fromfile(artifact / manifest.output.file, dtype=np.float32),
                             manifest.output.shape)
        results.append(BenchResult(
            device=device.name, target=manifest.target.name, arch=facts.arch, emulated=facts.emulated,
            runner=runner, max_abs_diff=diff, top1_agree=top1, threads=threads,
            affinity=list(runner.get("affinity") or affinity), probe=facts, push=report, power=power,
            model=manifest.model.name, artifact=str(artifact.resolve()),
            manifest_sha256=hashlib.sha256((artifact / "manifest.json").read_bytes()).hexdigest(),
            versions=dict(manifest.versions), timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
            repeat_index=index, runner_wall_s=wall, bench_wall_s=time.perf_counter() - started,
        ))
        started = time.perf_counter()  # later repeats: their own wall time
    return results


def _present(sensor, facts: ProbeResult) -> bool:
    key = sensor.path if sensor.kind == "sysfs" else sensor.command
    return key in facts.sensors


def runner_command(manifest, output_path: str, options: BenchOptions, threads: int, affinity: list[int]) -> list[str]:
    """The runner's argument list (run in the stage directory)."""
    cmd = [
        f"./{manifest.runner}", "--model", manifest.library, "--input", manifest.input.file,
        "--shape", ",".join(str(d) for d in manifest.input.shape),
        "--warmup-runs", str(options.warmup_runs), "--warmup-seconds", f"{options.warmup_seconds:g}",
        "--runs", str(options.runs), "--min-seconds", f"{options.min_seconds:g}",
        "--threads", str(threads), "--output-file", output_path,
    ]
    if affinity:
        cmd += ["--affinity", ",".join(str(c) for c in affinity)]
    return cmd


def _run_once(conn, device, manifest, stage_dir, options, threads, affinity, sensors):
    run_dir = cache.run_dir(conn, device.cache_dir)
    try:
        out_rel = posixpath.relpath(posixpath.join(run_dir, "out.bin"), stage_dir)
        cmd = runner_command(manifest, out_rel, options, threads, affinity)
        env = {"TVM_NUM_THREADS": str(threads)}
        power = None
        if sensors:
            with Sampler(conn, sensors, options.sample_period_s) as sampler:
                sampler.wait_first()
                time.sleep(options.idle_seconds)
                result = conn.run(cmd, cwd=stage_dir, env=env, prefixed=True, timeout=options.timeout_s)
            runner = _check_runner(conn, device, result, options)
            first = sampler.samples[0].t if sampler.samples else 0.0
            stamps = runner.get("timestamps", {})
            power = summarize(
                sampler.samples, sensors, idle_window=(first, first + options.idle_seconds),
                run_window=(stamps.get("timed_start_unix", 0.0), stamps.get("timed_end_unix", 0.0)),
                latency_ms=runner.get("latency_ms", {}).get("mean"), period_s=options.sample_period_s,
            )
        else:
            result = conn.run(cmd, cwd=stage_dir, env=env, prefixed=True, timeout=options.timeout_s)
            runner = _check_runner(conn, device, result, options)
        output = _fetch_output(conn, posixpath.join(run_dir, "out.bin"), runner)
    finally:
        cache.remove_tree(conn, run_dir)
    return runner, output, result.seconds, power


def _check_runner(conn, device: Device, result, options: BenchOptions) -> dict:
    if result.timed_out:
        raise DeviceError(
            f"runner on {device.name} did not finish within {options.timeout_s:g} s and was killed "
            "(raise --timeout if the model is just slow)"
        )
    if result.exit_code != 0:
        raise DeviceError(f"runner crashed on {device.name} (exit code {result.exit_code}): {result.last_error_line()}")
    try:
        doc = json.loads(result.stdout)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError:
        head = result.stdout.strip().replace("\n", " ")[:120]
        raise DeviceError(f"runner on {device.name} printed no JSON document (got {head!r})") from None
    return doc


def _fetch_output(conn, remote: str, runner: dict) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="edgekd-out-") as tmp:
        local = Path(tmp) / "out.bin"
        try:
            conn.get(remote, local)
            return np.fromfile(local, dtype=np.float32)
        except DeviceError:
            values = (runner.get("output") or {}).get("values")
            if values is None:
                raise
            return np.asarray(values, dtype=np.float32)


def compare(output: np.ndarray, reference: np.ndarray, shape: list[int]) -> tuple[float, float]:
    """Max absolute difference and top-1 agreement (fraction of rows with the same argmax).

    Raises:
        DeviceError: the board's output has the wrong size.
    """
    if output.size != reference.size:
        raise DeviceError(f"board output has {output.size} values, the PyTorch reference {reference.size}")
    diff = float(np.max(np.abs(output.astype(np.float64) - reference.astype(np.float64)))) if output.size else 0.0
    rows = shape[0] if len(shape) > 1 else 1
    a, b = output.reshape(rows, -1), reference.reshape(rows, -1)
    return diff, float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def result_dicts(results: list[BenchResult]) -> list[dict]:
    """``to_json()`` of each result (for programmatic callers)."""
    return [r.to_json() for r in results]


__all__ = ["BenchOptions", "BenchResult", "bench", "compare", "runner_command", "result_dicts"]
