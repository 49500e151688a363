"""MetaSchedule tuning: a short real tuning run, then a recompile that reuses the target's database."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from compile_helpers import read_float32, small_net

from edgekd.compile import CompileOptions, compile_model
from edgekd.compile.build import run_library
from edgekd.compile.tuning import database_dir
from edgekd.config.target import target_search_dirs
from edgekd.errors import ToolchainError


@pytest.fixture()
def private_host_target():
    """A copy of the host profile under a unique name, so the test owns its tuning database."""
    name = f"host-test-{uuid.uuid4().hex[:8]}"
    data = yaml.safe_load((target_search_dirs()[1] / "host.yaml").read_text()) | {"name": name}
    directory = Path(os.environ["EDGEKD_CONFIG_DIR"]) / "targets"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(data))
    yield name
    (directory / f"{name}.yaml").unlink()
    shutil.rmtree(database_dir(name), ignore_errors=True)


@pytest.mark.slow
def test_tuned_compile_matches_pytorch_and_reuses_its_database(private_host_target, tmp_path):
    options = CompileOptions(tune_trials=8, onnx=False, runner=False)
    first = compile_model(small_net(), private_host_target, tmp_path / "first", options)
    tuning = first.manifest.tuning
    assert first.tuned and tuning.tasks >= 3 and tuning.tasks_tuned == tuning.tasks and tuning.trials >= 8
    assert first.tuning_measured > 0 and tuning.weight_prepack
    assert (database_dir(private_host_target) / "database_tuning_record.json").stat().st_size > 0

    example = read_float32(first.path / "input.bin", first.manifest.input.shape)
    reference = read_float32(first.path / "reference_output.bin", first.manifest.output.shape)
    np.testing.assert_allclose(run_library(first.path / "model.so", example), reference, atol=1e-4, rtol=0)

    second = compile_model(small_net(), private_host_target, tmp_path / "second", options)
    assert second.tuning_measured == 0
    assert second.manifest.tuning.tasks_reused == tuning.tasks and second.manifest.tuning.tasks_tuned == 0
    assert second.seconds <= 0.1 * first.seconds, (second.seconds, first.seconds)
    np.testing.assert_allclose(run_library(second.path / "model.so", example), reference, atol=1e-4, rtol=0)


def test_tuning_a_board_target_needs_remote_measurement(tmp_path):
    with pytest.raises(ToolchainError, match="remote measurement is not implemented"):
        compile_model(small_net(), "jetson-tx2", tmp_path / "out",
                      CompileOptions(tune_trials=4, onnx=False, runner=False))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_time_cap_keeps_partial_records_and_marks_tasks_unfinished(private_host_target, tmp_path):
    import json

    options = CompileOptions(tune_trials=64, tune_max_minutes=0.05, onnx=False, runner=False)
    artifact = compile_model(small_net(), private_host_target, tmp_path / "capped", options)
    assert artifact.tuned and artifact.tuning_measured > 0
    ledger = json.loads((database_dir(private_host_target) / "edgekd_tasks.json").read_text())
    per_task = artifact.manifest.tuning.trials // artifact.manifest.tuning.tasks_tuned
    assert ledger and all(entry["trials"] < per_task for entry in ledger.values())
    example = read_float32(artifact.path / "input.bin", artifact.manifest.input.shape)
    reference = read_float32(artifact.path / "reference_output.bin", artifact.manifest.output.shape)
    np.testing.assert_allclose(run_library(artifact.path / "model.so", example), reference, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_time_cap_in_the_gradient_phase_stops_cleanly(private_host_target, tmp_path):
    """A deadline that falls after the first round, while the gradient scheduler picks tasks: tuning ends
    without MetaSchedule's 'Check failed: (!task->is_terminated)' and keeps what was measured."""
    import json

    options = CompileOptions(tune_trials=100, tune_max_minutes=1.5, onnx=False, runner=False)
    artifact = compile_model(small_net(), private_host_target, tmp_path / "capped", options)
    tuning = artifact.manifest.tuning
    per_task = tuning.trials // tuning.tasks_tuned
    ledger = json.loads((database_dir(private_host_target) / "edgekd_tasks.json").read_text())
    trials = [entry["trials"] for entry in ledger.values()]
    per_batch = min(64, max(4, per_task // 2))  # tuning.py's num_trials_per_iter
    assert artifact.tuning_measured > tuning.tasks_tuned * per_batch  # past the first round (a batch per task)
    assert any(t < per_task for t in trials)  # and cut short by the deadline
    assert tuning.seconds < 1.5 * 60 + 90  # the deadline held (plus set-up and the batches in flight)
    example = read_float32(artifact.path / "input.bin", artifact.manifest.input.shape)
    reference = read_float32(artifact.path / "reference_output.bin", artifact.manifest.output.shape)
    np.testing.assert_allclose(run_library(artifact.path / "model.so", example), reference, atol=1e-4, rtol=0)
