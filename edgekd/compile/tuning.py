"""MetaSchedule tuning with one persistent database per target (imports TVM lazily).

Input: a prepared Relax module (:func:`edgekd.compile.build.prepare_module`), its ``tvm.target.Target``,
the target profile and a trial budget. Output: records added to ``cache_dir()/tuning/<target>/``
(MetaSchedule's ``database_workload.json`` / ``database_tuning_record.json``) and a :class:`TuningResult`.

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

Measurement: ``local`` (the host target) runs candidates on this machine. Other targets need a
measurement backend on the board; add one to :data:`MEASURE_BACKENDS` (e.g. MetaSchedule's
``RPCRunner`` pointed at a tracker reachable through the device stage's SSH tunnel).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.atomic import atomic_write_json
from edgekd.config.target import TargetProfile
from edgekd.errors import CompileError, ToolchainError
from edgekd.paths import cache_dir

__all__ = ["TuningResult", "database_dir", "tune_module", "ensure_measurable", "register_fast_build", "FAST_BUILD_FUNC",
           "MEASURE_BACKENDS", "BUILD_TIMEOUT_S"]

FAST_BUILD_FUNC = "edgekd.meta_schedule.build"
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

    @property
    def trials(self) -> int:
        """Trials requested for this compile (tuned tasks × trials per task)."""
        return self.tasks_tuned * self.trials_per_task


def database_dir(target_name: str) -> Path:
    """The persistent MetaSchedule database directory of one target."""
    return cache_dir() / "tuning" / target_name


def register_fast_build() -> None:
    """Builder-worker initializer: register a build function that skips ``tvm.s_tir.tensor_intrin``.

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


MEASURE_BACKENDS: dict[str, Callable[[TargetProfile], Any]] = {"local": _local_runner}


def ensure_measurable(profile: TargetProfile) -> str:
    """The measurement backend name for ``profile``.

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
    backend = "local" if profile.is_host else "remote"
    if backend not in MEASURE_BACKENDS:
        raise ToolchainError(
            f"target {profile.name}: tuning measures candidates on the board, and remote measurement is not "
            f"implemented yet (only the host target measures locally); compile without --tune-trials"
        )
    return backend


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Exclusive lock on a target's database (concurrent compiles would interleave JSON records)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _task_key(task: Any, target: Any) -> str:
    import tvm_ffi

    target_digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    return f"{tvm_ffi.structural_hash(task.dispatched[0]) & (2**64 - 1):016x}-{target_digest}"


def _read_ledger(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / LEDGER_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def tune_module(mod: Any, target: Any, profile: TargetProfile, trials: int,
                max_minutes: float | None = None, clock: Callable[[], float] = time.monotonic) -> TuningResult:
    """Tune the tasks of ``mod`` not yet in the target's database, spreading ``trials`` over all tasks.

    ``max_minutes`` bounds the tuning wall time: when it runs out, the remaining tasks are stopped and the
    records measured so far are kept (tasks cut short are tuned again by a later compile). The deadline is
    checked each time a task asks for its next batch of candidates; every task gets at least its first
    batch (so the first round always completes), and batches already in flight are joined and recorded.
    ``clock`` (seconds, monotonic) is what the deadline is read from; tests pass a fake one.

    Raises:
        ToolchainError: the target cannot be measured from here. CompileError: MetaSchedule failed.
    """
    from tvm.s_tir import meta_schedule as ms

    started = time.perf_counter()
    directory = database_dir(profile.name)
    with _locked(directory):
        tasks = ms.relax_integration.extract_tasks(mod, target)
        if not tasks:
            return TuningResult(directory, 0, 0, 0, 0, 0, time.perf_counter() - started)
        per_task = max(1, math.ceil(trials / len(tasks)))
        ledger = _read_ledger(directory)
        keys = [_task_key(task, target) for task in tasks]
        todo = [(task, key) for task, key in zip(tasks, keys, strict=True)
                if ledger.get(key, {}).get("trials", 0) < per_task]
        database = ms.database.JSONDatabase(work_dir=str(directory))
        before = len(database)
        if todo:
            deadline = clock() + 60 * max_minutes if max_minutes else None
            done = _run_tuning([task for task, _ in todo], per_task, directory, database, profile, deadline, clock)
            for task, key in todo:
                trials_done = per_task if done is None else done.get(task.task_name, 0)
                ledger[key] = {"task": task.task_name, "trials": trials_done}
            atomic_write_json(directory / LEDGER_NAME, ledger)
        measured = len(database) - before
    return TuningResult(directory, per_task, len(tasks), len(todo), len(tasks) - len(todo), measured,
                        time.perf_counter() - started)


def _counting_callback(contexts: list[Any], measured: dict[str, int]) -> Any:
    """A measure callback that counts the trials measured per task."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _Count(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            name = contexts[task_id].task_name
            measured[name] = measured.get(name, 0) + len(measure_candidates)

    return _Count()


def _deadline_strategy(inner: Any, deadline: float | None, clock: Callable[[], float] = time.monotonic) -> Any:
    """Wrap a search strategy so that, once ``deadline`` passes, a task that has had its first batch asks for
    no more candidates — the scheduler then ends that task itself, after joining what is in flight.

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
            if self.generated and deadline is not None and clock() >= deadline:
                return None
            self.generated = True
            return self.strategy.generate_measure_candidates()

        def notify_runner_results(self, measure_candidates, results) -> None:
            self.strategy.notify_runner_results(measure_candidates, results)

        def clone(self) -> Any:
            return _Deadline(self.strategy.clone())

    return _Deadline(inner)


def _run_tuning(tasks: list[Any], per_task: int, directory: Path, database: Any, profile: TargetProfile,
                deadline: float | None = None, clock: Callable[[], float] = time.monotonic) -> dict[str, int] | None:
    """Run MetaSchedule; returns trials measured per task name if the deadline cut tuning short, else None."""
    from tvm.s_tir import meta_schedule as ms

    runner = MEASURE_BACKENDS[ensure_measurable(profile)](profile)
    builder = ms.builder.LocalBuilder(timeout_sec=BUILD_TIMEOUT_S, initializer=register_fast_build,
                                      f_build=FAST_BUILD_FUNC)
    measured: dict[str, int] = {}
    _import_cpu_tensor_intrinsics(profile.arch)
    with _foreign_log_handlers_detached():
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, str(directory), strategy=_deadline_strategy(_search_strategy(per_task), deadline, clock))
    try:
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(directory),
            max_trials_global=per_task * len(contexts), max_trials_per_task=per_task,
            num_trials_per_iter=min(64, max(4, per_task // 2)), builder=builder, runner=runner, database=database,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                               _counting_callback(contexts, measured)],
        )
    except Exception as err:  # tvm raises its own error types
        raise CompileError(f"MetaSchedule tuning failed: {str(err).strip().splitlines()[-1][:300]}") from None
    cut_short = deadline is not None and clock() >= deadline
    return {name: min(count, per_task) for name, count in measured.items()} if cut_short else None
