"""``edgekd device add|list|probe|trust|setup|remove|verify|clean`` and ``edgekd bench``: parse, call the API, render.

Listings (``list``, ``probe``) go to stdout (a table, or with ``--json`` exactly one JSON document); the
summaries of actions go to stderr (see :mod:`edgekd.cli.common`).
"""

from __future__ import annotations

import shlex
import statistics
from pathlib import Path

import typer

from edgekd.cli.common import JsonOpt, console, emit_json, print_table, print_text
from edgekd.errors import DeviceError

device_app = typer.Typer(help="Manage the boards edgekd benchmarks on (stored in devices.yaml).",
                         no_args_is_help=True)


@device_app.command("add")
def add(
    name: str = typer.Argument(..., help="Device name."),
    target: str = typer.Option(..., "--target", help="Target profile name (e.g. jetson-tx2, host)."),
    host: str = typer.Option(..., "--host", help="Address or ~/.ssh/config alias."),
    port: int | None = typer.Option(None, "--port"),
    user: str | None = typer.Option(None, "--user"),
    key: Path | None = typer.Option(None, "--key", help="Private key file (no passwords are stored)."),
    exec_prefix: str | None = typer.Option(None, "--exec-prefix", help="e.g. 'qemu-aarch64 -L /sysroot'."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Cache directory on the board."),
    known_hosts: Path | None = typer.Option(None, "--known-hosts"),
    emulated: bool = typer.Option(False, "--emulated", help="Timings are not device latency (qemu)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing entry."),
) -> None:
    """Store a device (then run `edgekd device trust NAME`)."""
    from edgekd import api

    stored = api.add_device(name, target=target, host=host, port=port, user=user, key=key, exec_prefix=exec_prefix,
                            cache_dir=cache_dir, known_hosts=known_hosts, emulated=emulated, replace=replace)
    console.print(f"added device [bold]{name}[/] ({target}) to {stored.path}; next: edgekd device trust {name}")


@device_app.command("list")
def list_(as_json: bool = JsonOpt) -> None:
    """List devices (the built-in `local` first)."""
    from edgekd import api

    devices = api.list_devices()
    if as_json:
        emit_json([d.model_dump(mode="json") for d in devices])
        return
    print_table(("name", "target", "host", "user", "port", "exec prefix", "emulated"),
                [(d.name, d.target, d.host, d.user or "", d.port or "", shlex.join(d.exec_prefix),
                  "yes" if d.emulated else "") for d in devices])


@device_app.command("remove")
def remove(name: str) -> None:
    """Delete a stored device."""
    from edgekd import api

    path = api.remove_device(name)
    console.print(f"removed device {name} from {path}")


@device_app.command("trust")
def trust(
    name: str,
    yes: bool = typer.Option(False, "--yes", help="Record without asking."),
    expect: str | None = typer.Option(None, "--expect", help="Record only if the fingerprint is this SHA256:..."),
) -> None:
    """Show the board's host-key fingerprint and record it in edgekd's known_hosts.

    Behind ProxyJump hosts each host of the chain is shown and recorded, jump hosts first (``--expect`` is
    the board's fingerprint; jump hosts are confirmed unless ``--yes``).
    """
    from edgekd import api

    host_key = api.fetch_host_key(name)
    while host_key is not None:
        what = f" (jump host {host_key.host} on the way to {name})" if host_key.jump else ""
        # stdout: the key is what the user is asked about (the prompt below is on stdout too)
        print_text(f"{host_key.address} presents {host_key.key_type} key {host_key.fingerprint}{what}")
        board_expect = None if host_key.jump else expect
        if not (yes or board_expect) and not typer.confirm("Trust this key?", default=False):
            raise DeviceError(f"host key for {host_key.host if host_key.jump else name} not trusted")
        path = api.trust_host_key(host_key, expect=board_expect)
        console.print(f"recorded in {path}")
        host_key = host_key.fetch_next()


@device_app.command("probe")
def probe_cmd(name: str, as_json: bool = JsonOpt) -> None:
    """Report architecture, CPU, governor, memory, OS/glibc, free disk and power sensors; refuse a misfit."""
    from edgekd import api

    _render_probe(api.probe_device(name), as_json)


def _render_probe(report, as_json: bool) -> None:
    """Print the probe (table or JSON), then fail with exit code 2 when the board does not fit its target."""
    facts = report.facts
    if as_json:
        emit_json(report.to_dict())
    else:
        rows = [
            ("architecture", f"{facts.arch} (kernel {facts.kernel_arch})" + (" [emulated]" if facts.emulated else "")),
            ("cpu", f"{facts.cpu_model} x{facts.cpu_count}"),
            ("governor", facts.governor + ("" if facts.governor == "performance" else "  (warning: not performance)")),
            ("memory", f"{facts.mem_total_mb} MB total, {facts.mem_available_mb} MB available"),
            ("os / glibc", f"{facts.os} / glibc {facts.glibc}"),
            ("free disk (cache)", f"{facts.disk_free_mb} MB"),
            ("power sensors", ", ".join(facts.sensors) or "none found"),
        ]
        print_table(("field", "value"), rows, title=f"{report.device} ({report.target})", header=False)
    if report.problem:
        raise DeviceError(report.problem)


@device_app.command("setup")
def setup(name: str, as_json: bool = JsonOpt) -> None:
    """Probe the board, create its cache directory and check the tools edgekd needs there."""
    from edgekd import api

    done = api.setup_device(name)
    if as_json:
        emit_json(done.to_dict())
        if done.probe.problem:
            raise DeviceError(done.probe.problem)
        return
    console.print(f"{name}: cache {done.cache_dir} ready; {', '.join(done.tools)} present")
    _render_probe(done.probe, as_json=False)


@device_app.command("verify")
def verify(name: str, as_json: bool = JsonOpt) -> None:
    """Hash every file in the board's cache and drop bad ones (exit code 1 when some were bad)."""
    from edgekd import api

    found = api.verify_device_cache(name)
    if as_json:
        emit_json(found.to_dict())
    elif found.bad:
        console.print(f"{name}: {len(found.bad)} of {found.checked} cached files in {found.cache_dir} were corrupt "
                      f"and are removed (the next bench uploads them again): {', '.join(found.bad)}")
    else:
        console.print(f"{name}: all {found.checked} cached files in {found.cache_dir} match their sha256 "
                      f"({found.bytes_checked} B in {found.seconds:.1f} s)")
    if found.bad:
        raise typer.Exit(1)


@device_app.command("clean")
def clean(name: str) -> None:
    """Remove the board's cache directory (the next bench uploads everything again)."""
    from edgekd import api

    removed = api.clean_device_cache(name)
    console.print(f"{name}: cache removed" if removed else f"{name}: no cache to remove")


def bench_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory from `edgekd compile`, or a model (model.pt, "
                                              "model.pt2, run dir) to compile, untuned, for the device's target."),
    device: str = typer.Option("local", "--device", "-d", help="Device name (`local` = this host, no SSH)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    repeat: int = typer.Option(1, "--repeat", min=1, help="Measurements (runner invocations)."),
    cooldown: float = typer.Option(0.0, "--cooldown", min=0.0, help="Seconds to wait between repeats."),
    threads: int | None = typer.Option(None, "--threads", min=1),
    affinity: str | None = typer.Option(None, "--affinity", help="CPU ids, e.g. 0,3,4,5."),
    runs: int = typer.Option(50, "--runs", min=1),
    min_seconds: float = typer.Option(1.0, "--min-seconds", min=0.0),
    warmup_seconds: float = typer.Option(0.5, "--warmup-seconds", min=0.0),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Kill the runner after this many seconds."),
    idle_seconds: float = typer.Option(1.0, "--idle-seconds", min=0.0, help="Idle power window before the run."),
    results: Path | None = typer.Option(None, "--results", help="Results store (default $EDGEKD_RESULTS)."),
    store: bool = typer.Option(True, "--store/--no-store", help="Append rows to the results store."),
    lock_timeout: float = typer.Option(3600.0, "--lock-timeout", min=0.0,
                                       help="Seconds to wait while another bench holds the board; then fail."),
    report: bool = typer.Option(False, "--report/--no-report",
                                help="Write the HTML report of the artifact's run (or of the store) at the end."),
    baseline: list[str] = typer.Option(None, "--baseline",
                                       help="Also time this runtime on the same board after each TVM repeat, same "
                                            "input and threads: onnxruntime (the artifact's model.onnx) or litert "
                                            "(XNNPACK; model.onnx converted by onnx2tf on this host)."),
    baseline_python: str = typer.Option(None, "--baseline-python",
                                        help="The board's Python with the baseline runtime (default python3; on "
                                             "local: this one for onnxruntime, the LiteRT environment's for litert)."),
    litert_converter: str = typer.Option(None, "--litert-converter",
                                         help="A Python with onnx2tf for --baseline litert (default: the "
                                              "environment scripts/setup_litert.sh makes)."),
) -> None:
    """Push an artifact to a device, run it, compare with PyTorch and record the measurement.

    One bench at a time runs on a board (a run lock in its cache directory, shared by every host): a second
    one says on stderr whom it waits for, and fails after ``--lock-timeout`` seconds."""
    from edgekd import api

    options = api.BenchOptions(
        threads=threads, affinity=[int(c) for c in affinity.split(",")] if affinity else None, runs=runs,
        min_seconds=min_seconds, warmup_seconds=warmup_seconds, repeat=repeat, cooldown_s=cooldown,
        timeout_s=timeout, idle_seconds=idle_seconds, lock_timeout_s=lock_timeout,
        baselines=tuple(api.parse_baseline(name) for name in baseline or ()), baseline_python=baseline_python,
        litert_converter=litert_converter,
    )
    measured = api.bench(artifact, device=device, options=options, results=results, store=store,
                         on_compile=lambda out: console.print(f"compiling {artifact} for the device into {out}",
                                                              markup=False, soft_wrap=True))
    docs = [r.to_json() for r in measured]
    if as_json:
        emit_json(docs[0] if len(docs) == 1 else {"device": device, "measurements": docs})
    else:
        for result in measured:
            console.print(summary_text(result))
        if comparison := runtime_comparison(measured):
            console.print(comparison)
    if store:  # where the report of these measurements is (stderr)
        source = api.report_source_for_artifact(measured[0].artifact if measured else artifact, results)
        if report:
            console.print(f"report: {api.build_report(source, store=results).html}", markup=False, soft_wrap=True)
        else:
            console.print(f"report: `edgekd report {source}` writes it", markup=False, soft_wrap=True)


def runtime_comparison(measured) -> str | None:
    """TVM's median p50 beside each baseline runtime's, measured in the same bench (None without baselines)."""
    p50s: dict[str, list[float]] = {}
    for result in measured:
        if result.latency_valid and result.timing_ms.get("p50") is not None:
            p50s.setdefault(result.runtime, []).append(result.timing_ms["p50"])
    if "tvm" not in p50s or len(p50s) < 2:
        return None
    tvm = statistics.median(p50s["tvm"])
    parts = [f"TVM p50 {tvm:.4g} ms"]
    for runtime, values in p50s.items():
        if runtime != "tvm":
            other = statistics.median(values)
            parts.append(f"{runtime} p50 {other:.4g} ms (TVM ÷ {runtime} = {tvm / other:.2f})")
    return "Same bench, interleaved: " + ", ".join(parts)


def summary_text(result) -> str:
    """A TFLite ``benchmark_model``-style summary of one measurement."""
    doc = result.to_json()
    timing = result.timing_ms
    if result.runtime != "tvm":
        return _baseline_text(result, doc, timing)
    lines = [
        f"[bold]{doc['model']}[/] on [bold]{doc['device']}[/] ({doc['target']}, {doc['arch']}), "
        f"{doc['threads']} threads, affinity {','.join(map(str, doc['affinity'])) or 'any'}, "
        f"governor {doc['governor']}" + ("" if doc["governor"] == "performance" else " (warning: not performance)"),
        f"Init: {doc['init_ms']} ms, first inference: {doc['first_inference_ms']} ms, "
        f"warm-up runs: {doc['warmup_runs']}",
        f"Runtime: TVM, tuned with {doc['tune_trials']} trials" if doc["tuned"] else
        "Runtime: TVM, [yellow]untuned[/] (on CPUs untuned TVM is about two orders of magnitude slower than tuned; "
        "compile with --tune-trials N)",
    ]
    stats = " ".join(f"{k}={timing.get(k)}" for k in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max"))
    if result.latency_valid:
        lines.append(f"Inference timings in ms: count={doc['runs']} {stats}")
    else:
        lines.append(f"[yellow]emulated: timing not meaningful[/] (emulated run, count={doc['runs']})")
    lines.append(f"Memory: peak RSS {doc['peak_rss_mb']} MB (+{doc['rss_delta_mb']} MB over before-load)")
    lines.append(f"Output vs PyTorch: max |diff| {doc['max_abs_diff']:.3g}, top-1 agreement {doc['top1_agree']:.0%}")
    power = result.power
    if power and power.rail:
        energy = power.energy_per_inference_mj
        lines.append(f"Power ({power.rail}): idle {power.idle_mw:.0f} mW, running {power.run_mw:.0f} mW, "
                     f"energy {energy:.4g} mJ/inference" if energy is not None else f"Power ({power.rail}): n/a")
    up = doc["upload"]
    lines.append(f"Uploaded {len(up['uploaded'])} files ({up['bytes']} B), {up['skipped']} cached; "
                 f"bench {doc['bench_wall_s']} s, overhead beyond timed runs {doc['overhead_s']} s")
    return "\n".join(lines)


def _baseline_text(result, doc: dict, timing: dict) -> str:
    stats = " ".join(f"{k}={timing.get(k):.4g}" for k in ("mean", "std", "min", "p50", "p90", "p99", "max")
                     if timing.get(k) is not None)
    return (f"[bold]{result.runtime}[/] {doc['versions'].get(result.runtime, '')} on [bold]{doc['device']}[/], "
            f"{doc['threads']} threads: count={doc['runs']} {stats}; output vs PyTorch max |diff| "
            f"{doc['max_abs_diff']:.3g}")


def register(app: typer.Typer) -> None:
    """Add the ``device`` sub-app and the ``bench`` command."""
    app.add_typer(device_app, name="device")
    app.command("bench")(bench_cmd)
