"""MetaSchedule tuning with one persistent database per target (imports TVM lazily).

Input: a prepared Relax module (:func:`edgekd.compile.build.prepare_module`), its ``tvm.target.Target``,
the target profile and a trial budget. Output: records added to ``cache_dir()/tuning/<target>/`` — or, for
candidates measured on a board, ``cache_dir()/tuning/<target>@<board key>/`` (:func:`database_dir`) —
(MetaSchedule's ``database_workload.json`` / ``database_tuning_record.json``) and a :class:`TuningResult`.

One database per target *and* board CPU: MetaSchedule's database ignores the target (apache/tvm#15549), so
records timed on one CPU must not be picked for another. The board key (from the device probe: architecture
and CPU model, see :func:`board_key`) names the board's database; an emulated board's key starts with
``emulated-``, so its records (qemu timings) are never applied to a real board's compile.

Reuse: the database is keyed by task (the structural hash of each extracted TIR workload and the
target), not by model, so a later compile of the same or a similar network (a pruned MobileNetV2 shares
most layer shapes with the dense one) reuses every task already tuned with at least as many trials per
task; only the rest are measured. A ledger (``edgekd_tasks.json``) records the trials given to each task,
so a task whose search space was exhausted early is not tuned again.

Traps handled (DESIGN.md §3): tuning needs psutil, cloudpickle, tornado and xgboost (in
requirements.lock); apache-tvm-ffi 0.1.15.x segfaults, so :func:`ensure_measurable` refuses it up front;
the builder's workers would import ``tvm.s_tir.tensor_intrin`` (~50 s)
on every batch and time out; :func:`register_fast_build` registers a build function without it in each
worker (passed as the builder's ``initializer``/``f_build``), and the timeout is raised to 120 s. The
same import also runs once in this process when MetaSchedule creates its tune contexts (~100 s on this
loaded 2-core machine, mostly CUDA/RISC-V intrinsics); :func:`_import_cpu_tensor_intrinsics` registers
only the intrinsics of the target's CPU family (x86: ~1 s) before that happens.

Measurement: ``local`` (the host target) runs candidates on this machine. Other targets are measured on
the board by a runner that the caller hands in (``tune_module(..., measure=factory)``: a MetaSchedule
``Runner`` built from the profile; edgekd's SSH runner lives on the device floor,
:mod:`edgekd.device.tuning_runner`, so this module never imports it), or by a backend registered in
:data:`MEASURE_BACKENDS` under ``"remote"``. Candidates are always exported as shared libraries linked by the
target's own toolchain (:func:`register_fast_build` registers the export in the builder's workers), so what is
measured is what the board can load. A runner whose ``lost`` attribute becomes a reason (e.g. the board's
connection is gone) ends tuning early, like a deadline: the records measured so far are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.atomic import atomic_write_json, atomic_write_text
from edgekd.compile.cost_model import pretrained_cost_model
from edgekd.config.target import TargetProfile
from edgekd.errors import CompileError, ToolchainError, first_line
from edgekd.paths import cache_dir

__all__ = ["TuningResult", "database_dir", "open_database", "board_key", "tune_module", "tune_tasks", "task_key",
           "read_ledger", "ensure_measurable", "register_fast_build", "make_builder", "FAST_BUILD_FUNC",
           "FAST_EXPORT_FUNC", "MEASURE_BACKENDS", "BUILD_TIMEOUT_S", "MeasureFactory"]

FAST_BUILD_FUNC = "edgekd.meta_schedule.build"
#: ``on_batch(trials, task name, fastest mean ms or None)``, called after each measured batch
BatchCallback = Callable[[int, str, "float | None"], None]
FAST_EXPORT_FUNC = "edgekd.meta_schedule.export"
CANDIDATE_NAME = "candidate.so"
# Measured here (DESIGN.md §3): MetaSchedule segfaults in tvm::ffi::ToJSONGraph with these tvm-ffi releases.
KNOWN_BAD_TVM_FFI = ("0.1.15",)
GOOD_TVM_FFI = "0.1.14.post0"
TUNING_PACKAGES = ("psutil", "cloudpickle", "tornado", "xgboost")  # the wheel's meta-schedule extra
BUILD_TIMEOUT_S = 120
LEDGER_NAME = "edgekd_tasks.json"


@dataclass(frozen=True)
class TuningResult:
    """What one tuning call did."""

    database: Path
    trials_per_task: int
    tasks: int
    tasks_tuned: int
    tasks_reused: int
    measured: int
    seconds: float
    #: records of the database the cost model was pre-trained on (0: MetaSchedule's fresh model), see
    #: :mod:`edgekd.compile.cost_model`
    pretrained_on: int = 0

    @property
    def trials(self) -> int:
        """Trials requested for this compile (tuned tasks × trials per task)."""
        return self.tasks_tuned * self.trials_per_task


def database_dir(target_name: str, board: str | None = None) -> Path:
    """The persistent MetaSchedule database directory of one target, measured on this machine (``board`` None)
    or on the board whose :func:`board_key` is ``board``."""
    return cache_dir() / "tuning" / (target_name if not board else f"{target_name}@{board}")


def board_key(arch: str | None, cpu_model: str | None, emulated: bool, cpus: int | None = None) -> str:
    """The database key of a board's CPU: ``<arch>-<cpu model slug>-<digest of arch, model and CPU count>``
    (many ARM kernels name no CPU model: the count then still tells a 6-core TX2 from a 4-core Pi), prefixed
    ``emulated-`` for an emulated board (its timings are the emulator's, never a real board's)."""
    text = f"{arch or 'unknown'}|{cpu_model or 'unknown'}|{cpus or 0}"
    slug = re.sub(r"[^a-z0-9]+", "-", (cpu_model or "unknown").lower()).strip("-")[:40] or "unknown"
    key = f"{arch or 'unknown'}-{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return f"emulated-{key}" if emulated else key


def register_fast_build(compiler: str | None = None) -> None:
    """Builder-worker initializer: register a build function that skips ``tvm.s_tir.tensor_intrin``, and,
    with ``compiler`` (one C compiler executable, the target's toolchain), an export that links each candidate
    into a shared library with it (``FAST_EXPORT_FUNC``; the default export makes a tar that the measuring
    side must link itself, which a board cannot).

    The default build imports the tensorization intrinsics (~50 s here), which fp32 CPU schedules never
    use; it runs in every fresh worker pool, i.e. for every batch.
    """
    import tvm_ffi

    def build(mod: Any, target: Any, _params: Any) -> Any:
        from tvm.driver import build as tvm_build
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

        mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
        return tvm_build(mod, target=target)

    tvm_ffi.register_global_func(FAST_BUILD_FUNC, build, override=True)
    if compiler:
        def export(mod: Any) -> str:
            from tvm.support import cc

            # MetaSchedule's RemoveBuildArtifact callback removes the artifact's directory after measuring
            path = os.path.join(tempfile.mkdtemp(prefix="edgekd-candidate-"), CANDIDATE_NAME)
            mod.export_library(path, fcompile=cc.cross_compiler(compiler))
            return path

        tvm_ffi.register_global_func(FAST_EXPORT_FUNC, export, override=True)


def make_builder(compiler: str, max_workers: int | None = None) -> Any:
    """A builder with edgekd's fast build and the target toolchain's export (see :func:`register_fast_build`): each
    candidate becomes a ``candidate.so`` the target can load. Its workers live across batches
    (:class:`~edgekd.compile.builder.PooledBuilder`); the caller closes it."""
    from tvm.s_tir.meta_schedule.utils import cpu_count

    from edgekd.compile.builder import PooledBuilder

    return PooledBuilder(timeout_sec=BUILD_TIMEOUT_S, max_workers=max_workers or cpu_count(logical=True),
                         initializer=functools.partial(register_fast_build, compiler),
                         f_build=FAST_BUILD_FUNC, f_export=FAST_EXPORT_FUNC)


def _import_cpu_tensor_intrinsics(arch: str) -> None:
    """Register only the CPU tensor intrinsics MetaSchedule's CPU rules can use, not all of them.

    ``TuneContext`` imports ``tvm.s_tir.tensor_intrin``, whose ``__init__`` builds every intrinsic of every
    backend. Pre-seeding the package as a bare namespace and importing just ``x86`` or ``arm_cpu`` gives
    the CPU rules what they look up by name. Once seeded, this process keeps the light package.
    """
    import importlib
    import importlib.util
    import sys
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return
        package = types.ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules[name] = package
    importlib.import_module(f"{name}.{'arm_cpu' if arch == 'aarch64' else 'x86'}")


@contextmanager
def _foreign_log_handlers_detached() -> Iterator[None]:
    """Detach, for the duration, handlers on MetaSchedule's logger that MetaSchedule did not create.

    MetaSchedule rebuilds its logging with ``dictConfig`` from the names of the handlers already on its
    logger (``logging.py: create_loggers``): an unnamed handler crashes it ("'NoneType' object has no
    attribute 'format'") and a named one that its config does not define fails too — e.g. a handler that a
    host application or pytest's log capture attached. They are re-attached afterwards.
    """
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    foreign = [h for h in logger.handlers if not (h.get_name() or "").startswith("tvm.s_tir.meta_schedule")]
    for handler in foreign:
        logger.removeHandler(handler)
    try:
        # MetaSchedule's console handler writes to "ext://sys.stdout", bound when it configures its logging
        # (here): its progress tables go to stderr instead, so `--json` keeps stdout to one document.
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler in foreign:
            logger.addHandler(handler)


def _search_strategy(per_task: int) -> Any:
    """Evolutionary search sized to the budget: small budgets do not pay for a 512-schedule population."""
    from tvm.s_tir import meta_schedule as ms

    population = min(512, max(64, 32 * per_task))  # 512 is MetaSchedule's default
    return ms.search_strategy.EvolutionarySearch(population_size=population,
                                                 genetic_num_iters=4 if per_task >= 16 else 2)


def _local_runner(profile: TargetProfile) -> Any:
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.LocalRunner(timeout_sec=60)


#: A MetaSchedule runner factory: the target profile -> a ``Runner`` (e.g. ``ms.runner.LocalRunner``).
MeasureFactory = Callable[[TargetProfile], Any]
MEASURE_BACKENDS: dict[str, MeasureFactory] = {"local": _local_runner}


def ensure_measurable(profile: TargetProfile, measure: MeasureFactory | None = None) -> str:
    """The measurement backend name for ``profile`` (``"handed"`` when the caller hands in ``measure``).

    Raises:
        ToolchainError: no backend can measure candidates for this target from here.
    """
    import importlib.util

    from edgekd.compile.runtime_libs import host_versions

    missing = [name for name in TUNING_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ToolchainError(
            f"MetaSchedule tuning needs {', '.join(missing)}; install them with "
            f"'pip install {' '.join(missing)}' (they are in requirements.lock)"
        )
    ffi_version = host_versions()[1]
    if ffi_version.startswith(KNOWN_BAD_TVM_FFI):
        raise ToolchainError(
            f"apache-tvm-ffi {ffi_version} crashes MetaSchedule tuning (segfault in ToJSONGraph); "
            f"install apache-tvm-ffi=={GOOD_TVM_FFI} (requirements.lock) or compile without --tune-trials"
        )
    if measure is not None:
        return "handed"
    backend = "local" if profile.is_host else "remote"
    if backend not in MEASURE_BACKENDS:
        raise ToolchainError(
            f"target {profile.name}: tuning measures candidates on the board; name the board with "
            f"`edgekd compile ... --device NAME` (see `edgekd device add`), or compile without --tune-trials"
        )
    return backend


# directory -> (stamp of its JSON files, the JSONDatabase read from them): a board's database grows to
# hundreds of MB (a tuned latency profile's: 134 MB, 17 s to parse) and a profile compiles dozens of networks
_OPEN: dict[Path, tuple[tuple[tuple[int, int], ...], Any]] = {}
_DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")
UNREADABLE_NAME = "database_tuning_record.unreadable.json"
_HELD: set[tuple[Path, int]] = set()  # (database directory, thread) holding its lock now, for _locked


def _stamp(directory: Path) -> tuple[tuple[int, int], ...]:
    stats = [(directory / name).stat() if (directory / name).exists() else None for name in _DATABASE_FILES]
    return tuple((st.st_size, st.st_mtime_ns) if st else (-1, 0) for st in stats)


def open_database(directory: Path) -> Any:
    """The MetaSchedule JSON database in ``directory``, read once per process while its files are unchanged
    (another process's records change their size and time: the database is read again)."""
    from tvm.s_tir import meta_schedule as ms

    directory = Path(directory)
    stamp = _stamp(directory)
    cached = _OPEN.get(directory)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    written_here = (-1, 0) in stamp  # a new database's files are created by reading it
    try:
        database = ms.database.JSONDatabase(work_dir=str(directory))
    except Exception:  # noqa: BLE001 - tvm raises its own error types: a record that no longer replays
        with _locked(directory):  # a tuner appending meanwhile would lose its records to the rewrite
            set_aside = _set_aside_unreadable_records(directory)
        try:
            database = ms.database.JSONDatabase(work_dir=str(directory))
        except Exception as err:  # noqa: BLE001
            raise CompileError(f"the tuning database {directory} cannot be read ({first_line(err)}); move "
                               "it aside to start a new one") from None
        if set_aside:  # 0: another process set them aside while this one waited for the lock
            print(f"edgekd: {set_aside} record(s) of {directory} no longer replay on their workload: set aside "
                  f"in {UNREADABLE_NAME}", file=sys.stderr)
        written_here = True
    if written_here:
        _remember(directory, database)
    else:  # the stamp from before reading: a write meanwhile makes the next call read again
        _OPEN[directory] = (stamp, database)
    return database


def _set_aside_unreadable_records(directory: Path) -> int:
    """Move the records whose trace does not replay on the workload they name (MetaSchedule refuses to read a
    database holding one) to ``UNREADABLE_NAME``; the file is rewritten atomically. Returns how many."""
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

    workloads = [Workload.from_json(json.loads(line))
                 for line in (directory / _DATABASE_FILES[0]).read_text().splitlines() if line.strip()]
    kept, unreadable = [], []
    for line in (directory / _DATABASE_FILES[1]).read_text().splitlines():
        if not line.strip():
            continue
        try:
            index, record = json.loads(line)
            TuningRecord.from_json(record, workloads[index])
            kept.append(line)
        except Exception:  # noqa: BLE001 - tvm raises its own error types
            unreadable.append(line)
    if unreadable:
        with open(directory / UNREADABLE_NAME, "a") as handle:
            handle.write("".join(f"{line}\n" for line in unreadable))
        atomic_write_text(directory / _DATABASE_FILES[1], "".join(f"{line}\n" for line in kept))
    return len(unreadable)


def _remember(directory: Path, database: Any) -> None:
    """``database`` wrote its own records to ``directory`` (under the lock): its files match it again."""
    _OPEN[Path(directory)] = (_stamp(Path(directory)), database)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Exclusive lock on a target's database (concurrent compiles would interleave JSON records); re-entrant in
    one thread (``tune_tasks`` reads its database under the lock, and a read may have to repair it), since a
    second ``flock`` through another open file would wait for this thread's own lock forever."""
    held = (Path(directory).resolve(), threading.get_ident())
    if held in _HELD:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD.add(held)
        try:
            yield
        finally:
            _HELD.discard(held)
            fcntl.flock(handle, fcntl.LOCK_UN)


def task_key(task: Any, target: Any) -> str:
    """A task's ledger key: the structural hash of its workload and a digest of the target."""
    import tvm_ffi

    target_digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    return f"{tvm_ffi.structural_hash(task.dispatched[0]) & (2**64 - 1):016x}-{target_digest}"


def read_ledger(directory: Path) -> dict[str, dict[str, Any]]:
    """The trials given to each task of a database (:func:`task_key` → ``{task, trials}``)."""
    path = directory / LEDGER_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def tune_module(mod: Any, target: Any, profile: TargetProfile, trials: int,
                max_minutes: float | None = None, clock: Callable[[], float] = time.monotonic, *,
                measure: MeasureFactory | None = None, board: str | None = None,
                on_batch: BatchCallback | None = None, per_task: int | None = None) -> TuningResult:
    """Tune the tasks of ``mod`` not yet in the target's database, spreading ``trials`` over all tasks (or, with
    ``per_task``, giving each task that many: the latency profiler's networks, tuned as its lattice kernels are).

    ``max_minutes`` bounds the tuning wall time: when it runs out, the remaining tasks are stopped and the
    records measured so far are kept (tasks cut short are tuned again by a later compile). The deadline is
    checked each time a task asks for its next batch of candidates; every task gets at least its first
    batch (so the first round always completes), and batches already in flight are joined and recorded.
    ``clock`` (seconds, monotonic) is what the deadline is read from; tests pass a fake one.
    ``measure`` builds the runner that times candidates (default: :data:`MEASURE_BACKENDS`); ``board`` is the
    measuring board's :func:`board_key` (its own database; None = this machine's, :func:`database_dir`). A
    runner that reports ``lost`` ends tuning like a deadline; only the trials it measured count as done.
    ``on_batch(trials, task, best_ms)`` is told after each measured batch (for a progress bar): how many
    candidates it held, the task's name and the fastest mean time of the batch (None when none ran).

    Raises:
        ToolchainError: the target cannot be measured from here. CompileError: MetaSchedule failed.
    """
    from tvm.s_tir import meta_schedule as ms

    tasks = ms.relax_integration.extract_tasks(mod, target)
    if per_task is None:
        per_task = max(1, math.ceil(trials / len(tasks))) if tasks else 0
    return tune_tasks(tasks, target, profile, per_task, max_minutes, clock, measure=measure, board=board,
                      on_batch=on_batch)


def tune_tasks(tasks: list[Any], target: Any, profile: TargetProfile, per_task: int,
               max_minutes: float | None = None, clock: Callable[[], float] = time.monotonic, *,
               measure: MeasureFactory | None = None, board: str | None = None,
               on_batch: BatchCallback | None = None) -> TuningResult:
    """Tune MetaSchedule's extracted ``tasks`` that have fewer than ``per_task`` trials in the target's ledger,
    ``per_task`` trials each (:func:`tune_module` spreads a network's budget over its tasks; the latency profiler
    gives every kernel of its lattice the same number). Tasks repeated in ``tasks`` are tuned once. The other
    arguments are :func:`tune_module`'s."""
    started = time.perf_counter()
    directory = database_dir(profile.name, board)
    with _locked(directory):
        if not tasks:
            return TuningResult(directory, 0, 0, 0, 0, 0, time.perf_counter() - started)
        ledger = read_ledger(directory)
        unique = {task_key(task, target): task for task in tasks}
        todo = [(task, key) for key, task in unique.items() if ledger.get(key, {}).get("trials", 0) < per_task]
        database = open_database(directory)
        before = len(database)
        pretrained_on = 0
        if todo:
            deadline = clock() + 60 * max_minutes if max_minutes else None
            _import_cpu_tensor_intrinsics(profile.arch)  # before pre-training makes the first TuneContext
            cost_model, pretrained_on = pretrained_cost_model(database, target)
            try:
                done = _run_tuning([task for task, _ in todo], per_task, directory, database, profile, deadline,
                                   clock, measure, on_batch, cost_model)
            finally:
                _remember(directory, database)
            for task, key in todo:
                trials_done = per_task if done is None else done.get(task.task_name, 0)
                ledger[key] = {"task": task.task_name, "trials": trials_done}
            atomic_write_json(directory / LEDGER_NAME, ledger)
        measured = len(database) - before
    return TuningResult(directory, per_task, len(unique), len(todo), len(unique) - len(todo), measured,
                        time.perf_counter() - started, pretrained_on)


def _on_stored_workload(task: Any, database: Any) -> Any:
    """``task``, tuned on the database's own copy of its workload when the database holds one.

    The database matches workloads structurally, ignoring block names (a reduction block is named after the
    network's variable: ``lv12_red`` in one network, ``lv203_red`` in another), and a record's trace is replayed
    on the *stored* workload. A task tuned again (a larger per-task budget) on its own module would record traces
    naming blocks the stored workload lacks: such records fail to apply ("Cannot find a block with the name") and
    make the database unreadable.
    """
    from tvm.s_tir import meta_schedule as ms

    mod = task.dispatched[0]
    if not database.has_workload(mod):
        return task
    stored = database.commit_workload(mod).mod  # the existing workload: nothing is written
    return ms.ExtractedTask(task.task_name, task.mod, task.target, [stored], task.weight)


def _counting_callback(contexts: list[Any], measured: dict[str, int], timed: dict[str, int] | None = None,
                       on_batch: BatchCallback | None = None) -> Any:
    """A measure callback that counts the trials measured per task (and, in ``timed``, those that got a time),
    and tells ``on_batch`` about each batch."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _Count(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            name = contexts[task_id].task_name
            measured[name] = measured.get(name, 0) + len(measure_candidates)
            if timed is not None:
                timed[name] = timed.get(name, 0) + sum(1 for result in runner_results if result.error_msg is None)
            if on_batch is not None:
                on_batch(len(measure_candidates), name, _fastest_ms(runner_results))

    return _Count()


def _fastest_ms(runner_results: list[Any]) -> float | None:
    """The fastest mean run time of a batch's candidates, in ms (None when none ran)."""
    means = [1e3 * sum(float(t) for t in result.run_secs) / len(result.run_secs) for result in runner_results
             if result.error_msg is None and result.run_secs]
    return min(means) if means else None


def _deadline_strategy(inner: Any, deadline: float | None, clock: Callable[[], float] = time.monotonic,
                       stop: Callable[[], bool] | None = None) -> Any:
    """Wrap a search strategy so that, once ``deadline`` passes, a task that has had its first batch asks for
    no more candidates — the scheduler then ends that task itself, after joining what is in flight. Once
    ``stop()`` is true (the measuring board is lost), no task asks for any batch, not even its first.

    (Terminating tasks from a measure callback instead crashes the gradient scheduler, which may already
    have picked a task that the callback ends: ``Check failed: (!task->is_terminated)``.)
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _Deadline(ms.search_strategy.PySearchStrategy):
        def __init__(self, strategy: Any) -> None:
            self.strategy = strategy
            self.generated = False

        def _initialize_with_tune_context(self, context: Any) -> None:
            self.strategy._initialize_with_tune_context(context)

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None) -> None:
            self.strategy.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database, cost_model)

        def post_tuning(self) -> None:
            self.strategy.post_tuning()

        def generate_measure_candidates(self) -> Any:
            if stop is not None and stop():
                return None
            if self.generated and deadline is not None and clock() >= deadline:
                return None
            self.generated = True
            return self.strategy.generate_measure_candidates()

        def notify_runner_results(self, measure_candidates, results) -> None:
            self.strategy.notify_runner_results(measure_candidates, results)

        def clone(self) -> Any:
            return _Deadline(self.strategy.clone())

    return _Deadline(inner)


def _quiet_task_tables() -> None:
    """MetaSchedule prints a table of every task after each batch (thousands of lines a compile) through a console
    handler whose level it copies from its logger's: a WARNING level keeps them off stderr, while its log files
    (``<database>/logs/``) still get everything. ``EDGEKD_VERBOSE=1`` shows them."""
    import logging

    if os.environ.get("EDGEKD_VERBOSE", "") in ("", "0"):
        logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)


def _close_runner(runner: Any) -> None:
    """Stop the worker process of a runner made here (MetaSchedule's ``LocalRunner`` keeps its popen worker alive
    after tuning, ~0.7 GB each: a profile tuning 9 chunks of tasks kept 9 of them)."""
    pool = getattr(runner, "pool", None)
    if pool is not None:
        pool.shutdown(wait=True)


def _runner_lost(runner: Any) -> str | None:
    try:
        return getattr(runner, "lost", None)
    except Exception:  # noqa: BLE001 - a TVM object without the attribute raises its own error type
        return None


def _run_tuning(tasks: list[Any], per_task: int, directory: Path, database: Any, profile: TargetProfile,
                deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
                measure: MeasureFactory | None = None, on_batch: BatchCallback | None = None,
                cost_model: Any = "xgb") -> dict[str, int] | None:
    """Run MetaSchedule; returns trials measured per task name if the deadline (or a lost runner) cut tuning
    short, else None."""
    from tvm.s_tir import meta_schedule as ms

    from edgekd.compile.toolchains import get_toolchain

    backend = ensure_measurable(profile, measure)
    runner = measure(profile) if measure is not None else MEASURE_BACKENDS[backend](profile)
    builder = make_builder(get_toolchain(profile).compiler())
    measured: dict[str, int] = {}
    timed: dict[str, int] = {}

    _quiet_task_tables()  # the CPU's tensor intrinsics: seeded by tune_tasks, before pre-training
    tasks = [_on_stored_workload(task, database) for task in tasks]
    with _foreign_log_handlers_detached():
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, str(directory),
            strategy=_deadline_strategy(_search_strategy(per_task), deadline, clock,
                                        stop=lambda: bool(_runner_lost(runner))))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is for `--json`'s one document
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=str(directory),
                max_trials_global=per_task * len(contexts), max_trials_per_task=per_task,
                num_trials_per_iter=min(64, max(4, per_task // 2)), builder=builder, runner=runner,
                database=database, cost_model=cost_model,
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                   _counting_callback(contexts, measured, timed, on_batch)],
            )
    except Exception as err:  # tvm raises its own error types
        raise CompileError(f"MetaSchedule tuning failed: {str(err).strip().splitlines()[-1][:300]}") from None
    finally:
        builder.close()
        if measure is None:
            _close_runner(runner)
    if _runner_lost(runner):  # only what was timed counts: the rest is measured again by a later tuning
        return {name: min(count, per_task) for name, count in timed.items()}
    cut_short = deadline is not None and clock() >= deadline
    return {name: min(count, per_task) for name, count in measured.items()} if cut_short else None
