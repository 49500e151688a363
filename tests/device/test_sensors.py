"""Sensor conversion and power summaries (pure logic; the real sampler runs in integration tests)."""

from __future__ import annotations

import pytest

from edgekd.config.target import PowerSensor
from edgekd.device.local import LocalConnection
from edgekd.device.sensors import Sample, Sampler, parse_samples, parse_vcgencmd, rail_series, summarize

VCGEN = """
     3V7_WL_SW_A current(0)=0.00000000A
     3V3_SYS_A current(1)=0.06832020A
     3V7_WL_SW_V volt(8)=3.74459800V
     3V3_SYS_V volt(9)=3.31166200V
"""


def sysfs(rail, quantity, unit, path="/x"):
    return PowerSensor(rail=rail, kind="sysfs", quantity=quantity, unit=unit, path=path)


def test_vcgencmd_sums_v_times_i():
    assert parse_vcgencmd(VCGEN) == pytest.approx(0.06832020 * 3.31166200)


def test_parse_samples_keeps_complete_ones():
    samples = parse_samples("S 10.0\nV 0 1200\nS 10.05\nV 0 3400\nS 10.1\n")
    assert [s.t for s in samples] == [10.0, 10.05, 10.1]
    assert samples[1].raw == {0: "3400"}


def test_android_current_times_voltage():
    sensors = [sysfs("BATTERY_CURRENT", "current", "uA"), sysfs("BATTERY_VOLTAGE", "voltage", "uV")]
    series = rail_series([Sample(1.0, {0: "-500000", 1: "4000000"})], sensors)
    assert series == {"BATTERY": [(1.0, pytest.approx(2000.0))]}  # 0.5 A x 4 V = 2 W


def test_rapl_energy_is_differentiated():
    sensors = [sysfs("PACKAGE", "energy", "uJ")]
    samples = [Sample(0.0, {0: "0"}), Sample(0.5, {0: "1000000"}), Sample(1.0, {0: "2000000"})]
    assert [v for _, v in rail_series(samples, sensors)["PACKAGE"]] == [pytest.approx(2000.0)] * 2


def test_summary_energy():
    sensors = [sysfs("VDD_IN", "power", "mW")]
    samples = [Sample(t / 10, {0: "1200" if t < 10 else "3400"}) for t in range(30)]
    report = summarize(samples, sensors, idle_window=(0, 0.95), run_window=(1.0, 3.0), latency_ms=5.0,
                       period_s=0.1)
    assert (report.idle_mw, report.run_mw) == (1200, 3400)
    assert report.energy_per_inference_mj == pytest.approx(2200 * 5.0 / 1e6)


def test_local_sampler_reads_files(tmp_path):
    path = tmp_path / "in_power0_input"
    path.write_text("1234\n")
    with Sampler(LocalConnection(), [sysfs("VDD_IN", "power", "mW", str(path))], period_s=0.01) as sampler:
        assert sampler.wait_first()
    assert sampler.samples and sampler.samples[0].raw[0] == "1234"
