"""Content-addressed upload against the real sshd: skip what is there, verify, survive a killed server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgekd.compile.artifact import read_manifest
from edgekd.device import cache, connect
from edgekd.errors import DeviceError
from edgekd.testing.boards import cache_is_clean, stand_in_artifact


def _files(artifact: Path) -> dict[str, str]:
    return dict(read_manifest(artifact).files)


def test_second_push_uploads_nothing(x86_board, sshd, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    with connect(x86_board) as conn:
        first = cache.push(conn, artifact, _files(artifact), x86_board.cache_dir)
        writes = len(sshd.sftp_writes())
        second = cache.push(conn, artifact, _files(artifact), x86_board.cache_dir)
    assert sorted(first.uploaded) == sorted(_files(artifact)) and second.uploaded == []
    assert len(sshd.sftp_writes()) == writes  # the server saw no file opened for writing
    stage = Path(second.stage_dir)
    assert (stage / "edgekd-runner").read_bytes() == (artifact / "edgekd-runner").read_bytes()
    assert (stage / "lib" / "libtvm_runtime.so").is_file()
    assert cache_is_clean(Path(x86_board.cache_dir)) == []


def test_sshd_killed_during_upload_then_next_push_succeeds(make_device, fresh_sshd, tmp_path):
    artifact = stand_in_artifact(tmp_path / "big", payload_bytes=60 * 1024 * 1024)
    device = make_device(fresh_sshd, "flaky")
    cache_dir = Path(device.cache_dir)

    def kill_when_uploading():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tmps = list(cache_dir.glob(".tmp-*")) if cache_dir.exists() else []
            if any(p.stat().st_size > 1024 * 1024 for p in tmps if p.exists()):
                fresh_sshd.kill_all()
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_when_uploading)
    killer.start()
    with pytest.raises(DeviceError) as info, connect(device) as conn:
        cache.push(conn, artifact, _files(artifact), device.cache_dir)
    killer.join()
    assert "\n" not in str(info.value) and ("failed" in str(info.value) or "lost" in str(info.value))
    # no partial content-addressed entry exists (a half-written temporary may: it is swept next time)
    assert [p for p in cache_is_clean(cache_dir) if p.startswith("corrupt")] == []
    fresh_sshd.start()
    with connect(device) as conn:
        report = cache.push(conn, artifact, _files(artifact), device.cache_dir)
    assert "model.so" in report.uploaded
    assert cache_is_clean(cache_dir) == []  # every entry verified, temporaries swept


def test_unwritable_cache_dir(make_device, sshd, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    device = make_device(sshd, "ro", cache_dir="/sys/edgekd-cache")  # sysfs refuses mkdir even to root
    with pytest.raises(DeviceError, match=r"board cache directory '/sys/edgekd-cache' .* is not writable"), \
            connect(device) as conn:
        cache.push(conn, artifact, _files(artifact), device.cache_dir)
    assert not Path("/sys/edgekd-cache").exists()
