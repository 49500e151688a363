"""The widths pruning may leave a group: one step for all, or a step per group (a tuned latency model's grid)."""

from __future__ import annotations

from edgekd.models import create_model
from edgekd.structure.groups import trace_groups
from edgekd.structure.widths import WidthGrid, grid_for, group_name


def test_one_step_for_every_group():
    grid = WidthGrid.of(8)
    assert grid.widths(0, 20) == [8, 16, 20]
    assert (grid.up(0, 9, 20), grid.up(0, 0, 20), grid.up(0, 19, 20)) == (16, 8, 20)
    assert (grid.below(0, 20), grid.below(0, 16), grid.below(0, 8)) == (16, 8, None)
    assert (grid.above(0, 16, 20), grid.above(0, 20, 20), grid.smallest(0, 4)) == (20, None, 4)
    every = WidthGrid.of(None)
    assert (every.below(0, 5), every.below(0, 1), every.above(0, 5, 6)) == (4, None, 6)


def test_per_group_steps_are_named_by_producer_and_survive_a_new_trace():
    graph = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))
    group = next(g for g in graph.groups if g.prunable and g.size > 100)

    class Demanding:  # a cost model with a coarse grid, as a tuned latency model is
        group_steps = {group_name(group): 48, "no.such.op": 16}

    grid = grid_for(trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5)), 8, [Demanding(), object()])
    assert grid.steps == {group.id: 48} and grid.step == 8
    assert grid.widths(group.id, group.size)[:2] == [48, 96] and grid.widths(group.id, group.size)[-1] == group.size
    assert grid.below(group.id, 96) == 48 and grid.up(group.id, 50, group.size) == 96
    assert grid.named_steps(graph) == {group_name(group): 48}
