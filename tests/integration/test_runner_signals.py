"""A runner killed by a signal says so, a real timeout still says timeout, and a repeat that fails keeps the
rows of the repeats before it (issue 14, items 3 and 4). Real sshd / local device; stand-in shell runners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd import api
from edgekd.compile.artifact import hash_files
from edgekd.config.devices import DeviceStore
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.errors import DeviceError
from edgekd.results.store import ResultsStore
from edgekd.testing.boards import cache_is_clean, stand_in_artifact

FAST = BenchOptions(runs=3, min_seconds=0.0, warmup_seconds=0.0, timeout_s=30)


def _with_runner(artifact: Path, preamble: str) -> Path:
    """Put ``preamble`` at the top of the stand-in runner (after the shebang) and re-hash the manifest."""
    runner = artifact / "edgekd-runner"
    head, rest = runner.read_text().split("\n", 1)
    runner.write_text(f"{head}\n{preamble}\n{rest}")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"] = hash_files(artifact)
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    return artifact


def _oom_killed(tmp_path: Path) -> Path:
    """A runner the 'OOM killer' takes: it sends itself SIGKILL."""
    return _with_runner(stand_in_artifact(tmp_path / "oom"), 'echo "allocating" >&2; kill -9 $$')


def _bench(device, artifact, **changes):
    with connect(device) as conn:
        return bench(conn, device, artifact, BenchOptions(**{**FAST.__dict__, **changes}))


def test_sigkill_over_ssh_is_not_called_a_timeout(x86_board, tmp_path):
    with pytest.raises(DeviceError) as info:
        _bench(x86_board, _oom_killed(tmp_path))
    message = str(info.value)
    assert "killed by signal 9 (SIGKILL; out of memory?)" in message and "timeout" not in message
    assert "\n" not in message and cache_is_clean(Path(x86_board.cache_dir)) == []


def test_sigkill_on_the_local_device(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path))
    with pytest.raises(DeviceError, match=r"killed by signal 9 \(SIGKILL; out of memory\?\)"):
        api.bench(_oom_killed(tmp_path), device="local", options=FAST, store=False)


def test_real_timeout_still_says_timeout(x86_board, tmp_path):
    with pytest.raises(DeviceError, match=r"did not finish within 1 s and was killed \(raise --timeout"):
        _bench(x86_board, stand_in_artifact(tmp_path / "hang", mode="hang"), timeout_s=1)


def test_term_ignoring_runner_is_still_killed_at_timeout(x86_board, tmp_path):
    artifact = _with_runner(stand_in_artifact(tmp_path / "stubborn", mode="hang"), "trap '' TERM")
    with pytest.raises(DeviceError, match=r"did not finish within 1 s"):
        _bench(x86_board, artifact, timeout_s=1)
    with connect(x86_board) as conn:
        assert "sleep 1000" not in conn.run(["ps", "-eo", "args"]).stdout


def test_second_repeat_failing_keeps_the_first_row(x86_board, tmp_path):
    DeviceStore().add(x86_board)
    counter = tmp_path / "runs"
    counter.write_text("")
    preamble = f'echo x >> {counter}; [ "$(wc -l < {counter})" -ge 2 ] && {{ echo "second run fails" >&2; exit 7; }}'
    artifact = _with_runner(stand_in_artifact(tmp_path / "flaky"), preamble)
    results = tmp_path / "store.jsonl"
    options = BenchOptions(**{**FAST.__dict__, "repeat": 3})
    with pytest.raises(DeviceError, match=r"exit code 7"):
        api.bench(artifact, device="x86", options=options, results=results)
    rows = ResultsStore(results).rows()
    assert [r["repeat_index"] for r in rows] == [0] and rows[0]["device"] == "x86"
