"""compile -> bench -> results row over the loopback sshd, for the host target (x86_64 board) and for
jetson-tx2 (aarch64) on the qemu-user board. Real TVM, real runner, real SSH, real qemu."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.results.store import ResultsStore

pytestmark = pytest.mark.slow
FAST = BenchOptions(runs=20, min_seconds=0.2, warmup_seconds=0.1, timeout_s=120, idle_seconds=0.0)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10)).eval()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from edgekd.compile.api import CompileOptions, compile_model

    model = _model()
    with torch.no_grad():  # non-vacuous: the output depends on the input
        x = torch.randn(1, 3, 32, 32)
        assert (model(x) - model(torch.zeros_like(x))).abs().max() > 1e-3
    root = tmp_path_factory.mktemp("artifacts")
    options = CompileOptions(input_shape=(1, 3, 32, 32), onnx=False)
    return {t: compile_model(model, t, root / t, options).path for t in ("host", "jetson-tx2")}


def test_host_target_on_x86_board(artifacts, x86_board, sshd):
    store = ResultsStore()
    with connect(x86_board) as conn:
        [first] = bench(conn, x86_board, artifacts["host"], FAST)
        writes = len(sshd.sftp_writes())
        [second] = bench(conn, x86_board, artifacts["host"], FAST)
    assert first.max_abs_diff < 1e-4 and first.top1_agree == 1.0 and not first.emulated
    assert second.push.uploaded == [] and len(sshd.sftp_writes()) == writes  # nothing uploaded
    store.append(first.to_row())
    row = store.frame().iloc[-1]
    assert row["device"] == "x86" and row["latency_valid"] and row["latency_ms_p50"] > 0
    assert row["version_tvm"] and row["threads"] >= 1


def test_aarch64_target_on_emulated_board(artifacts, arm_board):
    with connect(arm_board) as conn:
        [result] = bench(conn, arm_board, artifacts["jetson-tx2"], FAST.__class__(**{**FAST.__dict__, "threads": 1}))
    assert result.arch == "aarch64" and result.emulated and not result.latency_valid
    assert result.max_abs_diff < 1e-4 and result.top1_agree == 1.0
    doc = result.to_json()
    assert doc["latency_ms"] is None and doc["emulated_time_ms"]["mean"] > 0
    store = ResultsStore()
    store.append(result.to_row())
    row = store.frame().iloc[-1]
    assert bool(row["emulated"]) and not bool(row["latency_valid"])
    assert row["latency_ms_mean"] != row["latency_ms_mean"] and row["emulated_time_ms_mean"] > 0  # NaN: no latency


def test_emulated_summary_never_says_latency(artifacts, arm_board):
    from edgekd.cli.device_cmd import summary_text

    with connect(arm_board) as conn:
        [result] = bench(conn, arm_board, artifacts["jetson-tx2"], FAST.__class__(**{**FAST.__dict__, "threads": 1}))
    text = summary_text(result)
    assert "emulated: timing not meaningful" in text and "Inference timings" not in text


def test_power_with_the_real_runner(artifacts, make_device, sshd, fake_sensor):
    from edgekd.config.target import PowerSensor

    sensor = PowerSensor(rail="VDD_IN", kind="sysfs", quantity="power", unit="mW",
                         path=str(fake_sensor.dir / "in_power0_input"))
    device = make_device(sshd, "powered", sensors=[sensor])
    options = BenchOptions(runs=50, min_seconds=1.0, warmup_seconds=0.3, idle_seconds=0.8, threads=1)
    with connect(device) as conn:
        [result] = bench(conn, device, artifacts["host"], options)
    power, latency = result.power, result.runner["latency_ms"]["mean"]
    assert power.idle_mw == pytest.approx(1200, rel=0.01) and power.run_mw == pytest.approx(3400, rel=0.01)
    assert power.energy_per_inference_mj == pytest.approx((3400 - 1200) * latency / 1e6, rel=0.03)
