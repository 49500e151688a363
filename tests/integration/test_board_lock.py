"""The board run lock (edgekd.device.lock) against the loopback sshd and the local device.

Two benches on one board take turns (their timed windows never overlap), a holder killed with SIGKILL
leaves no stale lock, ``--lock-timeout`` fails in one line, and two first pushes into a fresh cache both
succeed. The runner is the shell stand-in (it stamps ``timed_start_unix``/``timed_end_unix``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgekd.cli import main
from edgekd.compile.artifact import read_manifest
from edgekd.config.devices import Device, DeviceStore
from edgekd.device import cache, connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.device.lock import board_lock
from edgekd.errors import DeviceError
from edgekd.testing.boards import cache_is_clean, stand_in_artifact

FAST = BenchOptions(runs=5, min_seconds=0.0, warmup_seconds=0.0, timeout_s=60, repeat=2, power=False)


@pytest.fixture(params=["ssh", "local"])
def board(request, make_device, sshd, tmp_path) -> Device:
    if request.param == "ssh":
        return make_device(sshd, "shared")
    return Device(name="local", target="host", host="localhost", cache_dir=str(tmp_path / "local-cache"))


def _windows(results) -> list[tuple[float, float]]:
    return [(r.runner["timestamps"]["timed_start_unix"], r.runner["timestamps"]["timed_end_unix"]) for r in results]


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-cache", "cached"])
def test_two_concurrent_benches_take_turns(board, warm, tmp_path, capsys):
    """Fresh cache: without the lock one push rebuilds the stage under the other's runner. Cached: without
    the lock the two runners' timed windows overlap."""
    artifact = stand_in_artifact(tmp_path / "art", seconds=0.4)
    if warm:
        with connect(board) as conn:
            cache.push(conn, artifact, dict(read_manifest(artifact).files), board.cache_dir)
    barrier = threading.Barrier(2)
    found: dict[int, list] = {}
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            with connect(board) as conn:  # each thread its own connection, as two hosts would
                barrier.wait()
                found[index] = bench(conn, board, artifact, FAST)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    # each bench's timed windows span [first start, last end]; the two spans must not overlap
    spans = sorted((min(s for s, _ in w), max(e for _, e in w)) for w in (_windows(found[0]), _windows(found[1])))
    assert spans[0][1] <= spans[1][0], f"timed runs overlapped: {spans}"
    waiting = [line for line in capsys.readouterr().err.splitlines() if line.startswith("waiting for")]
    assert len(waiting) == 1
    assert f"waiting for {board.name}: " in waiting[0] and "is running bench stand-in since " in waiting[0]
    assert cache_is_clean(Path(board.cache_dir)) == []


_HOLDER = r"""
import json, sys, time
from edgekd.config.devices import Device
from edgekd.device import connect
from edgekd.device.lock import board_lock
device = Device(**json.loads(sys.argv[1]))
with connect(device) as conn, board_lock(conn, device, what="tuning resnet8"):
    print("held", flush=True)
    time.sleep(1000)
"""


def _start_holder(board: Device) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, board.model_dump_json()], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_of_a_killed_process_is_taken_over(board):
    holder = _start_holder(board)
    try:
        with connect(board) as conn:
            with pytest.raises(DeviceError, match=r"stayed busy for 0.5 s \(.* pid \d+ is running tuning resnet8 "
                                                  r"since \d{4}-"), board_lock(conn, board, timeout=0.5, on_wait=None):
                pass
            holder.kill()  # SIGKILL: no cleanup ran; the board's kernel drops its flock with the holder
            holder.wait()
            start = time.monotonic()
            with board_lock(conn, board, what="after", timeout=30, on_wait=None):
                owner = json.loads((Path(board.cache_dir) / ".board.owner").read_text().split(" ", 1)[1])
                assert owner["what"] == "after"
            assert time.monotonic() - start < 15
    finally:
        holder.kill()
        holder.wait()


def test_lock_timeout_fails_in_one_line(make_device, sshd, tmp_path, capsys):
    device = make_device(sshd, "busy")
    DeviceStore().add(device)
    artifact = stand_in_artifact(tmp_path / "art")
    holder = _start_holder(device)
    try:
        code = main(["bench", str(artifact), "--device", "busy", "--lock-timeout", "1", "--no-store"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 2, err
    assert err[0].startswith("waiting for busy: ") and "is running tuning resnet8 since" in err[0]
    assert err[1].startswith("edgekd: error: busy stayed busy for 1 s (") and "--lock-timeout" in err[1]


def test_two_first_pushes_into_a_fresh_cache_both_succeed(board, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    files = json.loads((artifact / "manifest.json").read_text())["files"]
    for attempt in range(4):
        fresh = str(tmp_path / f"fresh-{attempt}" / "deep" / "cache")
        barrier = threading.Barrier(2)
        reports: list = []
        errors: list[BaseException] = []

        def one(fresh=fresh, barrier=barrier, reports=reports, errors=errors) -> None:
            try:
                with connect(board) as conn:
                    conn.open()
                    barrier.wait()
                    reports.append(cache.push(conn, artifact, files, fresh))
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == [], f"attempt {attempt}: {errors}"
        assert len(reports) == 2 and reports[0].stage_dir == reports[1].stage_dir
        assert cache_is_clean(Path(fresh)) == []


def test_run_dirs_of_dead_benches_are_swept_under_the_lock(board, tmp_path):
    artifact = stand_in_artifact(tmp_path / "art")
    left = Path(board.cache_dir) / ".run-0123456789ab"
    left.mkdir(parents=True)
    (left / "out.bin").write_bytes(b"\0" * 40)  # what a bench whose connection died leaves behind
    with connect(board) as conn:
        bench(conn, board, artifact, BenchOptions(**{**FAST.__dict__, "repeat": 1}))
    assert not left.exists()
    assert cache_is_clean(Path(board.cache_dir)) == []
