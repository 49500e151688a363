"""Helpers of the report tests: a fake compress run with artifacts and store rows shaped like
``BenchResult.to_row()``, and a reader of what a report page embeds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekd.results.store import ResultsStore

BLOCKS = [
    {"name": "stage3", "budget": {"flops": 50.0}, "frozen": False, "flops": 48.0, "params": 10.0,
     "dense_flops": 100.0, "dense_params": 20.0, "channels_before": 32, "channels_after": 15, "lambda": 0.1,
     "met_step": 3},
    {"name": "stage4", "budget": {"flops": 40.0, "params": 30.0}, "frozen": False, "flops": 39.0, "params": 25.0,
     "dense_flops": 80.0, "dense_params": 50.0, "channels_before": 64, "channels_after": 30, "lambda": 0.2,
     "met_step": 5},
]


def fake_run(root: Path) -> tuple[Path, Path]:
    """A compress run (report.json, model.pt stand-in) and a teacher train run (result.json)."""
    teacher = root / "teacher-run"
    teacher.mkdir(parents=True)
    (teacher / "result.json").write_text(json.dumps({"stage": "train", "test_acc": 0.91, "flops": 200}))
    run = root / "compress-run"
    run.mkdir()
    report = {"run_dir": str(run), "target": "host", "teacher": {"test_acc": 0.91, "flops": 200, "params": 70},
              "student": {"test_acc": 0.88, "flops": 100, "params": 35}, "blocks": BLOCKS,
              "pruning": {"pruned_test_acc": 0.5}}
    (run / "report.json").write_text(json.dumps(report))
    return run, teacher


def artifact(directory: Path, source: Path, tuned: bool = False) -> Path:
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"model": {"name": "mobilenetv2_cifar",
                                                                   "source": str(source)}, "tuned": tuned}))
    return directory


def bench_row(artifact_dir: Path, *, device: str = "local", target: str = "host", emulated: bool = False,
              p50: float = 2.0, repeat: int = 0, energy: float | None = None, **extra) -> dict:
    """A row as ``BenchResult.to_row()`` writes it (emulated: timings only as emulated_time_ms_*)."""
    prefix = "emulated_time_ms" if emulated else "latency_ms"
    row = {"timestamp": "2026-05-01T12:00:00+00:00", "device": device, "target": target,
           "arch": "aarch64" if emulated else "x86_64", "emulated": emulated, "latency_valid": not emulated,
           "host": "h", "model": "mobilenetv2_cifar", "artifact": str(artifact_dir), "manifest_sha256": "0" * 64,
           "runtime": "tvm", "threads": 1, "affinity": "0", "governor": "performance", "cpu_model": "cpu",
           "os": "linux", "glibc": "2.36", "exec_prefix": "", "repeat_index": repeat, "runs": 10,
           "init_ms": 1.0, "first_inference_ms": 1.0, "peak_rss_mb": 40.0 + p50, "max_abs_diff": 0.0,
           "top1_agree": 1.0, "bench_wall_s": 1.0, "uploaded_files": 3, "runner_version": "1",
           "tvm_runtime": "0.27", "version_tvm": "0.27.0", "version_edgekd": "0.1", "power_rail": None,
           "idle_mw": None, "run_mw": None, "energy_per_inference_mj": energy}
    for key in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max"):
        row[f"latency_ms_{key}"] = None
        row[f"emulated_time_ms_{key}"] = None
        row[f"{prefix}_{key}"] = p50 * (1.2 if key == "p90" else 1.0)
    if energy is not None:
        row.update(power_rail="VDD_IN", idle_mw=900.0, run_mw=1500.0)
    return row | extra


def fake_store(root: Path, *, power: bool = False) -> tuple[Path, Path, dict[str, list[str]]]:
    """A fake run, its artifacts (student on host, teacher on host, student on an emulated aarch64 board) and a
    store with their rows. Returns (run, store path, record ids by artifact kind)."""
    run, teacher = fake_run(root)
    student_host = artifact(run / "artifacts" / "host", run / "model.pt")
    teacher_host = artifact(run / "artifacts" / "teacher-host", teacher / "model.pt")
    student_arm = artifact(run / "artifacts" / "jetson-tx2", run / "model.pt")
    store = ResultsStore(root / "results.jsonl")
    ids: dict[str, list[str]] = {"student": [], "teacher": [], "emulated": []}
    for repeat in range(3):
        ids["student"].append(store.append(bench_row(student_host, p50=2.0 + 0.1 * repeat, repeat=repeat,
                                                     energy=1.5 if power else None))["record_id"])
        ids["teacher"].append(store.append(bench_row(teacher_host, p50=4.0 + 0.1 * repeat,
                                                     repeat=repeat))["record_id"])
    ids["emulated"].append(store.append(bench_row(student_arm, device="qemu-tx2", target="jetson-tx2",
                                                  emulated=True, p50=0.5))["record_id"])
    return run, store.path, ids


_SCRIPT = re.compile(r'<script type="application/json"([^>]*)>\n(.*?)\n</script>', re.S)


def read_report(page: str) -> dict:
    """What a report page embeds: {"figures": {name: data}, "provenance": [...], "manifest": {...}}."""
    found: dict = {"figures": {}}
    for attributes, text in _SCRIPT.findall(page):
        data = json.loads(text.replace("<\\/", "</"))
        if 'class="figure-data"' in attributes:
            found["figures"][re.search(r'data-figure="([^"]+)"', attributes).group(1)] = data
        elif 'id="provenance-data"' in attributes:
            found["provenance"] = data
        elif 'id="report-manifest"' in attributes:
            found["manifest"] = data
    return found
