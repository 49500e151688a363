"""The results store keeps every whole row (issue 14, item 3): torn tails, short writes, failed repeats."""

from __future__ import annotations

import json
import os

import pytest

from edgekd.results.store import ResultsStore


def _row(i: int) -> dict:
    return {"device": "d", "model": f"m{i}", "latency_ms_mean": float(i), "emulated": False}


def test_torn_last_line_loses_no_later_row(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(_row(1))
    with open(store.path, "ab") as fh:  # a short write on a full disk: half a row, no newline
        fh.write(json.dumps(_row(2)).encode()[:20])
    store.append(_row(3))
    store.append(_row(4))
    assert [r["model"] for r in store.rows()] == ["m1", "m3", "m4"]
    frame = store.frame()
    assert list(frame["model"]) == ["m1", "m3", "m4"]
    assert store.path.read_bytes().endswith(b"\n")
    torn = store.path.with_name(store.path.name + ".torn")
    assert torn.exists() and torn.read_bytes().startswith(json.dumps(_row(2)).encode()[:20])


def test_row_missing_only_its_newline_is_kept(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(_row(1))
    with open(store.path, "ab") as fh:
        fh.write(json.dumps(_row(2)).encode())
    store.append(_row(3))
    assert [r["model"] for r in store.rows()] == ["m1", "m2", "m3"]


def test_rows_and_frame_both_skip_and_count_bad_lines(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(_row(1))
    with open(store.path, "ab") as fh:
        fh.write(b'{"device": "d", "mod\n')
    store.append(_row(2))
    assert [r["model"] for r in store.rows()] == ["m1", "m2"] and store.skipped == 1
    store.skipped = 0
    assert list(store.frame()["model"]) == ["m1", "m2"] and store.skipped == 1


def test_short_writes_are_completed(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "results.jsonl")
    real_write = os.write

    def short_write(fd, data):  # the kernel may write less than asked
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", short_write)
    store.append(_row(1))
    store.append(_row(2))
    monkeypatch.undo()
    assert [r["model"] for r in store.rows()] == ["m1", "m2"]


def test_failed_write_leaves_no_fragment(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(_row(1))
    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        store.append(_row(2))
    monkeypatch.undo()
    assert store.path.read_bytes().endswith(b"\n")
    store.append(_row(3))
    assert [r["model"] for r in store.rows()] == ["m1", "m3"]
