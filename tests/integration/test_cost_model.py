"""The cost model pre-trained on a board's database (edgekd/compile/cost_model.py), on real records: the tune
tests' warm loopback-board database (tests/integration/conftest.py's ``warm_board``)."""

from __future__ import annotations

import pytest

from edgekd.compile import build
from edgekd.compile.cost_model import PRETRAIN_MIN_RECORDS, pretrained_cost_model, training_groups
from edgekd.compile.tuning import database_dir
from edgekd.config.target import load_target

pytestmark = pytest.mark.slow


def test_the_cost_model_learns_which_schedules_the_board_ran_fastest(warm_board):
    from tvm.s_tir import meta_schedule as ms

    [directory] = database_dir(warm_board.stem).parent.glob(f"{warm_board.stem}@*")
    database = ms.database.JSONDatabase(work_dir=str(directory))
    profile = load_target(warm_board)
    target = build.make_target(profile.tvm_target.as_tvm_dict(host_cpu=build.system_cpu()))
    model, count = pretrained_cost_model(database, target)
    groups = training_groups(database)
    assert count == sum(len(records) for _, records in groups) >= PRETRAIN_MIN_RECORDS  # every record replayed

    def seconds(record) -> float:
        return sum(float(s) for s in record.run_secs) / len(record.run_secs)

    ranked = right = 0
    for workload, records in groups:
        fastest, slowest = min(records, key=seconds), max(records, key=seconds)
        if seconds(slowest) < 1.5 * seconds(fastest):
            continue  # too close to call on a shared machine
        context = ms.TuneContext(mod=workload.mod, target=target)
        scores = model.predict(context, [fastest.as_measure_candidate(), slowest.as_measure_candidate()])
        ranked, right = ranked + 1, right + int(scores[0] > scores[1])  # a higher score = predicted faster
    assert ranked >= 5 and right >= 0.8 * ranked, (right, ranked)


def test_a_database_with_too_few_records_keeps_the_fresh_model(tmp_path):
    from tvm.s_tir import meta_schedule as ms

    model, count = pretrained_cost_model(ms.database.JSONDatabase(work_dir=str(tmp_path)), None)
    assert (model, count) == ("xgb", 0)
