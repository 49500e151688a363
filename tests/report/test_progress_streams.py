"""Progress bars go to stderr with an ETA, and ``--json`` stdout stays one document with them on."""

from __future__ import annotations

import json

import pytest
from support import TINY_OVERRIDES

from edgekd.cli import main
from edgekd.learn.progress import task_progress


def test_task_progress_draws_on_stderr_only(capsys, monkeypatch):
    monkeypatch.setenv("EDGEKD_PROGRESS", "1")
    with task_progress("trials", total=3, unit="trials") as advance:
        for best in (3.0, 2.5, 2.4):
            advance(status=f"best {best} ms")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "trials" in captured.err and "3/3" in captured.err and "ETA" in captured.err and "best 2.4" in captured.err


def test_task_progress_off(capsys, monkeypatch):
    monkeypatch.setenv("EDGEKD_PROGRESS", "0")
    with task_progress("trials", total=2) as advance:
        advance()
        advance(status="x")
    assert capsys.readouterr() == ("", "")


@pytest.mark.slow
def test_compress_json_with_progress_on_is_one_document(tiny_teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEKD_PROGRESS", "1")
    monkeypatch.setenv("EDGEKD_RESULTS", str(tmp_path / "results.jsonl"))
    sets = [arg for value in TINY_OVERRIDES for arg in ("--set", value)]
    code = main(["compress", "--recipe", "quickstart", "--teacher", str(tiny_teacher), "--out", str(tmp_path / "c"),
                 "--json", "--report", *sets, "--set", "structure.learn.epochs=1",
                 "--set", "structure.finetune.epochs=0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)  # the whole of stdout is one JSON document
    assert document["run_dir"] == str(tmp_path / "c")
    assert "learn" in captured.err and "ETA" not in captured.out  # the bars were drawn, on stderr
    report = tmp_path / "c" / "report" / "index.html"
    assert report.is_file() and f"report: {report}" in captured.err
