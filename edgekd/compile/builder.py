"""A MetaSchedule builder that keeps its worker processes between batches.

MetaSchedule's ``LocalBuilder`` starts a fresh pool of worker processes for every batch of candidates (TVM does
so to bound a memory leak of long-lived workers). Each start imports TVM and runs edgekd's initializer in every
worker: ~3 s here, which for a small per-task budget (one batch of one candidate per task) is most of the
tuning time. :class:`PooledBuilder` builds exactly as ``LocalBuilder`` does (the same worker function, build and
export functions, timeout and error texts) but reuses one pool for ``recycle_every`` batches, then starts a new
one — the leak stays bounded.
"""

from __future__ import annotations

from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

__all__ = ["PooledBuilder"]


@derived_object
class PooledBuilder(PyBuilder):
    """``LocalBuilder``'s builds on a worker pool kept for ``recycle_every`` batches."""

    def __init__(self, *, max_workers: int, timeout_sec: float, initializer: Any, f_build: str, f_export: str,
                 recycle_every: int = 32) -> None:
        super().__init__()
        self.max_workers, self.timeout_sec, self.initializer = max_workers, timeout_sec, initializer
        self.f_build, self.f_export, self.recycle_every = f_build, f_export, recycle_every
        self._pool: PopenPoolExecutor | None = None
        self._batches = 0

    def _workers(self) -> PopenPoolExecutor:
        if self._pool is not None and self._batches >= self.recycle_every:
            self.close()
        if self._pool is None:
            self._pool = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec,
                                           initializer=self.initializer)
            self._batches = 0
        self._batches += 1
        return self._pool

    def build(self, build_inputs: list) -> list:
        jobs = [(self.f_build, self.f_export, item.mod, item.target, _serialize_params(item.params))
                for item in build_inputs]
        results = []
        for outcome in self._workers().map_with_error_catching(lambda job: _worker_func(*job), jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"LocalBuilder: Timeout, killed after {self.timeout_sec} seconds"))
            else:
                results.append(BuilderResult(None, f"LocalBuilder: An exception occurred\n{outcome.value}"))
        return results

    def close(self) -> None:
        """Stop the worker processes (the next batch starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
