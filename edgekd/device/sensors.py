"""Power sensors: discovery, a sampler that runs on the board, and conversion to per-rail milliwatts.

Input: :class:`~edgekd.config.target.PowerSensor` entries (the device's ``sensors``, else the target
profile's ``power_sensors``) and a connection. The sampler is a POSIX shell loop started on a
*second channel* of the connection (a subprocess for the ``local`` device); it prints
``S <unix time>`` followed by one ``V <i> <raw>`` line per sensor every period, reading sysfs files with
the shell's ``read`` builtin. Output: timestamped :class:`Sample` s in mW per rail, summarised by
:func:`summarize` against the runner's ``timestamps`` into idle power, running power and energy per
inference (``(P_run - P_idle) x latency``, on the primary rail — the first power rail, e.g. VDD_IN).

Readers (by profile entry):

* INA3221 sysfs (Jetson TX2): ``in_powerN_input``, quantity power, unit mW.
* hwmon (Jetson Orin): ``inN_input`` (voltage, mV) and ``currN_input`` (current, mA) of one rail.
* ``vcgencmd pmic_read_adc`` (Raspberry Pi 5): command; P = sum over rails of V x I.
* Android battery: ``current_now`` (uA) and ``voltage_now`` (uV); P = |I| x V.
* RAPL (x86): ``energy_uj`` counter; P = dE/dt.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import asdict, dataclass, field

from edgekd.config.target import PowerSensor

_TO_MILLI = {"W": 1e3, "mW": 1.0, "uW": 1e-3, "A": 1e3, "mA": 1.0, "uA": 1e-3, "V": 1e3, "mV": 1.0, "uV": 1e-3}

SAMPLER = r"""
period=$1; count=$2; shift 2
n=0
while [ "$n" -lt "$count" ]; do
  printf 'S %s\n' "$(date +%s.%N)" || exit 0
  i=0
  for spec in "$@"; do
    v=nan
    case $spec in
      file:*) read -r v < "${spec#file:}" 2>/dev/null || v=nan ;;
      cmd:*) v=$(sh -c "${spec#cmd:}" 2>/dev/null | tr '\n' ' ') ;;
    esac
    printf 'V %s %s\n' "$i" "$v" || exit 0
    i=$((i+1))
  done
  n=$((n+1))
  sleep "$period"
done
"""

# Known sensor locations for discovery (probe): glob -> description.
DISCOVERY_GLOBS = {
    "/sys/bus/i2c/drivers/ina3221x/*/iio:device*/in_power*_input": "ina3221",
    "/sys/bus/i2c/devices/*/hwmon/hwmon*/in*_label": "hwmon",
    "/sys/class/power_supply/battery/current_now": "android-battery",
    "/sys/class/powercap/intel-rapl:*/energy_uj": "rapl",
}


@dataclass
class Sample:
    """One sampling instant on the board clock: raw values by sensor index."""

    t: float
    raw: dict[int, str] = field(default_factory=dict)


@dataclass
class RailPower:
    idle_mw: float | None
    run_mw: float | None
    samples_idle: int
    samples_run: int


@dataclass
class PowerReport:
    """Mean power per rail while idle and during the timed runs, and energy per inference on ``rail``."""

    rail: str | None
    idle_mw: float | None
    run_mw: float | None
    energy_per_inference_mj: float | None
    rails: dict[str, RailPower]
    sample_period_s: float
    #: the primary rail over the whole bench, ``[(s since the first sample, mW), ...]`` (at most TRACE_POINTS),
    #: and the timed window on the same clock: what the report draws
    trace: list[tuple[float, float]] = field(default_factory=list)
    run_window_s: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


TRACE_POINTS = 240  # a power trace kept with a result row is downsampled to this many points


def sensor_spec(sensor: PowerSensor) -> str:
    """The sampler argument for one sensor (``file:PATH`` or ``cmd:COMMAND``)."""
    return f"file:{sensor.path}" if sensor.kind == "sysfs" else f"cmd:{sensor.command}"


def sampler_command(sensors: list[PowerSensor], period_s: float = 0.05, max_seconds: float = 900) -> list[str]:
    """The word list that starts the sampler loop (arguments are quoted by the connection)."""
    count = max(1, int(max_seconds / period_s))
    return ["sh", "-c", SAMPLER, "sh", f"{period_s:g}", str(count), *[sensor_spec(s) for s in sensors]]


class Sampler:
    """Sample ``sensors`` on the board over a second channel while the caller runs something.

    Usage::

        with Sampler(conn, sensors) as sampler:
            sampler.wait_first()
            ...  # idle window, then the run
        samples = sampler.samples
    """

    def __init__(self, conn, sensors: list[PowerSensor], period_s: float = 0.05) -> None:
        self.conn = conn
        self.sensors = sensors
        self.period_s = period_s
        self.samples: list[Sample] = []
        self._proc = None

    def __enter__(self) -> Sampler:
        self._proc = self.conn.spawn(sampler_command(self.sensors, self.period_s))
        return self

    def wait_first(self, timeout: float = 10.0) -> bool:
        """Block until the first complete sample arrived (the loop is running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(parse_samples(self._proc.peek())) >= 1 or self._proc.finished():
                return not self._proc.finished()
            time.sleep(0.01)
        return False

    def __exit__(self, *exc: object) -> None:
        self.samples = parse_samples(self._proc.stop())


def parse_samples(text: str) -> list[Sample]:
    """Parse the sampler's ``S``/``V`` lines; a sample is kept only once complete (next ``S`` or end)."""
    samples: list[Sample] = []
    current: Sample | None = None
    for line in text.splitlines():
        if line.startswith("S "):
            try:
                current = Sample(float(line[2:].strip()))
            except ValueError:
                current = None
                continue
            samples.append(current)
        elif line.startswith("V ") and current is not None:
            parts = line[2:].split(" ", 1)
            if parts[0].isdigit():
                current.raw[int(parts[0])] = parts[1].strip() if len(parts) > 1 else ""
    return samples


def parse_vcgencmd(text: str) -> float | None:
    """Raspberry Pi 5 ``vcgencmd pmic_read_adc``: sum of V x I over rails present with both, in W."""
    amps = dict(re.findall(r"(\S+)_A\s+current\(\d+\)=([0-9.eE+-]+)A", text))
    volts = dict(re.findall(r"(\S+)_V\s+volt\(\d+\)=([0-9.eE+-]+)V", text))
    rails = set(amps) & set(volts)
    return sum(float(amps[r]) * float(volts[r]) for r in rails) if rails else None


def _number(raw: str) -> float | None:
    match = re.search(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", raw or "")
    return float(match.group()) if match else None


def _stem(rail: str) -> str:
    return re.sub(r"_?(CURRENT|VOLTAGE|CURR|VOLT|I|V)$", "", rail.upper())


def rail_series(samples: list[Sample], sensors: list[PowerSensor]) -> dict[str, list[tuple[float, float]]]:
    """Convert raw samples to ``{rail: [(t, mW), ...]}``.

    Power sensors convert by unit; energy counters are differentiated; a current and a voltage sensor
    with the same rail stem (``BATTERY_CURRENT``/``BATTERY_VOLTAGE``) combine into one rail ``|I| x V``.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    pairs: dict[str, dict[str, int]] = {}
    for index, sensor in enumerate(sensors):
        if sensor.quantity == "power":
            out[sensor.rail] = _power(samples, index, sensor)
        elif sensor.quantity == "energy":
            out[sensor.rail] = _derivative(samples, index, sensor)
        else:
            pairs.setdefault(_stem(sensor.rail), {})[sensor.quantity] = index
    for stem, members in pairs.items():
        if {"current", "voltage"} <= set(members):
            out[stem] = _current_times_voltage(samples, sensors, members["current"], members["voltage"])
    return out


def _power(samples: list[Sample], index: int, sensor: PowerSensor) -> list[tuple[float, float]]:
    series = []
    for sample in samples:
        raw = sample.raw.get(index, "")
        value = parse_vcgencmd(raw) if sensor.kind == "command" and "current(" in raw else _number(raw)
        if value is not None and math.isfinite(value):
            series.append((sample.t, value * _TO_MILLI[sensor.unit]))
    return series


def _derivative(samples: list[Sample], index: int, sensor: PowerSensor) -> list[tuple[float, float]]:
    points = [(s.t, _number(s.raw.get(index, ""))) for s in samples]
    points = [(t, v) for t, v in points if v is not None]
    scale = {"uJ": 1e-3, "mJ": 1.0, "J": 1e3}.get(sensor.unit, 1e-3)  # -> mJ
    series = []
    for (t0, e0), (t1, e1) in zip(points, points[1:], strict=False):
        if t1 > t0 and e1 >= e0:  # skip counter wrap
            series.append(((t0 + t1) / 2, (e1 - e0) * scale / (t1 - t0)))  # mJ/s = mW
    return series


def _current_times_voltage(samples, sensors, i_idx: int, v_idx: int) -> list[tuple[float, float]]:
    i_unit, v_unit = sensors[i_idx].unit, sensors[v_idx].unit
    series = []
    for sample in samples:
        current, volt = _number(sample.raw.get(i_idx, "")), _number(sample.raw.get(v_idx, ""))
        if current is not None and volt is not None:
            series.append((sample.t, abs(current) * _TO_MILLI[i_unit] * volt * _TO_MILLI[v_unit] / 1e3))
    return series


SETTLE_S = 0.15  # power sensors average over their conversion window and clocks ramp up: skip a window's start


def _mean_in(series: list[tuple[float, float]], start: float, end: float) -> tuple[float | None, int]:
    values = [v for t, v in series if start <= t <= end]
    return (statistics.fmean(values) if values else None), len(values)


def _settled(window: tuple[float, float]) -> tuple[float, float]:
    """The window without its first :data:`SETTLE_S` (kept whole when it is too short to spare that)."""
    start, end = window
    return (start + SETTLE_S, end) if end - start >= 4 * SETTLE_S else window


def summarize(
    samples: list[Sample],
    sensors: list[PowerSensor],
    *,
    idle_window: tuple[float, float],
    run_window: tuple[float, float],
    latency_ms: float | None,
    period_s: float,
) -> PowerReport:
    """Mean power per rail in the idle and the timed window; energy per inference on the primary rail.

    Each window's first :data:`SETTLE_S` seconds are left out when the window is at least four times that long:
    a sensor's reading lags the load by its averaging window (the INA3221 averages up to ~100 ms) and the CPU
    clock ramps up after idling, so samples right after a transition mix the two states.

    Args:
        samples: from :class:`Sampler` (board clock).
        sensors: the sampled sensors, in sampler order.
        idle_window: (start, end) unix seconds of the idle window, board clock.
        run_window: the runner's ``timestamps`` (``timed_start_unix``, ``timed_end_unix``).
        latency_ms: mean latency of one inference.
        period_s: the sampling period (reported).
    """
    series = rail_series(samples, sensors)
    rails = {}
    for rail, points in series.items():
        idle, n_idle = _mean_in(points, *_settled(idle_window))
        run, n_run = _mean_in(points, *_settled(run_window))
        rails[rail] = RailPower(idle, run, n_idle, n_run)
    primary = next(iter(rails), None)
    idle_mw = rails[primary].idle_mw if primary else None
    run_mw = rails[primary].run_mw if primary else None
    energy = None
    if idle_mw is not None and run_mw is not None and latency_ms is not None:
        energy = (run_mw - idle_mw) * latency_ms / 1e6  # mW x ms = uJ -> mJ
    points = series.get(primary, []) if primary else []
    origin = points[0][0] if points else 0.0
    step = max(1, -(-len(points) // TRACE_POINTS))
    trace = [(round(t - origin, 4), round(mw, 2)) for t, mw in points[::step]]
    window = (round(run_window[0] - origin, 4), round(run_window[1] - origin, 4)) if points else None
    return PowerReport(primary, idle_mw, run_mw, energy, rails, period_s, trace, window)


DISCOVER = r"""
for pattern in "$@"; do
  for f in $pattern; do [ -e "$f" ] && echo "found=$f"; done
done
command -v vcgencmd >/dev/null 2>&1 && echo "found=vcgencmd"
exit 0
"""
