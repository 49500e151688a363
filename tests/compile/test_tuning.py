"""MetaSchedule tuning: one short real tuning run (then a recompile that reuses the target's database), and the
``--tune-minutes`` deadline driven by a fake clock through MetaSchedule's real task scheduler, with instant
stand-ins for building and measuring — no assertion depends on how fast this machine is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from compile_helpers import read_float32
from support import host_profile_copy

from edgekd.compile import CompileOptions, compile_model
from edgekd.compile import tuning as tuning_module
from edgekd.compile.build import run_library
from edgekd.compile.tuning import LEDGER_NAME, database_dir, tune_module, tune_tasks
from edgekd.config.target import load_target
from edgekd.errors import ToolchainError
from edgekd.testing.models import small_net

PER_TASK = 16  # trials per task in the deadline tests: two batches of 8 (tuning.py's num_trials_per_iter)


@pytest.fixture()
def private_host_target():
    """A copy of the host profile under a unique name, so the test owns its tuning database."""
    profile = host_profile_copy(Path(os.environ["EDGEKD_CONFIG_DIR"]) / "targets")
    yield profile.stem
    profile.unlink()
    shutil.rmtree(database_dir(profile.stem), ignore_errors=True)


@pytest.mark.slow
def test_tuned_compile_matches_pytorch_and_reuses_its_database(warm_tuning, tmp_path):
    """The one real tuning run of the suite (tests/conftest.py's ``warm_tuning``, 8 trials): built, measured on
    this machine, recompiled from the database without measuring again."""
    profile, first = warm_tuning
    name = profile.stem
    tuning = first.manifest.tuning
    assert first.tuned and tuning.tasks >= 3 and tuning.tasks_tuned == tuning.tasks and tuning.trials >= 8
    assert first.tuning_measured > 0 and tuning.weight_prepack
    assert (database_dir(name) / "database_tuning_record.json").stat().st_size > 0

    example = read_float32(first.path / "input.bin", first.manifest.input.shape)
    reference = read_float32(first.path / "reference_output.bin", first.manifest.output.shape)
    np.testing.assert_allclose(run_library(first.path / "model.so", example), reference, atol=1e-4, rtol=0)

    options = CompileOptions(tune_trials=8, onnx=False, runner=False)
    second = compile_model(small_net(), str(profile), tmp_path / "second", options)
    assert second.tuning_measured == 0
    assert second.manifest.tuning.tasks_reused == tuning.tasks and second.manifest.tuning.tasks_tuned == 0
    np.testing.assert_allclose(run_library(second.path / "model.so", example), reference, atol=1e-4, rtol=0)


def test_tuning_a_board_target_needs_a_board_to_measure_on(tmp_path):
    """Without a board (``--device``) to time candidates on, a board target is refused before any work."""
    with pytest.raises(ToolchainError, match="--device NAME"):
        compile_model(small_net(), "jetson-tx2", tmp_path / "out",
                      CompileOptions(tune_trials=4, onnx=False, runner=False))
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def host_module():
    """SmallNet as a prepared Relax module for the host target, and its number of tuning tasks."""
    from tvm.s_tir import meta_schedule as ms

    from edgekd.compile import build

    torch.set_num_threads(1)
    profile = load_target("host")
    target = build.make_target(profile.tvm_target.as_tvm_dict(host_cpu=build.system_cpu()))
    mod = build.prepare_module(build.import_model(small_net(), torch.zeros(1, 3, 32, 32)), target, True)
    return mod, target, len(ms.relax_integration.extract_tasks(mod, target))


class FakeMeasurement:
    """Instant stand-ins for MetaSchedule's builder and runner (its own PyBuilder/PyRunner interfaces), so the
    real task scheduler runs in a second; counts the batches sent to be measured."""

    def __init__(self, scratch: Path) -> None:
        from tvm.ir.utils import derived_object
        from tvm.s_tir import meta_schedule as ms

        fake = self
        self.batches = 0
        self.candidates = 0

        @derived_object
        class _Builder(ms.builder.PyBuilder):
            def build(self, build_inputs):
                # RemoveBuildArtifact deletes each artifact's folder: give it one of ours to delete.
                return [ms.builder.BuilderResult(str(Path(tempfile.mkdtemp(dir=scratch)) / "mod.tar"), None)
                        for _ in build_inputs]

        @derived_object
        class _Future(ms.runner.PyRunnerFuture):
            def done(self) -> bool:
                return True

            def result(self):
                return ms.runner.RunnerResult([1e-5], None)

        @derived_object
        class _Runner(ms.runner.PyRunner):
            def run(self, runner_inputs):
                fake.batches += 1
                fake.candidates += len(runner_inputs)
                return [_Future() for _ in runner_inputs]

        self.builder, self.runner = _Builder(), _Runner()


@pytest.fixture()
def fake_measurement(monkeypatch, tmp_path) -> FakeMeasurement:
    """Tuning with instant builds and measurements and a cheap search strategy (random replay, no evolution);
    the task scheduler, tune contexts, database, callbacks and edgekd's deadline wrapper are the real ones."""
    from tvm.s_tir import meta_schedule as ms

    scratch = tmp_path / "builds"
    scratch.mkdir()
    fake = FakeMeasurement(scratch)
    monkeypatch.setattr(ms.builder, "LocalBuilder", lambda **_: fake.builder)
    monkeypatch.setitem(tuning_module.MEASURE_BACKENDS, "local", lambda _profile: fake.runner)
    monkeypatch.setattr(tuning_module, "_search_strategy", lambda _per_task: ms.search_strategy.ReplayTrace())
    return fake


def _ledger(target_name: str) -> dict[str, int]:
    entries = json.loads((database_dir(target_name) / LEDGER_NAME).read_text()).values()
    return {entry["task"]: entry["trials"] for entry in entries}


@pytest.mark.parametrize("phase", ["first round", "gradient phase"])
def test_deadline_stops_tuning_cleanly_and_keeps_the_records(phase, host_module, fake_measurement,
                                                             private_host_target):
    """The fake clock passes the deadline after a set number of measured batches: during the first round
    (every task still gets its first batch), or after it, while the gradient scheduler picks tasks (where
    terminating tasks from a callback crashed with 'Check failed: (!task->is_terminated)')."""
    from tvm.s_tir import meta_schedule as ms

    mod, target, tasks = host_module
    after = 1 if phase == "first round" else tasks + 2
    fake = fake_measurement

    def clock() -> float:
        return 1e9 if fake.batches >= after else 0.0

    profile = load_target(private_host_target)
    result = tune_module(mod, target, profile, PER_TASK * tasks, max_minutes=1.0, clock=clock)

    assert result.tasks == result.tasks_tuned == tasks and result.trials_per_task == PER_TASK
    assert fake.batches == max(after, tasks)  # no task asked for a batch once the deadline had passed
    ledger = _ledger(private_host_target)
    assert len(ledger) == tasks
    assert all(trials >= 1 for trials in ledger.values())  # the first round always completes
    cut_short = [name for name, trials in ledger.items() if trials < PER_TASK]
    assert len(cut_short) == (tasks if phase == "first round" else tasks - 2)
    # Every measured candidate is kept, in the database on disk, and counted in the ledger.
    assert result.measured == fake.candidates == sum(ledger.values()) > 0
    assert len(ms.database.JSONDatabase(work_dir=str(database_dir(private_host_target)))) == result.measured

    # A later tuning without a deadline tunes only the tasks cut short, to the full budget.
    again = tune_module(mod, target, profile, PER_TASK * tasks)
    assert again.tasks_tuned == len(cut_short) and again.tasks_reused == tasks - len(cut_short)
    assert set(_ledger(private_host_target).values()) == {PER_TASK}


def test_without_a_deadline_every_task_gets_its_budget(host_module, fake_measurement, private_host_target):
    """The control: the same fake tuning with a clock that never passes the deadline runs every batch."""
    mod, target, tasks = host_module
    result = tune_module(mod, target, load_target(private_host_target), PER_TASK * tasks, max_minutes=1.0,
                         clock=lambda: 0.0)
    assert fake_measurement.batches == 2 * tasks  # two batches of PER_TASK // 2 per task
    assert set(_ledger(private_host_target).values()) == {PER_TASK}
    assert result.measured == fake_measurement.candidates == PER_TASK * tasks


@pytest.mark.parametrize("verbose", [False, True])
def test_task_tables_go_to_the_log_unless_verbose(verbose, host_module, fake_measurement, private_host_target,
                                                  monkeypatch, capfd):
    mod, target, tasks = host_module
    monkeypatch.setenv("EDGEKD_VERBOSE", "1" if verbose else "0")
    tune_module(mod, target, load_target(private_host_target), PER_TASK * tasks)
    out, err = capfd.readouterr()
    assert "Total trials" not in out  # stdout is for --json
    assert ("Total trials" in err) == verbose
    logs = "".join(p.read_text() for p in (database_dir(private_host_target) / "logs").glob("*task_scheduler.log"))
    assert "Total trials" in logs


def test_a_lost_board_ends_tuning_and_keeps_what_was_timed(host_module, fake_measurement, private_host_target):
    """A runner handed in (as edgekd's SSH runner is) that loses its board during the third batch: that batch
    fails, no task asks for another batch (not even its first), the two timed batches stay in the board's own
    database, and the ledger counts only timed trials, so a later tuning measures the rest."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    mod, target, tasks = host_module
    state: dict = {"batches": 0, "lost": None}

    @derived_object
    class _Future(ms.runner.PyRunnerFuture):
        def __init__(self, ok: bool) -> None:
            super().__init__()
            self.ok = ok

        def done(self) -> bool:
            return True

        def result(self):
            return ms.runner.RunnerResult([1e-5], None) if self.ok else ms.runner.RunnerResult(None, "board lost")

    @derived_object
    class _Board(ms.runner.PyRunner):
        @property
        def lost(self):
            return state["lost"]

        def run(self, runner_inputs):
            state["batches"] += 1
            ok = state["batches"] <= 2
            if not ok:
                state["lost"] = "connection lost"
            return [_Future(ok) for _ in runner_inputs]

    profile = load_target(private_host_target)
    result = tune_module(mod, target, profile, PER_TASK * tasks, measure=lambda _profile: _Board(),
                         board="x86_64-test-board")
    assert state["batches"] == 3
    assert result.database == database_dir(private_host_target, "x86_64-test-board")
    assert not database_dir(private_host_target).joinpath(LEDGER_NAME).exists()  # this machine's db untouched
    entries = json.loads((result.database / LEDGER_NAME).read_text()).values()
    trials = sorted(entry["trials"] for entry in entries)
    assert trials == [0] * (tasks - 2) + [PER_TASK // 2] * 2
    database = ms.database.JSONDatabase(work_dir=str(result.database))
    timed = [record for record in database.get_all_tuning_records() if record.run_secs]
    assert len(timed) >= PER_TASK  # both timed batches are on disk
    shutil.rmtree(database_dir(private_host_target, "x86_64-test-board"), ignore_errors=True)


def test_databases_are_kept_per_target_and_board_cpu():
    """This machine keeps its per-target path; each board CPU gets its own database beside it, an emulated board
    a separate one marked ``emulated-`` (never the real board's), and boards whose kernels name no CPU model
    are still told apart by their CPU count."""
    from edgekd.compile.tuning import board_key

    real = board_key("aarch64", "ARMv8 Processor rev 3 (v8l)", False, 6)
    emulated = board_key("aarch64", "ARMv8 Processor rev 3 (v8l)", True, 6)
    assert real.startswith("aarch64-armv8-processor-rev-3-v8l-") and emulated == f"emulated-{real}"
    assert board_key("aarch64", None, False, 6) != board_key("aarch64", None, False, 4)
    assert board_key("aarch64", None, False, 4) == board_key("aarch64", None, False, 4)  # stable
    assert database_dir("jetson-tx2", real).name == f"jetson-tx2@{real}"
    assert database_dir("jetson-tx2", emulated) != database_dir("jetson-tx2", real)
    assert database_dir("host", None) == database_dir("host") and database_dir("host").name == "host"


def _workload(size: int):
    import tvm
    from tvm import te

    a = te.placeholder((size,), name="a")
    b = te.compute((size,), lambda i: a[i] + 1.0, name="b")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def test_a_database_is_read_once_while_its_files_are_unchanged(tmp_path):
    from tvm.s_tir import meta_schedule as ms

    first = tuning_module.open_database(tmp_path)
    assert tuning_module.open_database(tmp_path) is first  # nothing changed: not parsed again
    other = ms.database.JSONDatabase(work_dir=str(tmp_path))  # another process's compile, say
    other.commit_workload(_workload(8))
    again = tuning_module.open_database(tmp_path)
    assert again is not first and len(again.get_all_tuning_records()) == 0
    assert again.has_workload(_workload(8))  # what the other writer added is seen
    again.commit_workload(_workload(16))  # our own write, then remembered (as tune_tasks does under its lock)
    tuning_module._remember(tmp_path, again)
    assert tuning_module.open_database(tmp_path) is again


def _reduction(block: str):
    """One workload, its reduction block named as a network's variable would name it."""
    import tvm
    from tvm import te

    a = te.placeholder((16, 32), name="a")
    k = te.reduce_axis((0, 32), name="k")
    b = te.compute((16,), lambda i: te.sum(a[i, k], axis=k), name=block)
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def test_a_workload_tuned_again_under_other_block_names_keeps_the_database_readable(
        host_module, fake_measurement, private_host_target):
    """The same reduction in two networks (``lv1_red``, ``lv203_red``): equal to the database, which replays a
    record's trace on its stored copy. Tuned again with a larger budget, the second must be tuned on that copy:
    a trace naming ``lv203_red`` would make every later read of the database fail."""
    from tvm.s_tir import meta_schedule as ms

    _mod, target, _tasks = host_module
    profile = load_target(private_host_target)
    first, second = _reduction("lv1_red"), _reduction("lv203_red")
    tune_tasks([ms.ExtractedTask("reduce", first, target, [first], 1)], target, profile, 2)
    tune_tasks([ms.ExtractedTask("reduce", second, target, [second], 1)], target, profile, 4)  # tuned again
    directory = database_dir(private_host_target)
    database = ms.database.JSONDatabase(work_dir=str(directory))  # read from disk
    assert len(database.get_all_tuning_records()) == 2 + 4  # both tunings kept (the second: a whole new budget)
    assert len((directory / "database_workload.json").read_text().splitlines()) == 1
    assert database.query_schedule(second, target, workload_name="main") is not None


def _write_unreadable_database(directory: Path) -> None:
    """A database written before that fix: a trace naming ``lv203_red`` recorded against the ``lv1_red``
    workload, beside one that replays."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from edgekd.compile.build import make_target

    target = make_target({"kind": "llvm"})
    writer = ms.database.JSONDatabase(work_dir=str(directory))
    workload = writer.commit_workload(_reduction("lv1_red"))
    for block in ("lv1_red", "lv203_red"):  # the second one's trace names a block the workload lacks
        schedule = s_tir.Schedule(_reduction(block))
        schedule.get_loops(schedule.get_sblock(block))
        writer.commit_tuning_record(ms.database.TuningRecord(schedule.trace, workload, [1e-5], target))


def test_records_that_no_longer_replay_are_set_aside_and_the_rest_read(tmp_path, capsys):
    """Such a database cannot be read by MetaSchedule at all: the record is set aside with one line, the others
    kept."""
    from tvm.s_tir import meta_schedule as ms

    _write_unreadable_database(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - what MetaSchedule itself does with it: a tvm error
        ms.database.JSONDatabase(work_dir=str(tmp_path))

    database = tuning_module.open_database(tmp_path)
    assert len(database.get_all_tuning_records()) == 1
    assert "1 record(s)" in capsys.readouterr().err
    assert len((tmp_path / tuning_module.UNREADABLE_NAME).read_text().splitlines()) == 1
    assert len(ms.database.JSONDatabase(work_dir=str(tmp_path)).get_all_tuning_records()) == 1  # readable again


def test_setting_records_aside_waits_for_a_tuner_holding_the_database_lock(tmp_path):
    """The repair rewrites the records file: while another process tunes into the database (it holds the lock and
    appends), the rewrite waits; a tuner repairing its own database under its lock does not wait for itself."""
    _write_unreadable_database(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys\nh = open(sys.argv[1], 'w')\nfcntl.flock(h, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\nsys.stdin.read()", str(tmp_path / ".lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        opened: dict = {}
        reader = threading.Thread(target=lambda: opened.update(database=tuning_module.open_database(tmp_path)))
        reader.start()
        reader.join(timeout=2.0)
        assert reader.is_alive() and not (tmp_path / tuning_module.UNREADABLE_NAME).exists()  # waiting
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    reader.join(timeout=120)
    assert not reader.is_alive() and len(opened["database"].get_all_tuning_records()) == 1

    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    _write_unreadable_database(tmp_path)
    with tuning_module._locked(tmp_path):  # tune_tasks' own read: the lock is this thread's already
        assert len(tuning_module.open_database(tmp_path).get_all_tuning_records()) == 1


def _popen_workers() -> int:
    """This process's TVM popen worker children (the builder's and the local runner's)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and b"popen_worker" in (stat.parent / "cmdline").read_bytes():
                count += 1
        except (OSError, ValueError, IndexError):
            continue
    return count


def test_tuning_leaves_no_worker_processes_behind(host_module, private_host_target):
    """Each tuning session's builder and local runner stop their workers when it ends: a tuned profile runs one
    session per 64 tasks, and every worker left alive holds ~0.7 GB."""
    from tvm.s_tir import meta_schedule as ms

    _mod, target, _tasks = host_module
    profile = load_target(private_host_target)
    before = _popen_workers()
    for block in ("a_red", "b_red"):
        module = _reduction(block)
        tune_tasks([ms.ExtractedTask("reduce", module, target, [module], 1)], target, profile, 2)
        assert _popen_workers() == before
