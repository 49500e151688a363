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


# ELF identification bytes 0..19 as the probe script prints them (od -An -tx1 -N20): class at 4, machine at 18.
ELF_ARM32 = "7f 45 4c 46 01 01 01 00 00 00 00 00 00 00 00 00 03 00 28 00"
ELF_X86_64 = "7f 45 4c 46 02 01 01 00 00 00 00 00 00 00 00 00 03 00 3e 00"

# A Raspberry Pi OS style board: 64-bit kernel, 32-bit (armhf) userland, no aarch64 loader.
ARM32_ON_ARM64 = f"""kernel_arch=aarch64
kernel=6.6.31-v8+
loader=armv7l|ld.so (Debian GLIBC 2.36-9+rpt2) stable release version 2.36.
userland_elf={ELF_ARM32}
long_bit=32
getconf_glibc=glibc 2.36
cpu_count=4
disk_free_kb=1048576
"""

# An Alpine board: musl, no glibc loader, no getconf GNU_LIBC_VERSION.
MUSL = f"""kernel_arch=x86_64
kernel=6.6
userland_elf={ELF_X86_64}
long_bit=64
musl=1.2.4
os=Alpine Linux v3.20
disk_free_kb=1048576
"""


def test_32bit_userland_on_64bit_kernel_is_refused():
    result = parse(ARM32_ON_ARM64, [], emulated=False)
    assert (result.kernel_arch, result.userland_arch, result.arch) == ("aarch64", "armv7l", "armv7l")
    assert result.glibc == "2.36" and result.libc == "glibc"
    with pytest.raises(DeviceError, match=r"32-bit armv7l userland on a 64-bit aarch64 kernel.*target 't' is aarch64"):
        check_fits(result, device="pi", target="t", arch="aarch64", glibc_floor="2.27")


def test_userland_arch_from_long_bit_when_elf_header_unreadable():
    # what the old probe saw on such a board: no aarch64 loader, and the kernel's word for the architecture
    text = ARM32_ON_ARM64.replace(f"userland_elf={ELF_ARM32}\n", "").split("\n")
    text = "\n".join(line for line in text if not line.startswith("loader="))
    result = parse(text, [], emulated=False)
    assert result.userland_arch == "armv7l" and result.arch == "armv7l" and result.glibc == "2.36"
    with pytest.raises(DeviceError, match="32-bit"):
        check_fits(result, device="pi", target="t", arch="aarch64", glibc_floor=None)


def test_musl_board_is_refused_when_glibc_is_required():
    result = parse(MUSL, [], emulated=False)
    assert (result.arch, result.libc, result.glibc, result.musl) == ("x86_64", "musl", None, "1.2.4")
    with pytest.raises(DeviceError, match=r"musl libc 1\.2\.4.*needs glibc >= 2\.27.*manylinux"):
        check_fits(result, device="alp", target="t", arch="x86_64", glibc_floor="2.27")
    check_fits(result, device="alp", target="t", arch="x86_64", glibc_floor=None)


def test_free_disk_is_compared_with_the_upload():
    result = parse(OUT, ["qemu-aarch64"], emulated=True)  # 1024 MB free
    check_fits(result, device="b", target="t", arch="aarch64", glibc_floor=None, upload_bytes=100 << 20)
    with pytest.raises(DeviceError, match=r"1024\.0 MB free .* upload needs 2048\.0 MB"):
        check_fits(result, device="b", target="t", arch="aarch64", glibc_floor=None, upload_bytes=2 << 30)
    unknown = parse(OUT.replace("disk_free_kb=1048576\n", ""), ["qemu-aarch64"], emulated=True)
    check_fits(unknown, device="b", target="t", arch="aarch64", glibc_floor=None, upload_bytes=2 << 30)


def test_probe_local_host_userland():
    result = probe(LocalConnection())
    assert result.userland_arch == platform.machine() and result.libc == "glibc"
