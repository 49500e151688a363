"""MetaSchedule's XGBoost cost model, pre-trained on the records a target's database already holds.

MetaSchedule starts every tuning run with an empty cost model: until it has seen ``num_warmup_samples`` (100)
measurements its predictions are random, so with a small budget — a few trials per task, as in a demo, a test, or
a pruned network whose new tasks are topped up — each new task gets a random schedule. Measured on this machine
(CIFAR MobileNetV2 x0.25, 1 trial per task, ``scripts/bench_cost_model.py``): three such compiles ran at
1.03-1.76 ms p50, the same compiles with the model below pre-trained on other networks' records at 0.53-0.81 ms.
The model learns from features of the schedules (per buffer store, :class:`PerStoreFeature`), which transfer
across tasks and shapes: that is how TenSet pre-trains cost models. Here it learns from this board's own records
only, so what it ranks by is what this board measured.

Each workload's records are one group (XGBModel normalises costs by the group's best), so a workload needs two
or more valid records to teach anything; a sample of each workload's records, spread over its run times, keeps
feature extraction (the trace is replayed for every record) to seconds.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

__all__ = ["PRETRAIN_MIN_RECORDS", "pretrained_cost_model"]

#: below this many usable records the model would mostly guess: MetaSchedule's own default is used
PRETRAIN_MIN_RECORDS = 64
PER_WORKLOAD = 12
MAX_RECORDS = 768


def _valid(record: Any) -> bool:
    secs = record.run_secs
    return bool(secs) and all(float(s) < 1e9 for s in secs)  # failed runs are committed with 1e10


def _spread(records: list[Any], keep: int) -> list[Any]:
    """``keep`` records spread evenly over the run-time order (best and worst included)."""
    ordered = sorted(records, key=lambda r: sum(float(s) for s in r.run_secs) / len(r.run_secs))
    if len(ordered) <= keep:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (keep - 1))] for i in range(keep)]


def training_groups(database: Any) -> list[tuple[Any, list[Any]]]:
    """(workload, records) groups to pre-train on: workloads with two or more valid records, sampled."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for record in database.get_all_tuning_records():
        if _valid(record):
            groups[record.workload].append(record)
    usable = [(workload, records) for workload, records in groups.items() if len(records) >= 2]
    if not usable:
        return []
    most = MAX_RECORDS // 2  # workloads at two records each
    if len(usable) > most:  # a board's database grows without bound: pre-training must not (evenly spread)
        usable = [usable[round(i * (len(usable) - 1) / (most - 1))] for i in range(most)]
    per_workload = max(2, min(PER_WORKLOAD, MAX_RECORDS // len(usable)))
    return [(workload, _spread(records, per_workload)) for workload, records in usable]


def pretrained_cost_model(database: Any, target: Any) -> tuple[Any, int]:
    """An XGBModel trained on ``database``'s records (and how many), or ``("xgb", 0)`` — MetaSchedule's fresh
    default — when the database holds fewer than :data:`PRETRAIN_MIN_RECORDS` usable ones."""
    from tvm.s_tir import meta_schedule as ms

    groups = training_groups(database)
    count = sum(len(records) for _, records in groups)
    if count < PRETRAIN_MIN_RECORDS:
        return "xgb", 0
    model = ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=True,
                                   num_tuning_cores=os.cpu_count() or 1, tree_method="auto",
                                   num_warmup_samples=min(100, count))
    replayed = []
    for workload, records in groups:
        try:  # a record whose trace no longer replays (another TVM wrote it) teaches nothing: skip its workload
            replayed.append((workload, records, [record.as_measure_candidate() for record in records]))
        except Exception:  # noqa: BLE001 - tvm raises its own error types
            continue
    for index, (workload, records, candidates) in enumerate(replayed):
        # Adaptive training retrains whenever the data grew by a fifth (~40 times over 2,000 records, 46 s
        # measured): hold it off until the last group, which then trains once on everything.
        model.last_train_size = 0 if index == len(replayed) - 1 else 1 << 40
        model.update(ms.TuneContext(mod=workload.mod, target=target), candidates,
                     [ms.runner.RunnerResult(run_secs=record.run_secs, error_msg=None) for record in records])
    learnt = sum(len(records) for _, records, _ in replayed)
    return (model, learnt) if learnt >= PRETRAIN_MIN_RECORDS else ("xgb", 0)
