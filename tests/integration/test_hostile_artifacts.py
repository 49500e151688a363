"""A manifest cannot make bench read or write outside the artifact or the board's cache (issue 14, item 1).

Real files, the built-in ``local`` device through the CLI and the loopback sshd; the hostile names are
written into an otherwise valid stand-in artifact's manifest, with the right sha256 for what they point at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgekd.atomic import sha256_file
from edgekd.cli import main
from edgekd.compile.artifact import read_manifest
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.errors import CheckpointError, DeviceError
from edgekd.testing.boards import stand_in_artifact

FAST = BenchOptions(runs=5, min_seconds=0.0, warmup_seconds=0.0, timeout_s=30)


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple]:
    """Every path under ``root`` (outside ``skip``) with its inode, size and mtime."""
    out = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        st = path.lstat()
        out[str(path)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _hostile(tmp_path: Path, name: str, target: Path | None = None) -> Path:
    """A stand-in artifact (three levels below tmp_path) whose manifest also lists ``name``."""
    artifact = stand_in_artifact(tmp_path / "a" / "b" / "art")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(target) if target else "0" * 64
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    return artifact


NAMES = ["../../../secret", "lib/../../../../secret", "/etc/hostname", "lib\\..\\x", "a\0b", "./model.so", ""]


@pytest.mark.parametrize("name", NAMES)
def test_read_manifest_refuses_escaping_names(tmp_path, name):
    (tmp_path / "secret").write_text("private key\n")
    artifact = _hostile(tmp_path, name, tmp_path / "secret")
    with pytest.raises(CheckpointError, match=r"manifest") as info:
        read_manifest(artifact)
    assert "\n" not in str(info.value)


def test_symlink_out_of_the_artifact_is_refused(tmp_path):
    (tmp_path / "secret").write_text("private key\n")
    artifact = stand_in_artifact(tmp_path / "art")
    (artifact / "lib" / "key").symlink_to(tmp_path / "secret")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"]["lib/key"] = sha256_file(tmp_path / "secret")
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"lib/key.*outside"):
        read_manifest(artifact)


def test_bad_sha256_in_manifest_is_refused(tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"]["model.so"] = "../../../../x"
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"sha256"):
        read_manifest(artifact)


def test_local_bench_writes_nothing_outside_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path))  # the local device's cache: tmp_path/device-cache
    secret = tmp_path / "secret"
    secret.write_text("private key\n")
    # ../../../secret is tmp_path/secret from the artifact and from the cache's stage/.tmp-XXXX directory
    artifact = _hostile(tmp_path, "../../../secret", secret)
    cache_dir = tmp_path / "device-cache"
    before = _snapshot(tmp_path, (cache_dir, tmp_path / "config"))
    code = main(["bench", str(artifact), "--device", "local", "--no-store", "--runs", "3", "--min-seconds", "0",
                 "--warmup-seconds", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("edgekd: error:") and err.count("\n") == 1 and "../" in err
    assert _snapshot(tmp_path, (cache_dir, tmp_path / "config")) == before
    assert not cache_dir.exists() or not (cache_dir / sha256_file(secret)).exists()


def test_ssh_bench_reads_and_writes_nothing_outside(x86_board, sshd, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("private key\n")
    artifact = _hostile(tmp_path, "../../../secret", secret)
    skip = (Path(x86_board.cache_dir), tmp_path / "config")
    before = _snapshot(tmp_path, skip)
    writes = len(sshd.sftp_writes())
    with pytest.raises((DeviceError, CheckpointError)) as info, connect(x86_board) as conn:
        bench(conn, x86_board, artifact, FAST)
    assert "\n" not in str(info.value)
    assert len(sshd.sftp_writes()) == writes  # nothing uploaded at all
    assert _snapshot(tmp_path, skip) == before
    assert not (Path(x86_board.cache_dir) / sha256_file(secret)).exists()


def test_bench_verifies_the_artifact_before_pushing(x86_board, sshd, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    with open(artifact / "model.so", "r+b") as fh:  # same size, other bytes
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    writes = len(sshd.sftp_writes())
    with pytest.raises(CheckpointError, match=r"model.so does not match its sha256"), connect(x86_board) as conn:
        bench(conn, x86_board, artifact, FAST)
    assert len(sshd.sftp_writes()) == writes
    assert not os.path.exists(Path(x86_board.cache_dir) / sha256_file(artifact / "model.so"))
