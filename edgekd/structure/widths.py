"""The widths pruning may leave a group: multiples of a step below the group's size, and the size itself.

One step for every group (the recipe's ``structure.round_to``, else the target's channel multiple), or a step per
group: a tuned latency model's coarse grid (``edgekd.latency.design.coarse_multiples``), on which every kernel of
the pruned network is one the model measured — so the prediction is a sum of measured kernels and the compile
finds every task already tuned. Groups are named by their first producer (:func:`group_name`), which is stable
across traces of the same architecture, so a grid saved with a model or an ``arch.json`` applies to the student.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edgekd.structure.groups import ChannelGraph, ChannelGroup

__all__ = ["WidthGrid", "group_name", "grid_for"]


def group_name(group: ChannelGroup) -> str:
    """A stable name of ``group``: its first producer op (``group<id>`` for one without)."""
    return group.producers[0] if group.producers else f"group{group.id}"


@dataclass(frozen=True)
class WidthGrid:
    """``step`` for every group; ``steps`` (group id → step) overrides it per group."""

    step: int = 1
    steps: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, grid: WidthGrid | int | None) -> WidthGrid:
        """``grid`` as a WidthGrid (an int: one step for all; None: every width allowed)."""
        if isinstance(grid, WidthGrid):
            return grid
        return cls(step=max(1, int(grid or 1)))

    @classmethod
    def named(cls, graph: ChannelGraph, step: int, named_steps: dict[str, int]) -> WidthGrid:
        """The grid of ``graph`` with per-group steps given by :func:`group_name` (names ``graph`` lacks are
        ignored: a model profiled for this architecture names every prunable group)."""
        by_name = {group_name(g): g.id for g in graph.groups}
        return cls(step=max(1, step), steps={by_name[n]: s for n, s in named_steps.items() if n in by_name})

    def step_of(self, group_id: int) -> int:
        return self.steps.get(group_id, self.step)

    def up(self, group_id: int, width: int, size: int) -> int:
        """``width`` rounded up to the group's grid (capped at its size)."""
        step = self.step_of(group_id)
        return min(size, -(-max(1, width) // step) * step)

    def below(self, group_id: int, width: int) -> int | None:
        """The largest grid width below ``width`` (never below one step, or one channel); None when none is."""
        step = self.step_of(group_id)
        if step == 1:
            return width - 1 if width > 1 else None
        lower = ((width - 1) // step) * step
        return lower if lower > 0 else None

    def above(self, group_id: int, width: int, size: int) -> int | None:
        """The next grid width above ``width`` (capped at the group's size); None at full width."""
        if width >= size:
            return None
        return min(size, (width // self.step_of(group_id) + 1) * self.step_of(group_id))

    def smallest(self, group_id: int, size: int) -> int:
        return min(self.step_of(group_id), size)

    def widths(self, group_id: int, size: int) -> list[int]:
        """Every width the group may keep, ascending."""
        step = self.step_of(group_id)
        return [*range(step, size, step), size] if step < size else [size]

    def named_steps(self, graph: ChannelGraph) -> dict[str, int]:
        """The per-group steps by :func:`group_name` (what ``arch.json`` records)."""
        names = {g.id: group_name(g) for g in graph.groups}
        return {names[g]: s for g, s in sorted(self.steps.items())}


def grid_for(graph: ChannelGraph, step: int, cost_models: Iterable) -> WidthGrid:
    """The grid structure learning prunes ``graph`` on: ``step`` for every group (the recipe's ``round_to``), and
    the per-group steps a cost model demands (its ``group_steps``, group name → step: a tuned latency model's
    coarse grid, on which its predictions are sums of measured kernels)."""
    named: dict[str, int] = {}
    for model in cost_models:
        named.update(getattr(model, "group_steps", None) or {})
    return WidthGrid.named(graph, step, named)
