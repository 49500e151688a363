"""Probe a board: architecture, CPU, governor, memory, OS, glibc, free disk and power sensors.

Input: an open connection (never opened here), the device's exec prefix and sensors. Output:
:class:`ProbeResult`; :func:`check_fits` refuses a board whose architecture or glibc does not fit a target.

Everything is read by **one** remote shell script (one round trip). The architecture is read
*through the exec prefix*: the script runs each known architecture's glibc dynamic loader
(``ld-linux-aarch64.so.1 --version`` ...) through the prefix, and the one that runs is the
architecture binaries will execute on — so a qemu-user board reports what it emulates, and the glibc
version printed is the one those binaries will load (for qemu, the ``-L`` sysroot's). A prefix-less
board uses ``uname -m`` and runs that architecture's loader for glibc (``getconf`` as fallback).
For a qemu prefix, the loader is looked up under its ``-L`` sysroot (or ``QEMU_LD_PREFIX``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field

from edgekd.device.sensors import DISCOVERY_GLOBS
from edgekd.errors import DeviceError

LOADERS = {
    "x86_64": "/lib64/ld-linux-x86-64.so.2",
    "aarch64": "/lib/ld-linux-aarch64.so.1",
    "armv7l": "/lib/ld-linux-armhf.so.3",
    "riscv64": "/lib/ld-linux-riscv64-lp64d.so.1",
}

_SCRIPT = r"""
prefix=$1; sysroot=$2; cache=$3; nload=$4; shift 4
kernel_arch=$(uname -m)
echo "kernel_arch=$kernel_arch"
echo "kernel=$(uname -r)"
try_loader() {  # $1 arch $2 loader path
  for cand in "$sysroot$2" "$2"; do
    [ -n "$cand" ] && [ -e "$cand" ] || continue
    v=$(eval "$prefix" '"$cand"' --version 2>/dev/null | head -n 1)
    if [ -n "$v" ]; then echo "loader=$1|$v"; return 0; fi
  done
  return 1
}
i=0
while [ "$i" -lt "$nload" ]; do
  arch=${1%%=*}; ld=${1#*=}; shift
  i=$((i+1))
  if [ -z "$prefix" ] && [ "$arch" != "$kernel_arch" ]; then continue; fi
  try_loader "$arch" "$ld" && break
done
while [ "$i" -lt "$nload" ]; do shift; i=$((i+1)); done
command -v getconf >/dev/null 2>&1 && echo "getconf_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null)"
cpu=$(grep -m1 -E '^(model name|Model|Hardware|cpu model)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)
[ -z "$cpu" ] && command -v lscpu >/dev/null 2>&1 && cpu=$(lscpu | grep -m1 'Model name' | cut -d: -f2-)
echo "cpu_model=$cpu"
echo "cpu_count=$(getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
  [ -r "$g" ] && read -r gv < "$g" && echo "governor=$gv"
done
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | sed 's/: */=/'
[ -r /etc/os-release ] && . /etc/os-release && echo "os=${PRETTY_NAME:-$NAME}"
d=$cache; while [ -n "$d" ] && [ ! -d "$d" ]; do nd=$(dirname "$d"); [ "$nd" = "$d" ] && break; d=$nd; done
[ -d "$d" ] || d=.
echo "disk_free_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
for spec in "$@"; do
  case $spec in
    file:*) [ -e "${spec#file:}" ] && echo "sensor=${spec#file:}" ;;
    cmd:*) c=${spec#cmd:}; command -v "${c%% *}" >/dev/null 2>&1 && echo "sensor=$c" ;;
    glob:*) for f in ${spec#glob:}; do [ -e "$f" ] && echo "sensor=$f"; done ;;
  esac
done
command -v vcgencmd >/dev/null 2>&1 && echo "sensor=vcgencmd"
exit 0
"""


@dataclass
class ProbeResult:
    """What a board is. ``arch`` and ``glibc`` are those seen through the exec prefix."""

    arch: str | None
    glibc: str | None
    kernel_arch: str | None
    kernel: str | None
    cpu_model: str | None
    cpu_count: int | None
    governors: list[str] = field(default_factory=list)
    mem_total_mb: float | None = None
    mem_available_mb: float | None = None
    os: str | None = None
    disk_free_mb: float | None = None
    sensors: list[str] = field(default_factory=list)
    emulated: bool = False
    exec_prefix: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def governor(self) -> str:
        """One word: the governor if all CPUs agree, ``mixed(...)`` otherwise, ``unknown`` when absent."""
        kinds = sorted(set(self.governors))
        if not kinds:
            return "unknown"
        return kinds[0] if len(kinds) == 1 else f"mixed({','.join(kinds)})"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["governor"] = self.governor
        return data


def sysroot_of(prefix: list[str]) -> str:
    """The qemu-user sysroot named by ``-L DIR`` or ``QEMU_LD_PREFIX=DIR`` in an exec prefix ('' if none)."""
    for i, word in enumerate(prefix):
        if word == "-L" and i + 1 < len(prefix):
            return prefix[i + 1].rstrip("/")
        if word.startswith("QEMU_LD_PREFIX="):
            return word.split("=", 1)[1].rstrip("/")
    return ""


def probe(conn, *, exec_prefix: list[str] | None = None, cache_dir: str = ".", sensor_specs: list[str] = (),
          emulated: bool = False) -> ProbeResult:
    """Read the board's facts in one round trip.

    Args:
        conn: an SSH or local connection (opened by the caller or lazily by ``run``).
        exec_prefix: the device's exec prefix (default: the connection's).
        cache_dir: the board cache directory (free disk is measured there).
        sensor_specs: sampler specs (``file:PATH``/``cmd:COMMAND``) of configured sensors to look for.
        emulated: the device is marked emulated.

    Raises:
        DeviceError: the probe script failed.
    """
    prefix = list(conn.exec_prefix if exec_prefix is None else exec_prefix)
    loaders = [f"{arch}={path}" for arch, path in LOADERS.items()]
    globs = [f"glob:{g}" for g in DISCOVERY_GLOBS]
    args = [shlex.join(prefix), sysroot_of(prefix), cache_dir, str(len(loaders)), *loaders, *sensor_specs, *globs]
    result = conn.check(["sh", "-c", _SCRIPT, "sh", *args], what="probe", timeout=60)
    parsed = parse(result.stdout, prefix, emulated or bool(prefix))
    parsed.seconds = result.seconds
    return parsed


def parse(text: str, prefix: list[str], emulated: bool) -> ProbeResult:
    """Turn the probe script's ``key=value`` lines into a :class:`ProbeResult`."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())

    def one(key: str) -> str | None:
        return values.get(key, [None])[0] or None

    arch, glibc = None, None
    if loader := one("loader"):
        arch, _, version_line = loader.partition("|")
        glibc = _glibc_version(version_line)
    if arch is None and not prefix:
        arch = one("kernel_arch")
    if glibc is None and not prefix:
        glibc = _glibc_version(one("getconf_glibc") or "")
    mem = {k: _kb_to_mb(one(k)) for k in ("MemTotal", "MemAvailable")}
    cpu_count = one("cpu_count")
    disk = one("disk_free_kb")
    return ProbeResult(
        arch=arch, glibc=glibc, kernel_arch=one("kernel_arch"), kernel=one("kernel"),
        cpu_model=one("cpu_model"), cpu_count=int(cpu_count) if cpu_count and cpu_count.isdigit() else None,
        governors=values.get("governor", []), mem_total_mb=mem["MemTotal"], mem_available_mb=mem["MemAvailable"],
        os=one("os"), disk_free_mb=round(int(disk) / 1024, 1) if disk and disk.isdigit() else None,
        sensors=sorted(set(values.get("sensor", []))), emulated=emulated, exec_prefix=list(prefix),
    )


def _glibc_version(text: str) -> str | None:
    match = re.search(r"(?:version|glibc|GLIBC)\s*(\d+\.\d+)", text)
    return match.group(1) if match else None


def _kb_to_mb(text: str | None) -> float | None:
    match = re.match(r"(\d+)", text or "")
    return round(int(match.group(1)) / 1024, 1) if match else None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def check_fits(result: ProbeResult, *, device: str, target: str, arch: str, glibc_floor: str | None) -> None:
    """Refuse a board that cannot run the target's binaries.

    Raises:
        DeviceError: unknown or different architecture; glibc older than the target's floor.
    """
    if result.arch is None:
        raise DeviceError(
            f"device {device!r}: could not determine the architecture through exec prefix "
            f"{shlex.join(result.exec_prefix) or '(none)'}; is the prefix (e.g. qemu-user) installed on the board?"
        )
    if result.arch != arch:
        raise DeviceError(
            f"device {device!r} runs {result.arch} binaries but target {target!r} is {arch}; "
            f"pick a {result.arch} target (edgekd device add {device} --target ... --replace) or another device"
        )
    if glibc_floor and result.glibc and _version_tuple(result.glibc) < _version_tuple(glibc_floor):
        raise DeviceError(
            f"device {device!r} has glibc {result.glibc} but target {target!r} needs >= {glibc_floor}; "
            "use a target profile with a lower glibc_floor"
        )
