"""Probe gaps (issue 14) against real boards: the userland architecture and libc read over the loopback sshd,
through the qemu-user exec prefix, and the free-disk check against the bytes to upload."""

from __future__ import annotations

import pytest

from edgekd.device import connect
from edgekd.device.probe import check_fits, probe
from edgekd.errors import DeviceError


def test_loopback_probe_reads_userland_arch(x86_board):
    with connect(x86_board) as conn:
        facts = probe(conn, cache_dir=x86_board.cache_dir)
    assert (facts.userland_arch, facts.arch, facts.kernel_arch) == ("x86_64", "x86_64", "x86_64")
    assert facts.libc == "glibc" and facts.glibc and facts.musl is None
    assert facts.disk_free_mb and facts.disk_free_mb > 0
    check_fits(facts, device="x86", target="host", arch="x86_64", glibc_floor="2.17", upload_bytes=1 << 20)
    with pytest.raises(DeviceError, match="MB free in its cache"):
        check_fits(facts, device="x86", target="host", arch="x86_64", glibc_floor=None, upload_bytes=1 << 60)


def test_qemu_board_userland_arch_is_the_emulated_one(arm_board):
    with connect(arm_board) as conn:
        facts = probe(conn, cache_dir=arm_board.cache_dir, emulated=True)
    assert (facts.userland_arch, facts.arch, facts.kernel_arch) == ("aarch64", "aarch64", "x86_64")
    assert facts.libc == "glibc" and facts.glibc
    check_fits(facts, device="arm", target="jetson-tx2", arch="aarch64", glibc_floor="2.27")
