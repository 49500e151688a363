"""Power sampling over a second SSH channel against a fake INA3221 sensor (1200 mW idle, 3400 mW busy)."""

from __future__ import annotations

import pytest

from edgekd.config.target import PowerSensor
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.testing.boards import stand_in_artifact


def test_idle_running_power_and_energy(make_device, sshd, fake_sensor, tmp_path):
    sensor = PowerSensor(rail="VDD_IN", kind="sysfs", quantity="power", unit="mW",
                         path=str(fake_sensor.dir / "in_power0_input"))
    device = make_device(sshd, "powered", sensors=[sensor])
    artifact = stand_in_artifact(tmp_path / "art", seconds=1.5, runs=30)
    options = BenchOptions(runs=30, min_seconds=0.0, warmup_seconds=0.0, idle_seconds=0.8, sample_period_s=0.05)
    with connect(device) as conn:
        [result] = bench(conn, device, artifact, options)
    power = result.power
    assert power.rail == "VDD_IN"
    assert power.idle_mw == pytest.approx(1200, rel=0.01)
    assert power.run_mw == pytest.approx(3400, rel=0.01)
    latency = result.runner["latency_ms"]["mean"]
    assert power.energy_per_inference_mj == pytest.approx((3400 - 1200) * latency / 1e6, rel=0.03)
    assert power.rails["VDD_IN"].samples_run >= 10 and power.rails["VDD_IN"].samples_idle >= 5

    # the trace is kept with the row (downsampled) and the report draws it: idle level, then busy in the window
    row = result.to_row()
    trace, (start, end) = row["power_trace"], row["power_run_window_s"]
    assert 10 <= len(trace) <= 240 and trace[0][0] == 0.0 and 0 < start < end <= trace[-1][0] + 0.2
    busy = [mw for t, mw in trace if start + 0.2 < t < end - 0.1]
    idle = [mw for t, mw in trace if t < start - 0.2]
    assert busy and idle and min(busy) > 3000 and max(idle) < 1500

    from edgekd.results.report import build_report
    from edgekd.results.store import ResultsStore

    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(row)
    report = build_report(store.path, tmp_path / "report")
    assert "power_trace" in report.figures and (tmp_path / "report" / "power_trace.png").stat().st_size > 0
