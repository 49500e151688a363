"""What the report draws, checked from the data embedded beside each figure (no browser here)."""

from __future__ import annotations

import re

import pytest
from report_helpers import fake_store, read_report

from edgekd.errors import ConfigError
from edgekd.results.report import build_report


def _ids(data) -> set[str]:
    """Every record id anywhere in a figure's data."""
    text = repr(data)
    return set(re.findall(r"'([0-9a-f]{16})'", text))


def test_an_emulated_row_appears_only_in_the_provenance_table(tmp_path):
    run, store, ids = fake_store(tmp_path, power=True)
    written = build_report(run, store=store)
    page = read_report(written.html.read_text())
    [emulated] = ids["emulated"]
    assert written.figures == ["accuracy_latency", "block_widths", "block_budgets", "latency_distribution",
                               "peak_memory", "power"] == page["manifest"]["figures"]
    for name, data in page["figures"].items():
        assert emulated not in _ids(data), name
        assert "qemu-tx2" not in repr(data), name
    assert emulated in {row["record_id"] for row in page["provenance"]}
    assert {row["record_id"] for row in page["provenance"]} == {i for v in ids.values() for i in v}
    [row] = [r for r in page["provenance"] if r["record_id"] == emulated]
    assert row["emulated"] is True and row["latency_valid"] is False and row["device"] == "qemu-tx2"
    assert written.emulated_rows == 1 and written.rows == 7
    # the measured points: student and teacher on the host, accuracy from their runs' JSON, median p50
    points = {p["role"]: p for p in page["figures"]["accuracy_latency"]["points"]}
    assert set(points) == {"student", "teacher"}
    assert points["student"]["accuracy"] == 0.88 and points["student"]["latency_ms"] == pytest.approx(2.1)
    assert points["teacher"]["accuracy"] == 0.91 and points["teacher"]["latency_ms"] == pytest.approx(4.1)
    assert points["student"]["pareto"] and points["teacher"]["pareto"]  # faster vs more accurate: both
    assert sorted(points["student"]["record_ids"]) == sorted(ids["student"])
    # block figures from report.json
    widths = page["figures"]["block_widths"]["blocks"]
    assert [(b["name"], b["teacher"], b["student"]) for b in widths] == [("stage3", 32, 15), ("stage4", 64, 30)]
    bars = page["figures"]["block_budgets"]["bars"]
    assert [(b["block"], b["kind"]) for b in bars] == [("stage3", "flops"), ("stage4", "flops"), ("stage4", "params")]
    assert bars[0]["budget_fraction"] == 0.5 and bars[0]["attained_fraction"] == 0.48
    power = page["figures"]["power"]["series"]
    assert len(power) == 1 and power[0]["energy_per_inference_mj"] == 1.5
    # the PNGs are beside the page, and the page fetches nothing
    assert sorted(p.name for p in written.pngs) == sorted(f"{n}.png" for n in written.figures)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written.pngs)
    html = written.html.read_text()
    assert written.html == run / "report" / "index.html"
    assert "http://" not in html and "https://" not in html and 'src="data:image/png;base64,' in html


def test_a_dominated_point_is_off_the_front(tmp_path):
    from report_helpers import artifact, bench_row

    from edgekd.results.store import ResultsStore

    run, store_path, _ = fake_store(tmp_path)
    slow = artifact(run / "artifacts" / "pruned-host", run / "pruned" / "model.pt")  # acc 0.5, slower
    ResultsStore(store_path).append(bench_row(slow, p50=9.0))
    page = read_report(build_report(run, store=store_path).html.read_text())
    points = {p["role"]: p["pareto"] for p in page["figures"]["accuracy_latency"]["points"]}
    assert points == {"student": True, "teacher": True, "pruned": False}


def test_store_report_and_a_run_without_measurements(tmp_path):
    run, store, ids = fake_store(tmp_path)
    written = build_report(store)  # the store file itself: every row
    assert written.html == tmp_path / "results-report" / "index.html" and written.rows == 7
    assert written.figures == ["accuracy_latency", "latency_distribution", "peak_memory"]
    empty = build_report(run, store=tmp_path / "none.jsonl")
    assert empty.figures == ["block_widths", "block_budgets"] and empty.rows == 0
    assert "No measurement of this run" in empty.html.read_text()


def test_not_a_run_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not a compress run"):
        build_report(tmp_path)
    (tmp_path / "tune.json").write_text("{}")
    with pytest.raises(ConfigError, match="edgekd tune"):
        build_report(tmp_path)


def test_results_join_run_role_tuned_and_accuracy_from_stored_json(tmp_path, capsys):
    import json

    from edgekd.cli import main

    run, store, ids = fake_store(tmp_path)
    assert main(["results", "--store", str(store), "--run", str(run), "--json"]) == 0
    rows = {r["record_id"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert len(rows) == 7
    student, teacher, emulated = rows[ids["student"][0]], rows[ids["teacher"][0]], rows[ids["emulated"][0]]
    assert (student["role"], student["accuracy"], student["tuned"]) == ("student", 0.88, False)
    assert student["run"] == str(run)
    assert (teacher["role"], teacher["accuracy"]) == ("teacher", 0.91)
    assert emulated["latency_ms_p50"] is None and emulated["emulated_time_ms_p50"] == 0.5
    assert main(["results", "--store", str(store), "--run", str(tmp_path / "teacher-run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 3  # rows whose model came from the teacher run


def test_report_cli(tmp_path, capsys):
    import json

    from edgekd.cli import main

    _, store, _ = fake_store(tmp_path)
    assert main(["report", str(store), "--out", str(tmp_path / "out"), "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["html"] == str(tmp_path / "out" / "index.html") and document["emulated_rows"] == 1
    assert f"report: {tmp_path / 'out' / 'index.html'}" in captured.err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_a_bench_reports_on_the_run_of_its_artifact(tmp_path):
    from edgekd.results.report import report_source_for_artifact

    run, store, _ = fake_store(tmp_path)
    assert report_source_for_artifact(run / "artifacts" / "host", store) == run  # its model came from the run
    assert report_source_for_artifact(run / "artifacts" / "teacher-host", store) == run  # it lies in the run
    assert report_source_for_artifact(run, store) == run  # a run directory benched directly
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert report_source_for_artifact(other, store) == store  # nothing known: the store
