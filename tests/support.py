"""Helpers shared by test modules (importable as ``support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil

import pytest

from edgekd.testing.targets import host_profile_copy  # noqa: F401 - re-exported for the tests

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, what: str) -> None:
    """Skip locally, but fail in CI, when a component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {what} (scripts/setup.sh should have installed it)")
    pytest.skip(f"missing: {what}")


def require_executable(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"executable {name}")
    return path


# The quickstart recipe at test scale (generated shapes data, no files needed): tests/conftest.py's tiny runs.
TINY_OVERRIDES = [
    "data.train_subset=384", "data.val_size=64", "data.test_subset=128", "data.batch_size=32",
    "teacher.model.kwargs.width_mult=0.25", "training.epochs=1",
    # 24 structure-learning steps: lambda must move every step to reach the 0.5 block budgets
    "structure.learn.epochs=2", "structure.learn.lr=0.05", "structure.update_every=1", "structure.lambda_rate=3",
    "structure.finetune.epochs=1",
]


# The tiny quickstart on the channel grid latency models are profiled on (tests/conftest.py's tiny_latency)
TINY_LATENCY_GRID = ["structure.round_to=8"]


def tiny_profile_options():
    """Latency-profile settings small enough for one session-wide build (~2 min on 2 cores); the ±10% figures
    belong to the benchmark."""
    from edgekd import api

    return api.ProfileOptions(levels=4, refine=0, calibration=3, heldout=2, rounds=1, runs=10, min_seconds=0.2)


# MetaSchedule trials (a budget spread over a network's tasks) of the tune tests' compiles: the tiny quickstart
# teacher has 30 tasks, so 3 trials each, and its pruned networks 3-5 for each new task. Two or more records per
# workload teach the pre-trained cost model (edgekd/compile/cost_model.py) which schedules this board likes. With
# one trial per task a candidate's new kernels were a lottery against the dense network's: CI once saw a round
# measure as slow as the dense network, and with a warm dense reference a round adding 8 new tasks measured 1.33x
# the dense p50.
TUNE_TRIALS = 90
# ... and its half and three-quarter width networks, this many trials a task (``warm_board``). A pruned network of
# random widths then shared 16 of its 43 tasks with them, and with its 27 new tasks at 1 trial each measured 0.49x
# the dense p50, where on the teacher's records alone 1 trial a task measured 0.60x and 3 trials 0.51x (stop 37)
WARM_TRIALS_PER_TASK = 3
