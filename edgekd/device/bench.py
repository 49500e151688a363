"""Benchmark a compiled artifact on a device: probe -> push -> run the runner -> fetch -> compare.

Input: a connection (handed in, never opened here), its :class:`~edgekd.config.devices.Device`, an
artifact directory (``manifest.json`` contract in ``docs/artifacts.md``) and :class:`BenchOptions`.
Output: one :class:`BenchResult` per repeat, with full provenance; ``to_row()`` is the flat record
for :mod:`edgekd.results.store`, ``to_json()`` the ``--json`` document.

An emulated device's timings are kept as ``emulated_time_ms`` and are never labelled latency
(``latency_ms`` is ``None``, ``latency_valid`` is false).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import posixpath
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgekd.compile import litert
from edgekd.config.devices import Device
from edgekd.device import baselines, cache
from edgekd.device.local import LocalConnection
from edgekd.device.lock import board_lock
from edgekd.device.probe import ProbeResult, check_fits, probe
from edgekd.device.sensors import PowerReport, Sampler, sensor_spec, summarize
from edgekd.errors import ConfigError, DeviceError


@dataclass(frozen=True)
class BaselineModel:
    """A baseline runtime's model on the host: the artifact's ``model.onnx`` (staged with it: ``sha256`` None) or
    a file converted from it and pushed beside it (LiteRT's ``.tflite``), with the versions that made it."""

    path: Path
    sha256: str | None
    versions: dict[str, str]


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
    #: seconds to wait while another session holds the board's run lock (``None``: as long as it takes)
    lock_timeout_s: float | None = 3600.0
    #: other runtimes timed after each TVM repeat, same input and threads (:mod:`edgekd.device.baselines`)
    baselines: tuple[str, ...] = ()
    baseline_python: str | None = None  # the board's interpreter for them (default: baselines.default_python)
    #: the interpreter with onnx2tf that converts model.onnx for the LiteRT baseline (default: the LiteRT
    #: environment of scripts/setup_litert.sh, :mod:`edgekd.compile.litert`)
    litert_converter: str | None = None


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
    runtime: str = "tvm"
    tuned: bool = False  # the artifact was compiled with MetaSchedule records
    tune_trials: int = 0  # the trials behind those records (this compile's budget)

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
            "runtime": self.runtime, "tuned": self.tuned, "tune_trials": self.tune_trials,
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
            "runtime": self.runtime, "tuned": self.tuned, "tune_trials": self.tune_trials, "threads": self.threads,
            "affinity": ",".join(map(str, self.affinity)),
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
        if self.runtime == "litert":  # did XNNPACK run it all, or did ops fall back to LiteRT's own kernels
            row["xnnpack_whole_graph"] = self.runner.get("xnnpack_whole_graph")
        power = self.power
        row.update({"power_rail": power.rail if power else None, "idle_mw": power.idle_mw if power else None,
                    "run_mw": power.run_mw if power else None,
                    "energy_per_inference_mj": power.energy_per_inference_mj if power else None,
                    "power_trace": [list(point) for point in power.trace] if power and power.trace else None,
                    "power_run_window_s": list(power.run_window_s) if power and power.run_window_s else None})
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


def bench(conn, device: Device, artifact: str | Path, options: BenchOptions | None = None, *,
          on_result: Callable[[BenchResult], None] | None = None) -> list[BenchResult]:
    """Measure ``artifact`` on ``device`` ``options.repeat`` times.

    Args:
        conn: connection for ``device`` (``edgekd.device.connect(device)``); opened lazily by its calls.
        device: the device entry (exec prefix, cache dir, emulated flag, sensors).
        artifact: artifact directory written by ``edgekd compile``.
        options: runner and measurement settings.
        on_result: called with each BenchResult as soon as it is measured (before the next repeat), so a
            caller can store repeats 1..k-1 even when repeat k fails.

    Returns:
        One BenchResult per repeat.

    Raises:
        DeviceError: board unreachable/untrusted, architecture or glibc mismatch (before any upload), board
            busy past ``options.lock_timeout_s`` (another session holds its run lock, see
            :func:`edgekd.device.lock.board_lock`), unwritable cache, upload failure, runner crash or timeout,
            invalid runner output.
        CheckpointError: not an artifact, a file name in its manifest that is unsafe (absolute, ``..``,
            a symlink out of it), or a file that does not match its sha256 (checked before any upload).
    """
    from edgekd.compile.artifact import verify_artifact

    started = time.perf_counter()
    options = options or BenchOptions()
    artifact = Path(artifact)
    manifest = verify_artifact(artifact)
    if not manifest.runner:
        raise DeviceError(f"{artifact}: the artifact has no runner (compiled without one); recompile with the runner")
    profile = _profile(device, manifest)
    if options.baselines and device.emulated:
        raise DeviceError(f"{device.name}: no {options.baselines[0]} baseline on an emulated board (its timings are "
                          f"not latency)")
    models = _baseline_models(artifact, manifest, options)  # before the board: a conversion can take a minute
    sensors = list(device.sensors or (profile.power_sensors if profile else []))
    facts = probe(conn, cache_dir=device.cache_dir, sensor_specs=[sensor_spec(s) for s in sensors],
                  emulated=device.emulated)
    # an upper bound (blobs already cached are not sent again), checked before anything moves
    upload_bytes = sum((Path(artifact) / name).stat().st_size for name in manifest.files)
    check_fits(facts, device=device.name, target=manifest.target.name, arch=manifest.target.arch,
               glibc_floor=manifest.target.glibc_floor, upload_bytes=upload_bytes)
    # one session at a time on the board: another bench's load would be timed (and powered) as ours
    with board_lock(conn, device, what=f"bench {manifest.model.name}", timeout=options.lock_timeout_s):
        _sweep_runs(conn, device.cache_dir)
        report = cache.push(conn, artifact, dict(manifest.files), device.cache_dir)
        staged = {runtime: _stage_model(conn, device, model) for runtime, model in models.items()}
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
            result = BenchResult(
                device=device.name, target=manifest.target.name, arch=facts.arch, emulated=facts.emulated,
                runner=runner, max_abs_diff=diff, top1_agree=top1, threads=threads,
                affinity=list(runner.get("affinity") or affinity), probe=facts, push=report, power=power,
                model=manifest.model.name, artifact=str(artifact.resolve()),
                manifest_sha256=hashlib.sha256((artifact / "manifest.json").read_bytes()).hexdigest(),
                versions=dict(manifest.versions), timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                repeat_index=index, runner_wall_s=wall, bench_wall_s=time.perf_counter() - started,
                tuned=manifest.tuned, tune_trials=manifest.tuning.trials,
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
            for runtime in options.baselines:  # interleaved: TVM, then each baseline, in every repeat
                baseline = _run_baseline(conn, device, manifest, report.stage_dir, staged[runtime],
                                         models[runtime].versions, options, threads, result, runtime)
                results.append(baseline)
                if on_result is not None:
                    on_result(baseline)
            started = time.perf_counter()  # later repeats: their own wall time
    return results


def bench_interleaved(conn, device: Device, artifacts: list[str | Path], options: BenchOptions | None = None,
                      rounds: int = 3, *, on_result: Callable[[int, BenchResult], None] | None = None
                      ) -> list[list[BenchResult]]:
    """Bench several artifacts in ``rounds`` interleaved rounds (A B C, B C A, C A B, …): a slow spell of a shared
    board then falls on every artifact alike, so ratios between them hold even when absolute times drift.
    Each round runs each artifact once (``options.repeat`` is ignored), its ``options.baselines`` right after it.
    Returns, per artifact, every result in order (TVM's and the baselines', told apart by ``runtime``);
    ``on_result(artifact index, result)`` is told each as soon as it is measured."""
    options = dataclasses.replace(options or BenchOptions(), repeat=1)
    measured: list[list[BenchResult]] = [[] for _ in artifacts]
    for round_index in range(rounds):
        shift = round_index % len(artifacts)
        for index in [*range(shift, len(artifacts)), *range(shift)]:
            for result in bench(conn, device, artifacts[index], options):
                result.repeat_index = round_index
                measured[index].append(result)
                if on_result is not None:
                    on_result(index, result)
    return measured


def _baseline_models(artifact: Path, manifest, options: BenchOptions) -> dict[str, BaselineModel]:
    """Each baseline's model file on the host (LiteRT's converted first), or one line why there is none."""
    if not options.baselines:
        return {}
    if not manifest.onnx:
        raise DeviceError("the artifact has no model.onnx (compiled with --no-onnx); recompile it for the baseline")
    models = {}
    for runtime in options.baselines:
        if runtime == "litert":
            converted = litert.to_tflite(artifact / manifest.onnx, options.litert_converter)
            models[runtime] = BaselineModel(converted.path, converted.sha256, {"converter": converted.converter})
        else:
            models[runtime] = BaselineModel(artifact / manifest.onnx, None, {})
    return models


def _stage_model(conn, device: Device, model: BaselineModel) -> str:
    """The model's path on the board: the artifact's own file, or a converted one pushed (verified) beside it."""
    if model.sha256 is None:
        return model.path.name
    report = cache.push(conn, model.path.parent, {model.path.name: model.sha256}, device.cache_dir)
    return posixpath.join(report.stage_dir, model.path.name)


def _run_baseline(conn, device: Device, manifest, stage_dir: str, model_file: str, model_versions: dict[str, str],
                  options: BenchOptions, threads: int, tvm: BenchResult, runtime: str) -> BenchResult:
    """Time ``runtime`` (see :mod:`edgekd.device.baselines`) like the TVM repeat ``tvm`` it follows."""
    if tvm.emulated:
        raise DeviceError(f"{device.name}: no {runtime} baseline on an emulated board (its timings are not latency)")
    local = isinstance(conn, LocalConnection)
    python = options.baseline_python or baselines.default_python(runtime, local, options.litert_converter)
    cmd = baselines.baseline_command(runtime, python, model_file, manifest, options, threads)
    started = time.perf_counter()
    env = {"OMP_NUM_THREADS": str(threads)}
    result = conn.run(cmd, cwd=stage_dir, env=env, timeout=options.timeout_s)
    doc = baselines.parse_output(device.name, result, runtime)
    versions = {**tvm.versions, runtime: doc.get(runtime, "unknown"), **model_versions}
    return dataclasses.replace(
        tvm, runner=doc, max_abs_diff=doc["max_abs_diff"], top1_agree=doc["top1_agree"], power=None,
        versions=versions, timestamp=datetime.now(UTC).isoformat(timespec="seconds"), runner_wall_s=result.seconds,
        bench_wall_s=time.perf_counter() - started, runtime=runtime, tuned=False, tune_trials=0,
    )


def _sweep_runs(conn, cache_dir: str) -> None:
    """Remove run directories left by benches whose connection died (safe: we hold the board's run lock)."""
    try:
        names = cache.sftp_like(conn).listdir(cache_dir)
    except (OSError, DeviceError):
        return
    for name in names:
        if name.startswith(".run-"):
            cache.remove_tree(conn, posixpath.join(cache_dir, name))


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
    if manifest.input.dtype != "float32":  # runners before version 2 know float32 only (and no --dtype)
        cmd += ["--dtype", manifest.input.dtype]
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
                result = conn.run(_reporting_signals(conn, cmd), cwd=stage_dir, env=env, timeout=options.timeout_s)
            runner = _check_runner(conn, device, result, options)
            first = sampler.samples[0].t if sampler.samples else 0.0
            stamps = runner.get("timestamps", {})
            power = summarize(
                sampler.samples, sensors, idle_window=(first, first + options.idle_seconds),
                run_window=(stamps.get("timed_start_unix", 0.0), stamps.get("timed_end_unix", 0.0)),
                latency_ms=runner.get("latency_ms", {}).get("mean"), period_s=options.sample_period_s,
            )
        else:
            result = conn.run(_reporting_signals(conn, cmd), cwd=stage_dir, env=env, timeout=options.timeout_s)
            runner = _check_runner(conn, device, result, options)
        output = _fetch_output(conn, posixpath.join(run_dir, "out.bin"), runner)
    finally:
        cache.remove_tree(conn, run_dir)
    return runner, output, result.seconds, power


#: Runs the (prefixed) runner under a shell that reports a death by signal on stderr: over SSH the exit
#: status of a signalled command is lost (``timeout`` re-raises the signal; the channel has no status), and
#: ``timeout``'s 137 reads like its own kill. ``trap :`` (not ignore: ignoring would be inherited) keeps
#: the shell alive until the runner is gone, so a timeout's TERM/KILL still reaches the runner.
_SIGNAL_WRAPPER = ('trap : TERM INT HUP; "$@"; code=$?; if [ "$code" -gt 128 ] && [ "$code" -lt 192 ]; '
                   'then echo "%s $((code - 128))" >&2; fi; exit "$code"')
_SIGNAL_MARK = "edgekd-runner-killed-by-signal"


def _reporting_signals(conn, cmd: list[str]) -> list[str]:
    return ["sh", "-c", _SIGNAL_WRAPPER % _SIGNAL_MARK, "sh", *getattr(conn, "exec_prefix", []), *cmd]


def _killing_signal(result) -> int | None:
    """The signal that ended the runner (from the wrapper's line, a local negative code, or 128+n)."""
    for line in reversed(result.stderr.splitlines()):
        if line.startswith(_SIGNAL_MARK):
            return int(line.split()[-1])
    if result.exit_code < -1:
        return -result.exit_code
    if 128 < result.exit_code < 192:
        return result.exit_code - 128
    return None


def _signal_text(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    hint = "; out of memory?" if number == signal.SIGKILL else ""
    return f"killed by signal {number} ({name}{hint})"


def _check_runner(conn, device: Device, result, options: BenchOptions) -> dict:
    # a timeout: the wall time reached the limit, or `timeout` said so (124); a 137 before the limit is
    # a SIGKILL from someone else (the kernel's OOM killer), not our timeout
    if result.seconds >= options.timeout_s or (result.timed_out and result.exit_code in (124, -1)):
        raise DeviceError(
            f"runner on {device.name} did not finish within {options.timeout_s:g} s and was killed "
            "(raise --timeout if the model is just slow)"
        )
    if result.exit_code != 0 or result.timed_out:
        lines = [line.strip() for line in result.stderr.splitlines()
                 if line.strip() and not line.startswith(_SIGNAL_MARK)]
        last = lines[-1] if lines else "(no stderr)"
        number = _killing_signal(result)
        if number is not None:
            raise DeviceError(f"runner on {device.name} was {_signal_text(number)}: {last}")
        raise DeviceError(f"runner crashed on {device.name} (exit code {result.exit_code}): {last}")
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
