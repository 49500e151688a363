"""``edgekd results``: the store as a table, JSON or CSV, filtered; a torn line is skipped and counted."""

from __future__ import annotations

import csv
import io
import json

from edgekd.cli import main
from edgekd.results.query import parse_since
from edgekd.results.store import ResultsStore


def _row(i: int, device: str = "tx2", **extra) -> dict:
    return {"timestamp": f"2026-05-0{i}T12:00:00+00:00", "device": device, "target": "jetson-tx2",
            "model": f"m{i}", "emulated": False, "latency_valid": True, "latency_ms_p50": float(i),
            "latency_ms_p90": 1.5 * i, "peak_rss_mb": 10.0, "runtime": "tvm", "threads": 4,
            "artifact": f"/nowhere/a{i}", "version_tvm": "0.27.0"} | extra


def _store(tmp_path, torn: bool = True):
    store = ResultsStore(tmp_path / "results.jsonl")
    for i in (1, 2, 3):
        store.append(_row(i, device="tx2" if i < 3 else "pi5"))
    if torn:  # a crash in the middle of a write: the last line is half a row
        with open(store.path, "ab") as fh:
            fh.write(json.dumps(_row(4)).encode()[:30])
    return store


def test_json_on_a_torn_store_prints_every_whole_row_and_says_one_was_skipped(tmp_path, capsys, monkeypatch):
    store = _store(tmp_path)
    monkeypatch.setenv("EDGEKD_RESULTS", str(store.path))
    assert main(["results", "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # the whole of stdout is one document
    assert [r["model"] for r in document["rows"]] == ["m1", "m2", "m3"]
    assert document["count"] == 3 and document["skipped"] == 1 and document["store"] == str(store.path)
    assert document["rows"][0]["latency_ms_p50"] == 1.0 and document["rows"][0]["accuracy"] is None
    assert "skipped 1 unreadable line" in captured.err and str(store.path) in captured.err


def test_filters_columns_and_csv(tmp_path, capsys):
    store = _store(tmp_path, torn=False)
    assert main(["results", "--store", str(store.path), "--device", "tx2", "--json"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["m1", "m2"]
    assert main(["results", "--store", str(store.path), "--since", "2026-05-02", "--json",
                 "--columns", "model,latency_ms_p50"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows == [{"model": "m2", "latency_ms_p50": 2.0}, {"model": "m3", "latency_ms_p50": 3.0}]
    assert main(["results", "--store", str(store.path), "--csv", "--model", "m3,m1"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["model"] for r in table] == ["m1", "m3"] and "record_id" in table[0]
    # the default listing: the columns that matter, plain text through a pipe
    assert main(["results", "--store", str(store.path)]) == 0
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0].split()
    assert header[:3] == ["timestamp", "device", "target"] and "latency_ms_p50" in header and "tuned" in header
    assert len(captured.out.splitlines()) == 4 and "3 of 3 rows" in captured.err


def test_bad_since_and_unknown_column_are_one_line(tmp_path, capsys):
    store = _store(tmp_path, torn=False)
    assert main(["results", "--store", str(store.path), "--since", "yesterday-ish"]) == 2
    assert main(["results", "--store", str(store.path), "--columns", "nope", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--since" in err[0] and "nope" in err[1]


def test_since_parses_durations_and_dates():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 5, 10, tzinfo=UTC)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-05-01", now) == datetime(2026, 5, 1, tzinfo=UTC)
