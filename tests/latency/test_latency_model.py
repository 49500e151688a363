"""The latency model's arithmetic, its files and its refusals (no board needed: tables are written by hand)."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import ConfigError
from edgekd.latency.design import lattices
from edgekd.latency.model import LatencyModel, NetworkKey, Provenance, Table, fit_surface, interpolate
from edgekd.latency.profile import fit_calibration
from edgekd.latency.store import (
    list_latency_models,
    load_latency_model,
    model_path,
    save_latency_model,
    staleness,
)
from edgekd.models import create_model
from edgekd.structure.groups import trace_groups
from edgekd.structure.widths import WidthGrid

RUNTIME = {"tvm": "0.27.0.post1", "tvm_ffi": "0.1.14.post0"}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEKD_LATENCY_DIR", str(tmp_path / "cache" / "latency" / "models"))


def bilinear(a, b):
    return 0.003 * a * b + 0.02 * b + 0.01 * a + 0.5


def test_interpolation_is_exact_for_a_cost_bilinear_in_the_widths():
    a_levels, b_levels = [8, 24, 64], [8, 32, 96, 128]
    values = [[bilinear(a, b) for b in b_levels] for a in a_levels]
    for a, b in [(8, 8), (16, 40), (63, 127), (24, 100), (64, 128)]:  # inside and on levels
        assert interpolate(a_levels, b_levels, values, a, b) == pytest.approx(bilinear(a, b))
    # outside the measured widths: the nearest measured one, never a line running to zero or below
    assert interpolate(a_levels, b_levels, values, 1, 1) == pytest.approx(bilinear(8, 8))
    assert interpolate(a_levels, b_levels, values, 70, 140) == pytest.approx(bilinear(64, 128))


def test_slopes_are_one_grid_step_differences_even_on_a_staircase():
    # a staircase in the output width: flat inside a step of 16, a jump between steps
    levels = list(range(8, 129, 8))
    table = Table(family="conv", a_in=[32], a_out=levels, ms=[[float((b + 15) // 16) for b in levels]])
    _, at_flat = table.slopes(32, 16, 8)
    _, at_jump = table.slopes(32, 24, 8)
    assert at_flat == pytest.approx(1 / 8) and at_jump == pytest.approx(0.0)  # f(24)-f(16)=1, f(32)-f(24)=0
    steep = Table(family="conv", a_in=[32], a_out=[8, 120, 128], ms=[[1.0, 2.0, 6.0]])
    _, top = steep.slopes(32, 128, 8)  # backwards at the top of the table: never extrapolated past it
    assert top == pytest.approx((6.0 - 2.0) / 8)
    depthwise = Table(family="dw", a_in=[0], a_out=[8, 16], ms=[[1.0, 2.0]])
    assert depthwise.slopes(12, 12, 8) == (0.0, pytest.approx(1 / 8))


def test_a_kernel_measured_faster_one_step_wider_never_rewards_growing():
    # tuned kernels are not monotone in width: 24 output channels measured faster than 16
    table = Table(family="conv", a_in=[8, 16], a_out=[8, 16, 24, 32], ms=[[1.0, 3.0, 2.0, 4.0], [2.0, 2.0, 5.0, 5.0]])
    _, dip = table.slopes(8, 16, 8)
    assert dip == pytest.approx((3.0 - 1.0) / 8)  # the mean cost of a channel above the smallest width, not -1/8
    into_dip_from_below, _ = table.slopes(8, 24, 8)  # input side: f(16, 24) - f(8, 24) = 3 > 0, the step itself
    assert into_dip_from_below == pytest.approx(3.0 / 8)
    falling = Table(family="conv", a_in=[8], a_out=[8, 16], ms=[[2.0, 1.0]])  # wider is faster all the way
    assert falling.slopes(8, 8, 8) == (0.0, 0.0)
    for a in (8, 12, 16):  # every slope of every table here is a cost, never a reward
        for b in (8, 16, 20, 24, 32):
            assert min(table.slopes(a, b, 8)) >= 0 and min(falling.slopes(a, b, 8)) >= 0


def test_tuned_tables_read_the_trend_through_scattered_kernels_not_the_scatter():
    # tuned kernels: each the best of a few trials, so neighbouring widths scatter ±50% around a bilinear trend
    a_levels, b_levels = [8, 24, 64, 96], [8, 32, 96, 128]
    scatter = [[1.5, 0.5, 1.0, 1.0], [0.5, 1.5, 1.0, 1.0], [1.0, 1.0, 1.5, 0.5], [1.0, 1.0, 0.5, 1.5]]  # mean 1
    values = [[bilinear(a, b) * scatter[i][j] for j, b in enumerate(b_levels)] for i, a in enumerate(a_levels)]
    fitted = Table(family="conv", a_in=a_levels, a_out=b_levels, ms=values, fit=fit_surface(a_levels, b_levels, values))
    raw = Table(family="conv", a_in=a_levels, a_out=b_levels, ms=values)
    between = [(a, b) for a in range(8, 97, 8) for b in range(8, 129, 8)]

    def error(table):  # in ms, what a network's sum adds up (so the big kernels weigh most, as in the fit)
        return sum(abs(table.value(a, b) - bilinear(a, b)) for a, b in between) / len(between)

    assert error(fitted) < 0.5 * error(raw)
    exact = [[bilinear(a, b) for b in b_levels] for a in a_levels]
    surface = Table(family="conv", a_in=a_levels, a_out=b_levels, ms=exact, fit=fit_surface(a_levels, b_levels, exact))
    assert surface.value(40, 100) == pytest.approx(bilinear(40, 100))  # a bilinear cost is its own fit
    assert surface.value(200, 1) == pytest.approx(bilinear(96, 8))  # never beyond the measured widths
    # its marginal latency per channel is the trend's: smooth, one grid step at a time
    assert surface.slopes(40, 100, 8) == (pytest.approx(0.003 * 100 + 0.01), pytest.approx(0.003 * 40 + 0.02))
    depthwise = Table(family="dw", a_in=[0], a_out=[8, 16, 24], ms=[[1.0, 3.0, 2.0]],
                      fit=fit_surface([0], [8, 16, 24], [[1.0, 3.0, 2.0]]))
    assert depthwise.value(99, 16) == pytest.approx(2.0)  # a line through the scatter: one slope, any input
    assert Table.model_validate_json(fitted.model_dump_json()) == fitted  # the fit travels with the model file


def test_calibration_is_the_median_ratio_and_one_unlucky_network_does_not_tilt_it():
    raw = [1.0, 1.2, 1.4, 1.6, 1.8]
    cal = fit_calibration(raw, [1.1 * x for x in raw])
    assert cal.alpha == pytest.approx(1.1) and cal.beta_ms == 0.0 and cal.samples == 5
    assert [r["raw_ms"] for r in cal.rows] == raw  # kept, so a saved profile can be re-scored under another rule
    # one network 40% slower than its kernels say (a poor schedule from a few trials): α stays with the others,
    # where a least-squares line through all five would move every prediction
    unlucky = fit_calibration(raw, [1.1 * x for x in raw[:-1]] + [1.4 * 1.1 * raw[-1]])
    assert unlucky.alpha == pytest.approx(1.1)
    assert fit_calibration([2.0], [3.0]).alpha == pytest.approx(1.5)
    assert fit_calibration([], []).alpha == 1.0 and fit_calibration([], []).samples == 0


def test_the_lattice_covers_every_op_from_the_smallest_width_to_the_full_one():
    graph = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.25).eval())
    plans = lattices(graph, grid=8, levels=4)
    assert sum(len(p.ops) for p in plans) == len(graph.ops)
    for plan in plans:
        for name in plan.ops:
            op = graph.op(name)
            assert plan.a_out[-1] >= op.out_channels
            if not plan.depthwise:
                assert plan.a_in[-1] >= op.in_channels
        assert all(v % 8 == 0 or v in {graph.op(n).out_channels for n in plan.ops} for v in plan.a_out)
    assert WidthGrid(step=8).widths(0, 20) == [8, 16, 20] and WidthGrid(step=8).widths(0, 4) == [4]


def _model(tmp_path, device="board", mode="untuned", runtime=RUNTIME, **provenance) -> LatencyModel:
    return LatencyModel(
        network=NetworkKey(name="net", kwargs={"w": 1}, input_shape=[1, 3, 8, 8], recipe="r"), grid=8,
        ops={"c": "conv"}, tables={"conv": Table(family="conv", a_in=[8], a_out=[8, 16], ms=[[1.0, 2.0]])},
        provenance=Provenance(device=device, target="host", board="x86_64-cpu-1234", threads=2, runtime=runtime,
                              mode=mode, created="2026-12-02T00:00:00Z", edgekd="0.1.0", **provenance))


def test_a_model_round_trips_through_its_file_and_is_listed(tmp_path):
    saved = save_latency_model(_model(tmp_path))
    assert saved == model_path("board", _model(tmp_path).network, "untuned") and saved.is_file()
    loaded = load_latency_model("board", _model(tmp_path).network, runtime=RUNTIME)
    assert loaded.tables["conv"].value(8, 12) == pytest.approx(1.5)
    assert [m.provenance.device for _p, m in list_latency_models()] == ["board"]


def test_missing_stale_and_foreign_schema_models_are_refused_in_one_line(tmp_path):
    key = _model(tmp_path).network
    with pytest.raises(ConfigError, match="no untuned latency model of net on device board; measure one with"):
        load_latency_model("board", key, runtime=RUNTIME)
    save_latency_model(_model(tmp_path))
    with pytest.raises(ConfigError, match="is stale .measured with TVM 0.27.0.post1, this host has 0.28"):
        load_latency_model("board", key, runtime={**RUNTIME, "tvm": "0.28"})
    path = model_path("board", key, "untuned")
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ConfigError, match="latency model schema 99, this edgekd reads 1") as err:
        load_latency_model("board", key, runtime=RUNTIME)
    assert "\n" not in str(err.value)


def test_a_tuned_model_goes_stale_when_its_tuning_records_change(tmp_path):
    from edgekd.latency.store import tuning_digest

    records = tmp_path / "db"
    records.mkdir()
    (records / "database_tuning_record.json").write_text("[1]\n")
    model = _model(tmp_path, mode="tuned", tuning_digest=tuning_digest(records), records=str(records))
    assert staleness(model, RUNTIME) is None
    (records / "database_tuning_record.json").write_text("[1]\n[2]\n")  # a later tuning added a record
    assert "changed since it was measured" in staleness(model, RUNTIME)


def test_a_tuned_model_keyed_by_its_tasks_ignores_records_of_other_tasks(tmp_path):
    from edgekd.compile.tuning import LEDGER_NAME
    from edgekd.latency.store import tuning_digest

    records = tmp_path / "db"
    records.mkdir()
    ledger = {"a": {"task": "conv", "trials": 8}, "b": {"task": "dw", "trials": 8}}
    (records / LEDGER_NAME).write_text(json.dumps(ledger))
    model = _model(tmp_path, mode="tuned", tuning_digest=tuning_digest(records, ["a", "b"]), records=str(records),
                   tuned_tasks=["a", "b"])
    assert staleness(model, RUNTIME) is None
    (records / LEDGER_NAME).write_text(json.dumps({**ledger, "c": {"task": "other", "trials": 90}}))
    assert staleness(model, RUNTIME) is None  # another network tuned into the same database
    (records / LEDGER_NAME).write_text(json.dumps({**ledger, "b": {"task": "dw", "trials": 16}}))
    assert "changed since it was measured" in staleness(model, RUNTIME)  # one of its kernels tuned again


def test_refinement_probes_every_interval_midpoint_and_adds_the_level_it_probed():
    from edgekd.latency.design import FamilyPlan
    from edgekd.latency.kernels import OpShape
    from edgekd.latency.profile import _add_level, _midpoints

    shape = OpShape("conv", (1, 1), (1, 1), (0, 0), (1, 1), 1, (8, 8), 8, 8)
    plan = FamilyPlan("f", shape, ["x"], [8, 32, 64], [8, 64])
    probes = _midpoints(plan, 8)
    assert sorted(probes) == [("f", 8, 32), ("f", 16, 8), ("f", 16, 64), ("f", 48, 8), ("f", 48, 64), ("f", 64, 32)]
    assert _add_level(plan, 16, 8) == 1 and plan.a_in == [8, 16, 32, 64] and plan.a_out == [8, 64]
    assert _add_level(plan, 8, 32) == 1 and plan.a_out == [8, 32, 64]
    assert _add_level(plan, 16, 32) == 0  # already on the lattice
