"""SIGKILL inside epoch 2, and during a checkpoint write, then ``--resume``: the result must equal an
uninterrupted run bit for bit (model, optimizer, scheduler, RNG)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

VICTIM = Path(__file__).with_name("resume_victim.py")
ARGS = ["train", "--recipe", "quickstart", "--set", "training.epochs=3", "--set", "data.train_subset=192",
        "--set", "data.val_size=64", "--set", "data.test_subset=64", "--set", "data.batch_size=32",
        "--set", "teacher.model.kwargs.width_mult=0.25", "--set", "training.schedule=cosine"]
STEPS_PER_EPOCH = 6


def run(out: Path, kill_at: str = "none", resume: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEKD_PROGRESS": "0"}
    args = [sys.executable, str(VICTIM), kill_at, "--", *ARGS, "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def load(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_same_state(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][name]), (pid, name)
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    numpy_a, numpy_b = a["rng"]["numpy"], b["rng"]["numpy"]
    assert numpy_a[0] == numpy_b[0] and (numpy_a[1] == numpy_b[1]).all() and numpy_a[2:] == numpy_b[2:]
    assert a["rng"]["python"] == b["rng"]["python"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    done = run(out)
    assert done.returncode == 0, done.stderr
    return load(out)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [f"step:{STEPS_PER_EPOCH + 3}", "checkpoint:2"])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, reference, kill_at):
    killed = run(tmp_path, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load(tmp_path)["epoch"] == 1  # the torn second checkpoint never replaced the first
    resumed = run(tmp_path, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(load(tmp_path), reference)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [eval(line.replace("null", "None"))["epoch"] for line in lines] == [1, 2, 3]
