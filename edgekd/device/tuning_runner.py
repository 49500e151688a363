"""MetaSchedule measurement on a board, through edgekd's SSH connection and board cache.

Input: a connection (handed in, opened lazily by its calls), the board's :class:`~edgekd.config.devices.Device`,
the target profile, and batches of built candidates (``candidate.so`` files linked by the target's toolchain,
see :func:`edgekd.compile.tuning.register_fast_build`). Output: per candidate, the seconds of each repeat or a
one-line error; :meth:`BoardMeasurer.runner` wraps that as a MetaSchedule ``Runner`` to hand to the tuner
(``compile_model(..., measure=measurer.runner)``): ``compile/`` never imports this module.

Per batch: the board-side timer (``edgekd-timer``, plain C, :func:`edgekd.compile.runner.build_timer`) and the
board's TVM runtime libraries are pushed once into the content-addressed board cache (a stage, as an artifact
is); the candidates and a spec (one line per candidate: library, argument dtypes and shapes) go to a fresh run
directory; one timer process (through the device's exec prefix, e.g. qemu-user) times them, each in its own
forked process with a deadline, with MetaSchedule's statistics (number, repeat, min_repeat_ms, cooldown), and
prints one JSON document; the run directory is removed. A candidate that crashes, hangs or does not load is a
failed measurement of that candidate only.

A connection that drops (or a board that stops answering) during a batch is reopened once and the batch is
run again; when that fails too, the measurer is ``lost``: this batch and later ones fail at once, and the tuner
(which watches ``lost``) stops asking for candidates, keeping what was measured. After a reconnect the board's
run lock (:func:`edgekd.device.lock.board_lock`, dropped with the old connection) is taken again when
``relock`` is set, so no bench times the board meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.atomic import sha256_file
from edgekd.config.devices import Device
from edgekd.config.target import TargetProfile
from edgekd.device import cache
from edgekd.device.lock import board_lock
from edgekd.errors import DeviceError

__all__ = ["Candidate", "Measured", "EvaluatorSettings", "BoardMeasurer", "timer_stage"]


@dataclass(frozen=True)
class Candidate:
    """One built candidate: its library on this machine and its arguments as ``(dtype, shape)``."""

    library: Path
    args: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def from_runner_input(cls, runner_input: Any) -> Candidate:
        """From MetaSchedule's ``RunnerInput`` (``args_info`` items are ``["TENSOR", dtype, shape]``)."""
        args = []
        for info in runner_input.args_info:
            kind, dtype, shape = info.as_json()
            if kind != "TENSOR":
                raise DeviceError(f"candidate argument of kind {kind!r}: only tensors can be timed on a board")
            args.append((str(dtype), tuple(int(d) for d in shape)))
        return cls(Path(str(runner_input.artifact_path)), tuple(args))

    def spec_words(self) -> list[str]:
        return [f"{dtype}:{','.join(str(d) for d in shape)}" for dtype, shape in self.args]


@dataclass(frozen=True)
class Measured:
    """One candidate's measurement: seconds per call of each repeat, or why there are none."""

    costs: list[float] | None
    error: str | None = None


@dataclass(frozen=True)
class EvaluatorSettings:
    """MetaSchedule's measurement statistics (its ``EvaluatorConfig`` defaults) plus a per-candidate deadline."""

    number: int = 3
    repeat: int = 1
    min_repeat_ms: float = 100.0
    cooldown_ms: float = 0.0
    candidate_timeout_s: float = 30.0


def timer_stage(profile: TargetProfile) -> tuple[Path, dict[str, str]]:
    """A local directory holding ``edgekd-timer`` and ``lib/`` (the board's runtime libraries) for ``profile``,
    and its files as ``{relative path: sha256}`` (what :func:`edgekd.device.cache.push` takes)."""
    from edgekd.compile.runner import TIMER_NAME, build_timer
    from edgekd.compile.runtime_libs import get_runtime_libs
    from edgekd.compile.toolchains import get_toolchain

    runtime = get_runtime_libs(profile)
    timer = build_timer(get_toolchain(profile), runtime)
    stage = timer.parent  # keyed by the timer source, the toolchain and these very libraries
    (stage / "lib").mkdir(exist_ok=True)
    files = {TIMER_NAME: sha256_file(timer)}
    for library in runtime.files:
        target = stage / "lib" / library.name
        if not target.is_file():
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            shutil.copy2(library, partial)
            os.replace(partial, target)
        files[f"lib/{library.name}"] = sha256_file(target)
    return stage, files


class BoardMeasurer:
    """Times batches of candidates on one board (see the module docstring).

    Args:
        conn: the board's connection (SSH or local); reopened once when it drops.
        device: the board (cache directory, exec prefix, name).
        profile: the target profile (toolchain and runtime of the timer; ``threads.default`` threads).
        settings: measurement statistics.
        relock: after a reconnect, take the board's run lock again (the caller held it on the old connection).
        lock_timeout: seconds to wait for that lock.
        on_step: test hook, called with ``"uploaded"`` once a batch is on the board (before it is timed).
    """

    def __init__(self, conn: Any, device: Device, profile: TargetProfile, settings: EvaluatorSettings | None = None,
                 *, relock: bool = False, lock_timeout: float = 60.0,
                 on_step: Callable[[str], None] | None = None) -> None:
        self.conn = conn
        self.device = device
        self.profile = profile
        self.settings = settings or EvaluatorSettings()
        self.relock = relock
        self.lock_timeout = lock_timeout
        self.on_step = on_step
        self.lost: str | None = None
        self.reconnects = 0
        self.batches = 0
        self._stage: tuple[Path, dict[str, str]] | None = None
        self._stage_dir: str | None = None
        self._locks = contextlib.ExitStack()

    # ---------------------------------------------------------------- measuring
    def measure(self, candidates: Sequence[Candidate]) -> list[Measured]:
        """Time ``candidates`` on the board; never raises for a candidate's or the connection's failure."""
        if not candidates:
            return []
        if self.lost:
            return [Measured(None, f"board {self.device.name}: {self.lost}") for _ in candidates]
        self.batches += 1
        for attempt in range(2):
            try:
                return self._measure_once(candidates)
            except DeviceError as err:
                reason = str(err)
                if attempt == 0 and self._reconnect():
                    continue
                self.lost = f"measurement ended, connection lost: {reason}"
        return [Measured(None, f"board {self.device.name}: {self.lost}") for _ in candidates]

    def _reconnect(self) -> bool:
        """Reopen the connection (and the run lock); False when the board cannot be reached again."""
        self.reconnects += 1
        self._stage_dir = None
        with contextlib.suppress(Exception):
            self.conn.close()
        try:
            self.conn.open()
            if self.relock:
                self._locks.enter_context(board_lock(self.conn, self.device, what="tuning (reconnected)",
                                                     timeout=self.lock_timeout))
        except DeviceError as err:
            self.lost = f"reconnecting failed: {err}"
            return False
        return True

    def _ensure_stage(self) -> str:
        if self._stage is None:
            self._stage = timer_stage(self.profile)
        if self._stage_dir is None:
            local, files = self._stage
            self._stage_dir = cache.push(self.conn, local, files, self.device.cache_dir).stage_dir
        return self._stage_dir

    def _measure_once(self, candidates: Sequence[Candidate]) -> list[Measured]:
        from edgekd.compile.runner import TIMER_NAME

        stage_dir = self._ensure_stage()
        run_dir = cache.run_dir(self.conn, self.device.cache_dir)
        try:
            lines = []
            with tempfile.TemporaryDirectory(prefix="edgekd-batch-") as scratch:
                for index, candidate in enumerate(candidates):
                    remote = posixpath.join(run_dir, f"c{index}.so")
                    try:
                        self.conn.put(candidate.library, remote)
                    except DeviceError:
                        if candidate.library.is_file():
                            raise
                        lines.append(None)  # never built (or already removed): that candidate fails alone
                        continue
                    lines.append(" ".join([posixpath.relpath(remote, stage_dir), *candidate.spec_words()]))
                spec = Path(scratch) / "spec.txt"
                spec.write_text("".join(f"{line}\n" for line in lines if line is not None))
                self.conn.put(spec, posixpath.join(run_dir, "spec.txt"))
            if self.on_step is not None:
                self.on_step("uploaded")
            s = self.settings
            cmd = [f"./{TIMER_NAME}", "--spec", posixpath.relpath(posixpath.join(run_dir, "spec.txt"), stage_dir),
                   "--number", str(s.number), "--repeat", str(s.repeat), "--min-repeat-ms", f"{s.min_repeat_ms:g}",
                   "--cooldown-ms", f"{s.cooldown_ms:g}", "--timeout-s", f"{s.candidate_timeout_s:g}"]
            timed = sum(1 for line in lines if line is not None)
            limit = timed * (s.candidate_timeout_s + 5 + s.repeat * s.cooldown_ms / 1e3) + 60
            result = self.conn.run(cmd, cwd=stage_dir, env={"TVM_NUM_THREADS": str(self.profile.threads.default)},
                                   prefixed=True, timeout=limit)
            if result.timed_out or result.exit_code != 0:
                raise DeviceError(f"edgekd-timer on {self.device.name} failed "
                                  f"({'timed out' if result.timed_out else f'exit {result.exit_code}'}): "
                                  f"{result.last_error_line()}")
            try:
                doc = json.loads(result.stdout)
                replies = list(doc["results"])
            except (ValueError, KeyError, TypeError):
                head = result.stdout.strip().replace("\n", " ")[:120]
                raise DeviceError(f"edgekd-timer on {self.device.name} printed no result document "
                                  f"(got {head!r})") from None
            if len(replies) != timed:
                raise DeviceError(f"edgekd-timer on {self.device.name} returned {len(replies)} results for "
                                  f"{timed} candidates")
        finally:
            with contextlib.suppress(DeviceError, OSError, EOFError):
                if self.conn.is_local or self.conn.is_connected:
                    cache.remove_tree(self.conn, run_dir)
        measured: list[Measured] = []
        answers = iter(replies)
        for line in lines:
            if line is None:
                measured.append(Measured(None, "the candidate's library was not built"))
                continue
            reply = next(answers)
            costs = reply.get("costs") if isinstance(reply, dict) else None
            if costs:
                measured.append(Measured([float(c) for c in costs]))
            else:
                error = reply.get("error") if isinstance(reply, dict) else None
                measured.append(Measured(None, f"on {self.device.name}: {error or 'no result'}"))
        return measured

    # ---------------------------------------------------------------- MetaSchedule
    def runner(self, profile: TargetProfile | None = None) -> Any:
        """This measurer as a MetaSchedule ``Runner`` (a measure factory for ``compile_model``/``tune_module``:
        ``profile`` is accepted and ignored); its ``lost`` attribute mirrors :attr:`lost`."""
        return _runner_class()(self)

    def close(self) -> None:
        """Release a run lock taken after a reconnect (the connection itself is the caller's)."""
        self._locks.close()


_RUNNER_CLASS: list[Any] = []


def _runner_class() -> Any:
    """The PyRunner subclass (defined on first use: TVM is imported lazily)."""
    if _RUNNER_CLASS:
        return _RUNNER_CLASS[0]
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _Done(ms.runner.PyRunnerFuture):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self._result = result

        def done(self) -> bool:
            return True

        def result(self) -> Any:
            return self._result

    @derived_object
    class BoardRunner(ms.runner.PyRunner):
        def __init__(self, measurer: BoardMeasurer) -> None:
            super().__init__()
            self.measurer = measurer

        @property
        def lost(self) -> str | None:
            return self.measurer.lost

        def run(self, runner_inputs: list[Any]) -> list[Any]:
            candidates, failures = [], {}
            for index, runner_input in enumerate(runner_inputs):
                try:
                    candidates.append(Candidate.from_runner_input(runner_input))
                except DeviceError as err:
                    failures[index] = str(err)
            measured = iter(self.measurer.measure(candidates))
            futures = []
            for index in range(len(runner_inputs)):
                if index in failures:
                    futures.append(_Done(ms.runner.RunnerResult(None, failures[index])))
                    continue
                one = next(measured)
                futures.append(_Done(ms.runner.RunnerResult(one.costs, None) if one.costs is not None
                                     else ms.runner.RunnerResult(None, one.error)))
            return futures

    _RUNNER_CLASS.append(BoardRunner)
    return BoardRunner
