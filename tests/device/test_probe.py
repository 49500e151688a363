"""Probe parsing and the fit check (the real script runs against sshd/qemu in integration tests)."""

from __future__ import annotations

import platform

import pytest

from edgekd.device.local import LocalConnection
from edgekd.device.probe import check_fits, parse, probe, sysroot_of
from edgekd.errors import DeviceError

OUT = """kernel_arch=x86_64
kernel=6.1
loader=aarch64|ld.so (Debian GLIBC 2.36-9) stable release version 2.36.
cpu_model= AMD EPYC
cpu_count=2
governor=performance
governor=powersave
MemTotal=2048000 kB
os=Debian GNU/Linux 12 (bookworm)
disk_free_kb=1048576
sensor=/sys/x
"""


def test_parse_emulated():
    result = parse(OUT, ["qemu-aarch64"], emulated=True)
    assert (result.arch, result.glibc, result.kernel_arch) == ("aarch64", "2.36", "x86_64")
    assert result.governor == "mixed(performance,powersave)"
    assert result.mem_total_mb == 2000.0 and result.disk_free_mb == 1024.0 and result.sensors == ["/sys/x"]


def test_sysroot_of():
    assert sysroot_of(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu/"]) == "/usr/aarch64-linux-gnu"
    assert sysroot_of(["env", "QEMU_LD_PREFIX=/s", "qemu-aarch64"]) == "/s"
    assert sysroot_of([]) == ""


def test_check_fits_arch_and_glibc():
    result = parse(OUT, ["qemu-aarch64"], emulated=True)
    check_fits(result, device="b", target="t", arch="aarch64", glibc_floor="2.27")
    with pytest.raises(DeviceError, match="runs aarch64 binaries but target 't' is x86_64"):
        check_fits(result, device="b", target="t", arch="x86_64", glibc_floor=None)
    with pytest.raises(DeviceError, match="glibc 2.36 but target 't' needs >= 2.40"):
        check_fits(result, device="b", target="t", arch="aarch64", glibc_floor="2.40")


def test_probe_local_host():
    result = probe(LocalConnection())
    assert result.arch == platform.machine() and result.glibc and not result.emulated
