"""The report of a real tiny compress run — compiled for this host and benched on it — opened in headless
Chromium (Debian's package, installed by scripts/setup.sh): every image loads, one figure per kind of data the
run has, nothing logged as an error, and a screenshot kept as a test artifact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from report_helpers import read_report

from edgekd.cli import main

pytestmark = pytest.mark.slow
BENCH = ["--device", "local", "--repeat", "3", "--runs", "10", "--min-seconds", "0.05", "--warmup-seconds", "0.02",
         "--idle-seconds", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def measured_run(tiny_compress, tiny_teacher, tmp_path_factory):
    """A copy of the tiny compress run with its compact model and its teacher compiled for the host, each
    benched three times on this host (through the CLI) into a store of its own."""
    from edgekd import api

    root = tmp_path_factory.mktemp("measured")
    run = Path(shutil.copytree(tiny_compress.run_dir, root / "run",
                               ignore=shutil.ignore_patterns("checkpoint.pt", "report")))
    store = root / "results.jsonl"
    options = api.CompileOptions(onnx=False)
    student = api.compile_model(run, "host", run / "artifacts" / "host", options).path
    teacher = api.compile_model(tiny_teacher, "host", run / "artifacts" / "teacher-host", options).path
    for artifact in (student, teacher):
        assert main(["bench", str(artifact), "--results", str(store), *BENCH]) == 0
    return run, store


def test_report_of_a_real_run_in_headless_chromium(measured_run, tmp_path, capsys):
    chromium = find_chromium()
    if chromium is None:  # the project's set-up installs it: a missing browser is a failure, not a skip
        pytest.fail("chromium is not installed (scripts/setup.sh installs Debian's chromium package)")
    run, store = measured_run
    assert main(["report", str(run), "--store", str(store), "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    page_path = Path(document["html"])
    assert page_path == run / "report" / "index.html" and f"report: {page_path}" in captured.err
    embedded = read_report(page_path.read_text())
    # what this run has: blocks with budgets, and timed rows of two models whose accuracies the runs recorded
    report = json.loads((run / "report.json").read_text())
    expected = ["accuracy_latency", "block_widths", "block_budgets", "latency_distribution", "peak_memory"]
    assert any(b["budget"] for b in report["blocks"])
    assert document["figures"] == embedded["manifest"]["figures"] == expected
    points = {p["role"]: p for p in embedded["figures"]["accuracy_latency"]["points"]}
    assert set(points) == {"student", "teacher"}
    assert points["student"]["accuracy"] == pytest.approx(report["student"]["test_acc"])
    assert len(points["student"]["record_ids"]) == 3 and points["student"]["latency_ms"] > 0
    assert len(embedded["provenance"]) == 6

    with Browser(chromium) as browser:
        browser.navigate(page_path.as_uri())
        images = browser.evaluate("Array.from(document.images).map(i => ({w: i.naturalWidth, h: i.naturalHeight,"
                                  " done: i.complete}))")
        figures = browser.evaluate("document.querySelectorAll('figure[data-figure]').length")
        drawn = browser.evaluate("Array.from(document.querySelectorAll('figure[data-figure]'))"
                                 ".map(f => f.dataset.figure)")
        rows = browser.evaluate("document.querySelectorAll('#provenance tr').length")
        errors = browser.console_errors()
        shot = browser.screenshot(tmp_path / "report-screenshot.png")
    print(f"screenshot: {shot}")
    assert figures == len(expected) and drawn == expected
    assert len(images) == len(expected) and all(i["done"] and i["w"] > 0 and i["h"] > 0 for i in images), images
    assert rows == 1 + 6  # header + one per measurement
    assert errors == []
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


def test_bench_json_with_progress_on_and_report(measured_run, capsys, monkeypatch):
    run, store = measured_run
    monkeypatch.setenv("EDGEKD_PROGRESS", "1")  # bars forced on: they go to stderr, never into the document
    assert main(["bench", str(run / "artifacts" / "teacher-host"), "--results", str(store), *BENCH[:4],
                 "--repeat", "2", "--runs", "5", "--min-seconds", "0", "--json", "--report"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert len(document["measurements"]) == 2
    assert "bench on local" in captured.err and "2/2" in captured.err and "ETA" in captured.err
    assert f"report: {run / 'report' / 'index.html'}" in captured.err  # the run the artifact lies in
    assert len(read_report((run / "report" / "index.html").read_text())["provenance"]) == 8
