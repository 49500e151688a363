"""``edgekd tune`` for real: the tiny quickstart family, its latency profile, 1 MetaSchedule trial per task, tuned
artifacts benched interleaved on a loopback sshd board (this host: real timings) or on ``local``.

A killed tune resumes with nothing measured lost; bad targets and boards are one line, exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from support import TINY_LATENCY_GRID, TINY_OVERRIDES, tiny_profile_options

from edgekd import api
from edgekd.cli import main
from edgekd.compile.cost_model import PRETRAIN_MIN_RECORDS
from edgekd.config.devices import DeviceStore
from edgekd.latency.store import model_path
from edgekd.models.io import load_model
from edgekd.results.store import ResultsStore

# Every group prunable: the quickstart's three blocks alone cannot reach 0.7x of a tuned dense network
FREE = ["structure.blocks=[]", "structure.default=free"]
SETS = [f"--set={o}" for o in [*TINY_OVERRIDES, *TINY_LATENCY_GRID, *FREE]]
# 1 trial a new task, the rest of a round's kernels reused from the warm database (``warm_board``): on the teacher's
# records alone one pick of the cost model a kernel once bought 0.83x -> 0.74x measured (missed 0.7, stop 35)
FAST = ["--tune-trials-per-task", "1", "--max-rounds", "2", "--repeats", "5"]
UNTUNED = ["--tune-trials", "0", "--max-rounds", "2"]


def _cli(capsys, args: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(capsys, args: list[str], expected: str) -> None:
    code, _out, err = _cli(capsys, args)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("edgekd: error")]
    assert len(lines) == 1 and expected in lines[0], err


@pytest.fixture
def board(make_device, sshd, warm_board):
    """A loopback board with the tiny quickstart family profiled on it and its target's tuning database warm
    (``warm_board``); its latency model is removed afterwards."""
    device = make_device(sshd, f"tune-{uuid.uuid4().hex[:8]}", target=str(warm_board))
    DeviceStore().add(device)
    recipe = api.load_recipe("quickstart", overrides=[*TINY_OVERRIDES, *TINY_LATENCY_GRID])
    model = api.profile_recipe(recipe, device.name, tiny_profile_options())
    yield device
    model_path(device.name, model.network, "untuned").unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a profile over SSH, then up to two tuned rounds
def test_tune_meets_a_latency_ratio_measured_on_a_loopback_board(board, tiny_teacher, tmp_path, capsys):
    run = tmp_path / "run"
    # A wide margin (aim at 0.49x): one trial a new task, and a round lands up to ~25% off its aim (CI once saw
    # round 2 aimed at 0.595x measure 0.735x); the floor is ~0.2-0.3x. Five bench rounds: this machine flips between
    # a fast and a ~2x slower state for minutes, and a median of three once caught two slow rounds.
    code, out, err = _cli(capsys, ["tune", "--recipe", "quickstart", "--device", board.name, "--latency-ratio", "0.7",
                                   *FAST, "--margin", "0.3", "--teacher", str(tiny_teacher), "--out", str(run),
                                   "--json", *SETS])
    assert code == 0, err
    doc = json.loads(out)
    print({k: doc[k] for k in ("measured_p50_ms", "dense_p50_ms", "target_ms")}, len(doc["rounds"]), "round(s)")
    # the verdict is the interleaved bench's: each bench round's candidate ÷ dense, median (a slow spell of the board
    # falls on both; CI once saw separate medians give 0.72x where the rounds gave 0.36-0.72, median 0.49)
    assert doc["met"] and doc["rounds"][-1]["share"] <= 0.7
    assert doc["run_dir"] == str(run) and json.loads((run / "tune.json").read_text()) == doc
    assert Path(doc["artifact"], "manifest.json").is_file() and (run / "model.pt").is_file()
    assert 1 <= len(doc["rounds"]) <= 2 and doc["options"]["latency_mode"] == "untuned"  # the default model's
    assert doc["options"]["tune_trials_per_task"] == 1
    rows = [r for r in ResultsStore().rows() if r.get("tune_run") == str(run)]
    for index, tuned in enumerate(doc["rounds"], start=1):
        assert tuned["budgets"] and tuned["predicted_ms"] > 0 and tuned["measured_p50_ms"] > 0
        # tuned: with this compile's trials, or every task's records reused from the database (then 0 new trials)
        assert tuned["tuned"] and tuned["tune_trials"] >= 0 and len(tuned["measured_p50s"]) == 5
        tuning = json.loads(Path(tuned["artifact"], "manifest.json").read_text())["tuning"]
        # the new tasks' one trial was picked by a cost model that learnt from the warm database
        assert tuning["tasks_tuned"] == 0 or tuning["cost_model_records"] >= PRETRAIN_MIN_RECORDS
        assert tuning["trials"] <= tuning["tasks_tuned"]  # --tune-trials-per-task 1: one a new task
        candidates = [r for r in rows if r["tune_round"] == index and r["tune_role"] == "candidate"]
        assert len(candidates) == 5 and {r["predicted_ms"] for r in candidates} == {tuned["predicted_ms"]}
        assert [r["latency_ms_p50"] for r in candidates] == tuned["measured_p50s"]
        dense = [r for r in rows if r["tune_round"] == index and r["tune_role"] == "dense"]
        assert [r["latency_ms_p50"] for r in dense] == tuned["dense_p50s"]
        candidate_at = {r["repeat_index"]: r["latency_ms_p50"] for r in candidates}
        paired = sorted(candidate_at[r["repeat_index"]] / r["latency_ms_p50"] for r in dense)
        assert tuned["share"] == pytest.approx(paired[2]) and tuned["met"] == (tuned["share"] <= 0.7)
        assert {r["compress_run"] for r in candidates} == {tuned["run_dir"]} and candidates[0]["device"] == board.name
    assert {r["tune_role"] for r in rows if r["tune_round"] == 0} == {"dense", "floor"}
    # measured before finetuning: only the round kept is finetuned, then compiled again with its weights (the
    # measured schedules: no task tuned anew)
    *missed, kept = doc["rounds"]
    assert kept["status"] == "deployed" and kept["finetuned"] and kept["final_artifact"]
    final = json.loads(Path(kept["final_artifact"], "manifest.json").read_text())["tuning"]
    assert final["tasks_tuned"] == 0
    assert json.loads(Path(doc["artifact"], "manifest.json").read_text()) == json.loads(
        Path(kept["final_artifact"], "manifest.json").read_text())
    report = json.loads(Path(kept["run_dir"], "report.json").read_text())
    assert report["phases"]["finetune"]["epochs"] >= 1 and report["student"]["test_acc"] == kept["test_acc"]
    assert all(not r["finetuned"] and not Path(r["run_dir"], "finetune").exists() for r in missed)


def _hashes(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two tunes; the session's tiny teacher and profile may be set up first
def test_a_tune_killed_in_round_two_resumes_keeping_round_one(tiny_latency, tiny_teacher, tmp_path, capsys):
    run, results = tmp_path / "run", Path(os.environ["EDGEKD_RESULTS"])
    # A negative margin (API only) makes every round aim above the target: round 1 misses, round 2 must run.
    # Untuned kernels (0 trials): their measured ratio follows the model's prediction (±10%), so the misses are
    # certain; one random trial per task moves a round's ratio by ±30% (CI once saw round 1 land at 0.65 for 0.92).
    script = (
        "import sys\nfrom edgekd import api\n"
        f"recipe = api.load_recipe('quickstart', overrides={[*TINY_OVERRIDES, *TINY_LATENCY_GRID, *FREE]!r})\n"
        "api.tune(recipe, 'local', latency_ratio=0.7, options=api.TuneOptions(max_rounds=2, tune_trials=0, "
        f"margin=-0.4), teacher={str(tiny_teacher)!r}, out={str(run)!r})\n")
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "EDGEKD_PROGRESS": "0"}, start_new_session=True)
    deadline = time.monotonic() + 900
    while not (run / "round-2" / "learn").is_dir():
        assert child.poll() is None, child.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "round 2 never started"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    state = json.loads((run / "tune.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["measured", "budgeted"] and not state["rounds"][0]["met"]
    kept_rows = [r for r in ResultsStore(results).rows() if r.get("tune_run") == str(run)]
    kept_files = _hashes(run / "round-1") | {f"ref/{k}": v for k, v in _hashes(run / "reference").items()}

    code, out, err = _cli(capsys, ["tune", "--recipe", "quickstart", "--device", "local", "--latency-ratio", "0.7",
                                   *UNTUNED, "--teacher", str(tiny_teacher), "--out", str(run), "--resume", "--json",
                                   *SETS])
    doc = json.loads(out)
    # round 2 asks from round 1's measured miss: it usually misses the 0.98x it aims at too, but an untuned kernel can
    # measure ~30% off the model (CI once saw round 2 at 0.67x): either way it is the last round, kept and reported
    assert code == (0 if doc["met"] else 1), err
    assert ("met in 2 round(s)" if doc["met"] else "missed after 2 round(s)") in err, err
    assert [r["status"] for r in doc["rounds"]] == ["measured", "deployed"]  # round 2, the last, is kept
    assert doc["rounds"][0] == state["rounds"][0]  # round 1's measurements, as they were
    rows = [r for r in ResultsStore(results).rows() if r.get("tune_run") == str(run)]
    assert [r for r in rows if r["tune_round"] <= 1] == kept_rows  # nothing of round 1 measured again
    assert {r["tune_role"] for r in rows if r["tune_round"] == 2} == {"dense", "previous", "candidate"}
    assert _hashes(run / "round-1") | {f"ref/{k}": v for k, v in _hashes(run / "reference").items()} == kept_files


@pytest.mark.slow
def test_a_target_below_the_measured_floor_is_one_line(tiny_latency, tiny_teacher, tmp_path, capsys):
    # the teacher as a user has it: a plain state_dict (tune writes the dense reference as edgekd's model.pt)
    weights = tmp_path / "weights.pt"
    torch.save(load_model(tiny_teacher).model.state_dict(), weights)
    run = tmp_path / "run"
    _one_line(capsys, ["tune", "--recipe", "quickstart", "--device", "local", "--latency-ratio", "0.005", *UNTUNED,
                       "--teacher", str(weights), "--out", str(run), *SETS],
              "below the smallest network the recipe allows: it measures")
    assert load_model(run / "reference" / "dense" / "model.pt").arch.name == "mobilenetv2_cifar"


def test_bad_targets_and_boards_are_one_line(capsys, tmp_path):
    base = ["tune", "--recipe", "quickstart", "--out", str(tmp_path / "run"), *SETS]
    _one_line(capsys, [*base, "--device", "nosuch", "--latency-ratio", "0.5"], "nosuch")
    api.add_device("emu", target="raspberry-pi-4", host="localhost", exec_prefix="qemu-aarch64", emulated=True)
    _one_line(capsys, [*base, "--device", "emu", "--latency-ratio", "0.5"], "device emu is emulated")
    _one_line(capsys, [*base, "--device", "local"], "give the target as --latency-ms X or --latency-ratio r")
    _one_line(capsys, [*base, "--device", "local", "--latency-ratio", "1.5"], "between 0 and 1")
    _one_line(capsys, [*base, "--device", "local", "--latency-ratio", "0.5", "--latency-mode", "fast"],
              "latency mode 'fast': expected untuned or tuned")
    # a tuned model's milliseconds are tuned kernels': sizing untuned artifacts by them would be wrong
    _one_line(capsys, [*base, "--device", "local", "--latency-ratio", "0.5", "--latency-mode", "tuned",
                       "--tune-trials", "0"], "--tune-trials 0 deploys untuned")
    assert not (tmp_path / "run").exists()  # refused before anything was written
