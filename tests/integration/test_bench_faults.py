"""bench fault paths over the real sshd: each ends in one clear line and leaves the board cache clean.

The runner here is a shell stand-in (the fault is in transport/process handling, which is the real code).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.cli import main
from edgekd.config.devices import DeviceStore
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.errors import DeviceError
from edgekd.testing.boards import cache_is_clean, stand_in_artifact

FAST = BenchOptions(runs=5, min_seconds=0.0, warmup_seconds=0.0, timeout_s=30)


def _bench(device, artifact, **changes):
    options = BenchOptions(**{**FAST.__dict__, **changes})
    with connect(device) as conn:
        return bench(conn, device, artifact, options)


def test_stand_in_bench_ok(x86_board, tmp_path):
    [result] = _bench(x86_board, stand_in_artifact(tmp_path / "ok"))
    assert result.max_abs_diff == 0.0 and result.top1_agree == 1.0 and result.latency_valid
    assert cache_is_clean(Path(x86_board.cache_dir)) == []


def test_runner_crash_shows_exit_code_and_stderr(x86_board, tmp_path):
    with pytest.raises(DeviceError, match=r"runner crashed on x86 \(exit code 3\): edgekd-runner: model.so: "
                                          r"cannot load: simulated crash"):
        _bench(x86_board, stand_in_artifact(tmp_path / "crash", mode="crash"))
    assert cache_is_clean(Path(x86_board.cache_dir)) == []


def test_runner_hang_is_killed_at_timeout(x86_board, tmp_path):
    with pytest.raises(DeviceError, match=r"did not finish within 1 s and was killed"):
        _bench(x86_board, stand_in_artifact(tmp_path / "hang", mode="hang"), timeout_s=1)
    with connect(x86_board) as conn:
        assert "sleep 1000" not in conn.run(["ps", "-eo", "args"]).stdout
    assert cache_is_clean(Path(x86_board.cache_dir)) == []


def test_arch_mismatch_caught_before_any_upload(arm_board, sshd, tmp_path):
    writes = len(sshd.sftp_writes())
    with pytest.raises(DeviceError, match=r"device 'arm' runs aarch64 binaries but target 'host' is x86_64"):
        _bench(arm_board, stand_in_artifact(tmp_path / "x86"))
    assert not Path(arm_board.cache_dir).exists() and len(sshd.sftp_writes()) == writes


def test_probe_reads_arch_through_the_exec_prefix(arm_board, capsys):
    import json

    DeviceStore().add(arm_board)
    assert main(["device", "probe", "arm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["arch"], doc["kernel_arch"], doc["emulated"]) == ("aarch64", "x86_64", True)
    assert doc["glibc"] and doc["cpu_count"] >= 1 and doc["mem_total_mb"] > 0


def test_cli_one_line_error(x86_board, tmp_path, capsys):
    DeviceStore().add(x86_board)
    code = main(["bench", str(stand_in_artifact(tmp_path / "c", mode="crash")), "--device", "x86"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("edgekd: error: runner crashed") and err.count("\n") == 1
