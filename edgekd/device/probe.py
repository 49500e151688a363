"""Probe a board: architecture, CPU, governor, memory, OS, glibc, free disk and power sensors.

Input: an open connection (never opened here), the device's exec prefix and sensors. Output:
:class:`ProbeResult`; :func:`check_fits` refuses a board whose userland architecture, C library (musl, or a
glibc older than the floor) or free cache disk does not fit a target and its upload.

Everything is read by **one** remote shell script (one round trip). The architecture is read
*through the exec prefix*: the script runs each known architecture's glibc dynamic loader
(``ld-linux-aarch64.so.1 --version`` ...) through the prefix, and the one that runs is the
architecture binaries will execute on — so a qemu-user board reports what it emulates, and the glibc
version printed is the one those binaries will load (for qemu, the ``-L`` sysroot's). A prefix-less
board runs every known loader natively and takes glibc from the one of its userland architecture
(``getconf`` as fallback).
For a qemu prefix, the loader is looked up under its ``-L`` sysroot (or ``QEMU_LD_PREFIX``).

The *userland* architecture (what ``arch`` reports) is read from an ELF header, not from ``uname -m``: a 64-bit
kernel can run a 32-bit userland (Raspberry Pi OS armhf on an aarch64 kernel) that cannot load 64-bit
binaries. Without a prefix it is the header of the running shell (``/proc/$$/exe``, else ``/bin/sh``), with
``getconf LONG_BIT`` as fallback; with a prefix it is the header of the loader that ran through it. A musl
board (``ld-musl-*.so.1``, no glibc loader) is reported as ``libc="musl"``.
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
    "i686": "/lib/ld-linux.so.2",
}

#: ELF ``(EI_CLASS, e_machine)`` -> architecture name (``uname -m`` spelling).
_ELF_ARCH = {(2, 62): "x86_64", (1, 62): "x32", (1, 3): "i686", (2, 183): "aarch64", (1, 40): "armv7l",
             (2, 243): "riscv64", (1, 243): "riscv32"}
#: A 64-bit kernel's 32-bit compat userland (``getconf LONG_BIT`` = 32).
_COMPAT32 = {"x86_64": "i686", "aarch64": "armv7l", "armv8l": "armv7l", "riscv64": "riscv32"}
_BITS = {"x86_64": 64, "aarch64": 64, "riscv64": 64, "x32": 32, "i686": 32, "armv7l": 32, "riscv32": 32}

_SCRIPT = r"""
prefix=$1; sysroot=$2; cache=$3; nload=$4; shift 4
kernel_arch=$(uname -m)
echo "kernel_arch=$kernel_arch"
echo "kernel=$(uname -r)"
elf_head() { od -An -tx1 -N20 "$1" 2>/dev/null | tr '\n' ' '; }
try_loader() {  # $1 arch $2 loader path
  for cand in "$sysroot$2" "$2"; do
    [ -n "$cand" ] && [ -e "$cand" ] || continue
    v=$(eval "$prefix" '"$cand"' --version 2>/dev/null | head -n 1)
    if [ -n "$v" ]; then
      echo "loader=$1|$v"
      [ -n "$prefix" ] && echo "userland_elf=$(elf_head "$cand")"
      return 0
    fi
  done
  return 1
}
i=0
while [ "$i" -lt "$nload" ]; do
  arch=${1%%=*}; ld=${1#*=}; shift
  i=$((i+1))
  if try_loader "$arch" "$ld" && [ -n "$prefix" ]; then break; fi
done
while [ "$i" -lt "$nload" ]; do shift; i=$((i+1)); done
if [ -z "$prefix" ]; then
  for exe in "/proc/$$/exe" /bin/sh; do
    h=$(elf_head "$exe"); if [ -n "$h" ]; then echo "userland_elf=$h"; break; fi
  done
  command -v getconf >/dev/null 2>&1 && echo "long_bit=$(getconf LONG_BIT 2>/dev/null)"
fi
for m in "$sysroot"/lib/ld-musl-*.so.1 /lib/ld-musl-*.so.1; do
  [ -e "$m" ] || continue
  v=$(eval "$prefix" '"$m"' 2>&1 | sed -n 's/^Version *//p' | head -n 1)
  if [ -n "$v" ]; then echo "musl=$v"; break; fi
  [ -z "$prefix" ] && { echo "musl=unknown"; break; }
done
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
    """What a board is. ``arch`` and ``glibc`` are those seen through the exec prefix; ``arch`` is the userland's
    (``userland_arch`` when it could be read, which may differ from ``kernel_arch``)."""

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
    userland_arch: str | None = None
    libc: str | None = None
    musl: str | None = None

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

    kernel_arch = one("kernel_arch")
    loaders = dict(line.partition("|")[::2] for line in values.get("loader", []))
    userland = _elf_arch(one("userland_elf"))
    if userland is None and not prefix:
        userland = _long_bit_arch(kernel_arch, one("long_bit"))
    arch = userland or (next(iter(loaders), None) if prefix else kernel_arch)
    glibc = _glibc_version(loaders[arch]) if arch in loaders else None
    if glibc is None and prefix and loaders:
        glibc = _glibc_version(next(iter(loaders.values())))
    if glibc is None and not prefix:
        glibc = _glibc_version(one("getconf_glibc") or "")
    musl = one("musl")
    libc = "glibc" if glibc else ("musl" if musl else None)
    mem = {k: _kb_to_mb(one(k)) for k in ("MemTotal", "MemAvailable")}
    cpu_count = one("cpu_count")
    disk = one("disk_free_kb")
    return ProbeResult(
        arch=arch, glibc=glibc, kernel_arch=kernel_arch, kernel=one("kernel"),
        cpu_model=one("cpu_model"), cpu_count=int(cpu_count) if cpu_count and cpu_count.isdigit() else None,
        governors=values.get("governor", []), mem_total_mb=mem["MemTotal"], mem_available_mb=mem["MemAvailable"],
        os=one("os"), disk_free_mb=round(int(disk) / 1024, 1) if disk and disk.isdigit() else None,
        sensors=sorted(set(values.get("sensor", []))), emulated=emulated, exec_prefix=list(prefix),
        userland_arch=userland, libc=libc, musl=musl if libc == "musl" else None,
    )


def _elf_arch(text: str | None) -> str | None:
    """The architecture of an ELF header given as hex bytes (``od -An -tx1``), None if not ELF/unknown."""
    try:
        head = bytes(int(word, 16) for word in (text or "").split())
    except ValueError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return _ELF_ARCH.get((head[4], machine))


def _long_bit_arch(kernel_arch: str | None, long_bit: str | None) -> str | None:
    """The userland architecture from ``getconf LONG_BIT`` and the kernel's (32 on a 64-bit kernel: compat)."""
    if not kernel_arch or long_bit not in ("32", "64"):
        return None
    if long_bit == "32" and _BITS.get(kernel_arch) == 64:
        return _COMPAT32.get(kernel_arch)
    return kernel_arch


def _glibc_version(text: str) -> str | None:
    match = re.search(r"(?:version|glibc|GLIBC)\s*(\d+\.\d+)", text)
    return match.group(1) if match else None


def _kb_to_mb(text: str | None) -> float | None:
    match = re.match(r"(\d+)", text or "")
    return round(int(match.group(1)) / 1024, 1) if match else None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def check_fits(result: ProbeResult, *, device: str, target: str, arch: str, glibc_floor: str | None,
               upload_bytes: int | None = None) -> None:
    """Refuse a board that cannot run the target's binaries, or cannot hold the upload.

    Args:
        upload_bytes: bytes about to be uploaded into the board cache (compared with its free disk when both
            are known; None skips the check).

    Raises:
        DeviceError: unknown or different (userland) architecture; musl where the target needs glibc; glibc
            older than the target's floor; less free disk in the cache than ``upload_bytes``.
    """
    if result.arch is None:
        raise DeviceError(
            f"device {device!r}: could not determine the architecture through exec prefix "
            f"{shlex.join(result.exec_prefix) or '(none)'}; is the prefix (e.g. qemu-user) installed on the board?"
        )
    if result.arch != arch:
        if (not result.exec_prefix and result.kernel_arch and _BITS.get(result.kernel_arch) == 64
                and _BITS.get(result.arch) == 32):
            raise DeviceError(
                f"device {device!r} runs a 32-bit {result.arch} userland on a 64-bit {result.kernel_arch} kernel, "
                f"but target {target!r} is {arch}: its binaries cannot load there; install a 64-bit OS image "
                "on the board or use another device"
            )
        raise DeviceError(
            f"device {device!r} runs {result.arch} binaries but target {target!r} is {arch}; "
            f"pick a {result.arch} target (edgekd device add {device} --target ... --replace) or another device"
        )
    if glibc_floor and result.libc == "musl":
        raise DeviceError(
            f"device {device!r} uses musl libc {result.musl or '(unknown version)'}, not glibc, but target "
            f"{target!r} needs glibc >= {glibc_floor} (the TVM runtime wheels are manylinux, i.e. glibc, builds); "
            "use a glibc-based OS image (Debian, Ubuntu, ...) on the board"
        )
    if glibc_floor and result.glibc and _version_tuple(result.glibc) < _version_tuple(glibc_floor):
        raise DeviceError(
            f"device {device!r} has glibc {result.glibc} but target {target!r} needs >= {glibc_floor}; "
            "use a target profile with a lower glibc_floor"
        )
    if upload_bytes is not None and result.disk_free_mb is not None and result.disk_free_mb * 1048576 < upload_bytes:
        raise DeviceError(
            f"device {device!r} has {result.disk_free_mb:.1f} MB free in its cache directory but the upload needs "
            f"{upload_bytes / 1048576:.1f} MB; free space on the board or point the device's cache_dir elsewhere"
        )
