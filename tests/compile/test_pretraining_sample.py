"""What the cost model is pre-trained on (edgekd/compile/cost_model.py ``training_groups``): bounded however large
a board's database grows, spread over its workloads and over each workload's run times."""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.compile.cost_model import MAX_RECORDS, training_groups


@dataclass(frozen=True)
class Record:  # the two fields training_groups reads of a MetaSchedule TuningRecord
    workload: int
    run_secs: tuple[float, ...]


class Database:
    def __init__(self, records: list[Record]) -> None:
        self.records = records

    def get_all_tuning_records(self) -> list[Record]:
        return self.records


def _database(workloads: int, per_workload: int) -> Database:
    return Database([Record(w, (1e-3 * (1 + r),)) for w in range(workloads) for r in range(per_workload)])


def test_a_small_database_is_used_whole_up_to_the_per_workload_sample():
    groups = training_groups(_database(workloads=10, per_workload=4))
    assert [w for w, _ in groups] == list(range(10)) and all(len(r) == 4 for _, r in groups)


def test_a_large_database_is_sampled_to_the_record_bound_across_all_its_workloads():
    groups = training_groups(_database(workloads=1000, per_workload=5))
    kept = [w for w, _ in groups]
    assert sum(len(records) for _, records in groups) <= MAX_RECORDS
    assert len(kept) == MAX_RECORDS // 2 and kept[0] == 0 and kept[-1] == 999  # spread, ends included
    ends = {(min(r.run_secs for r in records), max(r.run_secs for r in records)) for _, records in groups}
    assert ends == {((1e-3,), (5e-3,))}  # each workload keeps its fastest and slowest records


def test_failed_runs_and_single_record_workloads_teach_nothing():
    records = [Record(0, (1e-3,)), Record(0, (1e10,)), Record(1, (1e-3,)), Record(1, (2e-3,))]
    assert [w for w, _ in training_groups(Database(records))] == [1]
