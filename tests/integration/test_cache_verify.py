"""The board's cache is re-checked, not trusted forever (issue 14, item 2): real sshd, real files.

A blob truncated (a power cut before the data reached the disk) or changed in place with its size kept
(a write through a staged hard link) is found on the next bench and replaced; ``edgekd device verify``
hashes every blob and drops bad ones; ``edgekd device clean`` removes the cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekd.atomic import sha256_file
from edgekd.cli import main
from edgekd.config.devices import DeviceStore
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.testing.boards import cache_is_clean, stand_in_artifact

FAST = BenchOptions(runs=3, min_seconds=0.0, warmup_seconds=0.0, timeout_s=30)


def _bench(device, artifact):
    with connect(device) as conn:
        return bench(conn, device, artifact, FAST)


def _blob(device, artifact: Path) -> Path:
    return Path(device.cache_dir) / sha256_file(artifact / "model.so")


def _truncate(path: Path) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _flip_first_byte(path: Path) -> None:
    """Same size, other content: as a write through a hard-linked stage copy would leave it."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))


def test_truncated_blob_is_replaced_on_the_next_bench(x86_board, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art", payload_bytes=4096)
    _bench(x86_board, artifact)
    blob = _blob(x86_board, artifact)
    _truncate(blob)
    [result] = _bench(x86_board, artifact)
    assert "model.so" in result.push.uploaded
    assert sha256_file(blob) == blob.name and cache_is_clean(Path(x86_board.cache_dir)) == []
    staged = Path(result.push.stage_dir) / "model.so"
    assert sha256_file(staged) == blob.name


def test_same_size_change_is_replaced_on_the_next_bench(x86_board, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art", payload_bytes=4096)
    [first] = _bench(x86_board, artifact)
    _flip_first_byte(Path(first.push.stage_dir) / "model.so")  # through the stage's hard link
    [second] = _bench(x86_board, artifact)
    blob = _blob(x86_board, artifact)
    assert "model.so" in second.push.uploaded
    assert sha256_file(blob) == blob.name and cache_is_clean(Path(x86_board.cache_dir)) == []
    assert sha256_file(Path(second.push.stage_dir) / "model.so") == blob.name


def test_unchanged_cache_uploads_nothing_and_stays_read_only(x86_board, sshd, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    [first] = _bench(x86_board, artifact)
    writes = len(sshd.sftp_writes())
    [second] = _bench(x86_board, artifact)
    assert second.push.uploaded == [] and len(sshd.sftp_writes()) == writes
    blob = _blob(x86_board, artifact)
    assert blob.stat().st_mode & 0o222 == 0  # blobs are read-only
    assert Path(first.push.stage_dir).stat().st_mode & 0o222 == 0  # and so is the stage directory


def test_device_verify_reports_and_drops_bad_blobs_then_clean(x86_board, tmp_path, capsys):
    DeviceStore().add(x86_board)
    artifact = stand_in_artifact(tmp_path / "art", payload_bytes=4096)
    _bench(x86_board, artifact)
    blob = _blob(x86_board, artifact)
    _flip_first_byte(blob)
    os.utime(blob, (0, 946684800))  # even with its old time back, verify hashes it
    capsys.readouterr()
    assert main(["device", "verify", "x86", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["bad"] == [blob.name] and doc["checked"] >= 5 and not blob.exists()
    assert main(["device", "verify", "x86", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bad"] == []
    [result] = _bench(x86_board, artifact)
    assert "model.so" in result.push.uploaded and sha256_file(blob) == blob.name
    assert main(["device", "clean", "x86"]) == 0
    assert not Path(x86_board.cache_dir).exists()
