"""The plain-C runner: JSON contract on the host, AArch64 + glibc floor + qemu for jetson-tx2."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
from compile_helpers import read_float32
from support import require, require_executable

from edgekd.compile import read_manifest
from edgekd.config.target import load_target

TOLERANCE = 1e-4
QEMU_SYSROOT = Path("/usr/aarch64-linux-gnu")
QUICK = ["--warmup-runs", "1", "--warmup-seconds", "0", "--runs", "5", "--min-seconds", "0"]


def _run(artifact: Path, *extra: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    manifest = read_manifest(artifact)
    shape = ",".join(map(str, manifest.input.shape))
    command = [*(prefix or []), str(artifact / manifest.runner), "--model", str(artifact / manifest.library),
               "--shape", shape, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_host_runner_json_contract(host_artifact, tmp_path):
    out = tmp_path / "out.bin"
    result = _run(host_artifact, "--input", str(host_artifact / "input.bin"), "--threads", "1",
                  "--affinity", "0", "--output-file", str(out), *QUICK)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"runner_version", "tvm_runtime", "threads", "affinity", "init_ms", "first_inference_ms",
                           "warmup_runs", "runs", "latency_ms", "rss_kb", "output", "timestamps"}
    assert report["threads"] == 1 and report["affinity"] == [0] and report["runs"] >= 5
    assert report["tvm_runtime"] == read_manifest(host_artifact).versions["tvm"]
    assert set(report["latency_ms"]) == {"mean", "std", "min", "p50", "p90", "p95", "p99", "max"}
    latency = report["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    rss = report["rss_kb"]
    assert 0 < rss["before_load"] <= rss["peak"] and rss["after_load"] <= rss["peak"]
    assert report["timestamps"]["timed_start_unix"] <= report["timestamps"]["timed_end_unix"]
    reference = read_float32(host_artifact / "reference_output.bin", [1, 10])
    np.testing.assert_allclose(np.array(report["output"]["values"], np.float32).reshape(1, 10), reference,
                               atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(read_float32(out, [1, 10]), reference, atol=TOLERANCE, rtol=0)
    assert report["output"] == {"shape": [1, 10], "file": str(out), "values": report["output"]["values"]}


def test_host_runner_meets_minimum_runs_and_time(host_artifact):
    result = _run(host_artifact, "--seed", "3", "--runs", "50", "--min-seconds", "0.3", "--warmup-seconds", "0.1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["runs"] >= 50 and report["warmup_runs"] >= 1
    span = report["timestamps"]["timed_end_unix"] - report["timestamps"]["timed_start_unix"]
    assert span >= 0.3


def test_runner_errors_are_one_line_and_nonzero(host_artifact, tmp_path):
    missing = _run(host_artifact, "--input", str(tmp_path / "nope.bin"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "nope.bin" in missing.stderr
    not_a_model = tmp_path / "model.so"
    not_a_model.write_bytes(b"garbage")
    manifest = read_manifest(host_artifact)
    result = subprocess.run([str(host_artifact / manifest.runner), "--model", str(not_a_model), "--shape",
                             "1,3,32,32"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("edgekd-runner: error: loading model library:")
    wrong_shape = _run(host_artifact, "--input", str(host_artifact / "input.bin"), "--shape", "1,3,16,16")
    assert wrong_shape.returncode == 3 and "does not match --shape" in wrong_shape.stderr
    assert wrong_shape.stderr.count("\n") == 1 and wrong_shape.stderr.startswith("edgekd-runner: input error:")
    usage = _run(host_artifact, "--bogus", "1")
    assert usage.returncode == 2 and "unknown option" in usage.stderr


def _elf_machine(path: Path) -> str:
    header = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True, check=True).stdout
    return re.search(r"Machine:\s+(.+)", header).group(1).strip()


def _max_glibc(path: Path) -> tuple[int, int]:
    versions = subprocess.run(["readelf", "-V", "--wide", str(path)], capture_output=True, text=True,
                              check=True).stdout
    found = [tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", versions)]
    return max(((v[0], v[1]) for v in found), default=(0, 0))


def test_aarch64_binaries_respect_the_glibc_floor(tx2_artifact):
    require_executable("readelf")
    manifest = read_manifest(tx2_artifact)
    floor = load_target("jetson-tx2").glibc_floor_tuple()
    binaries = [manifest.library, manifest.runner, *manifest.runtime_libs]
    assert len(binaries) == 4
    for name in binaries:
        assert _elf_machine(tx2_artifact / name) == "AArch64", name
        assert _max_glibc(tx2_artifact / name) <= floor, name


def test_aarch64_artifact_runs_under_qemu(tx2_artifact, tmp_path):
    qemu = require_executable("qemu-aarch64")
    require(QEMU_SYSROOT.is_dir(), f"aarch64 glibc sysroot {QEMU_SYSROOT}")
    out = tmp_path / "out.bin"
    result = _run(tx2_artifact, "--input", str(tx2_artifact / "input.bin"), "--output-file", str(out), *QUICK,
                  prefix=[qemu, "-L", str(QEMU_SYSROOT)])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reference = read_float32(tx2_artifact / "reference_output.bin", [1, 10])
    np.testing.assert_allclose(read_float32(out, [1, 10]), reference, atol=TOLERANCE, rtol=0)
    assert np.abs(reference).max() > 1e-3
    seeded = _run(tx2_artifact, "--seed", "7", *QUICK, prefix=[qemu, "-L", str(QEMU_SYSROOT)])
    assert json.loads(seeded.stdout)["output"]["values"] != report["output"]["values"]


def test_runner_is_copied_not_linked_into_the_cache(tx2_artifact):
    readelf = require_executable("readelf")
    assert not (tx2_artifact / "edgekd-runner").is_symlink()
    dynamic = subprocess.run([readelf, "-d", str(tx2_artifact / "edgekd-runner")], capture_output=True, text=True,
                             check=True).stdout
    assert "RUNPATH" in dynamic, dynamic
