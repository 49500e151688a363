"""What to measure for a network family: the lattice of widths per op family, and width configurations.

Input: a traced :class:`~edgekd.structure.groups.ChannelGraph` and the channel grid (the target's channel multiple
or the recipe's ``round_to``). Output:

* per family, the lattice of input and output widths to measure (:func:`lattices`): every member op's full
  widths, the smallest reachable width and evenly spaced grid widths between — on the grid, so the workloads
  measured are workloads a pruned network on that grid really has;
* or, on a grid coarse per group (:func:`coarse_multiples`: each group a multiple of the channel grid that leaves
  it a few widths), the lattice of every width each member op can take (:func:`exact_lattices`): every kernel of
  every network on that grid is then a lattice point — measured, and in tuned mode tuned, once;
* width configurations of the whole network (:func:`random_widths`): one width per prunable group, on the grid
  (multiples of the grid — or of the group's own multiple — up to the group's size, and the size itself), and
  their alive masks (:func:`masks_for`), from which :func:`op_widths` gives each op's input and output channel
  counts.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import torch

from edgekd.latency.kernels import OpShape, op_shape
from edgekd.structure.costs import op_terms
from edgekd.structure.groups import ChannelGraph, OpInfo
from edgekd.structure.widths import WidthGrid

__all__ = ["FamilyPlan", "lattices", "coarse_multiples", "exact_lattices", "random_widths",
           "dense_widths", "masks_for", "op_widths", "op_shapes"]


@dataclass
class FamilyPlan:
    """One family: a member's geometry, the ops in it, and the lattice levels to measure on each axis."""

    family: str
    shape: OpShape
    ops: list[str] = field(default_factory=list)
    a_in: list[int] = field(default_factory=list)
    a_out: list[int] = field(default_factory=list)

    @property
    def depthwise(self) -> bool:
        """One axis: the input width is the output width (a depthwise conv; :attr:`OpShape.diagonal`)."""
        return self.shape.diagonal

    def points(self) -> list[tuple[int, int]]:
        """Every (a_in, a_out) of the lattice (a depthwise family: (0, a) — its input is its output)."""
        if self.depthwise:
            return [(0, b) for b in self.a_out]
        return [(a, b) for a in self.a_in for b in self.a_out]


def _side_range(op: OpInfo, segments, total: int, graph: ChannelGraph, grid: int) -> tuple[int, int]:
    """The smallest and largest channel count one side of an op can have (fixed channels never change)."""
    covered = sum(s.module_idx.numel() for s in segments)
    low = total - covered
    for s in segments:
        size = s.module_idx.numel()
        low += min(grid, size) if graph.groups[s.group].prunable else size
    if op.kind == "dwconv" and segments:
        low = min(grid, segments[0].module_idx.numel()) if graph.groups[segments[0].group].prunable else total
    return low, total


def _levels(low: int, members_high: list[int], grid: int, count: int) -> list[int]:
    """``count`` grid widths spread from ``low`` to the largest member width, plus every member's full width."""
    high = max(members_high)
    if low >= high:
        return [high]
    spread = {low, high, *members_high}
    for k in range(1, count - 1):
        value = low + (high - low) * k / (count - 1)
        spread.add(max(grid, int(round(value / grid)) * grid))
    return sorted(v for v in spread if low <= v <= high)


def lattices(graph: ChannelGraph, grid: int, levels: int = 6) -> list[FamilyPlan]:
    """The families of ``graph``'s ops and the lattice of each (``levels`` grid widths per varying axis at least)."""
    plans: dict[str, FamilyPlan] = {}
    lows: dict[str, list[int]] = {}
    highs: dict[str, tuple[list[int], list[int]]] = {}
    for op in graph.ops:
        shape = op_shape(op)
        plan = plans.setdefault(shape.family, FamilyPlan(shape.family, shape))
        plan.ops.append(op.name)
        in_low, in_high = _side_range(op, op.in_segments, op.in_channels, graph, grid)
        out_low, out_high = _side_range(op, op.out_segments, op.out_channels, graph, grid)
        low = lows.setdefault(shape.family, [in_low, out_low])
        low[0], low[1] = min(low[0], in_low), min(low[1], out_low)
        ins, outs = highs.setdefault(shape.family, ([], []))
        ins.append(in_high)
        outs.append(out_high)
    for name, plan in plans.items():
        ins, outs = highs[name]
        plan.a_out = _levels(lows[name][1], outs, grid, levels)
        plan.a_in = [0] if plan.depthwise else _levels(lows[name][0], ins, grid, levels)
    return list(plans.values())


def coarse_multiples(graph: ChannelGraph, grid: int, levels: int) -> WidthGrid:
    """The grid whose step for each prunable group is the smallest multiple of ``grid`` that leaves it at most
    ``levels`` widths (CIFAR MobileNetV2, grid 8, 5 levels: a 96-channel group takes 24, 48, 72, 96; a 576-channel
    one 120 … 480, 576)."""
    return WidthGrid(step=grid, steps={g.id: grid * max(1, math.ceil(g.size / (grid * levels)))
                                       for g in graph.groups if g.prunable})


def _side_widths(op: OpInfo, segments, total: int, graph: ChannelGraph, grid: WidthGrid) -> list[int]:
    """Every channel count one side of ``op`` takes over its groups' coarse widths (the first ``w`` channels of a
    group alive, as :func:`masks_for` keeps them)."""
    if op.kind == "dwconv" and segments:
        segments = segments[:1]
        total = segments[0].module_idx.numel()
    fixed = total - sum(s.module_idx.numel() for s in segments)
    groups = sorted({s.group for s in segments if graph.groups[s.group].prunable})
    choices = [grid.widths(g, graph.groups[g].size) for g in groups]
    widths = set()
    for combo in itertools.product(*choices):
        width = dict(zip(groups, combo, strict=True))
        widths.add(fixed + sum(int((s.group_idx < width[s.group]).sum()) if s.group in width
                               else s.module_idx.numel() for s in segments))
    return sorted(widths)


def exact_lattices(graph: ChannelGraph, grid: WidthGrid, fused: dict[str, tuple[str, ...]] | None = None
                   ) -> list[FamilyPlan]:
    """The families of ``graph``'s ops with, per axis, every width a member op takes when each group sits on
    ``grid`` (:func:`coarse_multiples`): any network on that grid is made of lattice points; ``fused``: each op's
    epilogue (:func:`edgekd.latency.fusion.epilogues`)."""
    plans: dict[str, FamilyPlan] = {}
    for op in graph.ops:
        shape = op_shape(op, epilogue=(fused or {}).get(op.name))
        plan = plans.setdefault(shape.family, FamilyPlan(shape.family, shape))
        plan.ops.append(op.name)
        plan.a_out = sorted({*plan.a_out, *_side_widths(op, op.out_segments, op.out_channels, graph, grid)})
        if plan.depthwise:
            plan.a_in = [0]
        else:
            plan.a_in = sorted({*plan.a_in, *_side_widths(op, op.in_segments, op.in_channels, graph, grid)})
    return list(plans.values())


def dense_widths(graph: ChannelGraph) -> dict[int, int]:
    return {g.id: g.size for g in graph.groups if g.prunable}


def random_widths(graph: ChannelGraph, grid: WidthGrid | int, rng: random.Random) -> dict[int, int]:
    """One width per prunable group, uniform over the group's widths on ``grid``."""
    grid = WidthGrid.of(grid)
    return {g.id: rng.choice(grid.widths(g.id, g.size)) for g in graph.groups if g.prunable}


def masks_for(graph: ChannelGraph, widths: dict[int, int]) -> list[torch.Tensor]:
    """Alive masks keeping the first ``widths[g]`` channels of each group (which ones does not change the time)."""
    masks = []
    for group in graph.groups:
        mask = torch.zeros(group.size, dtype=torch.bool)
        mask[: widths.get(group.id, group.size)] = True
        masks.append(mask)
    return masks


def op_widths(graph: ChannelGraph, masks: list[torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Each op's (input, output) channel count under ``masks``."""
    return {op.name: (int(t.a_in), int(t.a_out)) for op, t in zip(graph.ops, op_terms(graph, masks), strict=True)}


def op_shapes(graph: ChannelGraph, masks: list[torch.Tensor]) -> dict[str, OpShape]:
    widths = op_widths(graph, masks)
    return {op.name: op_shape(op, *widths[op.name]) for op in graph.ops}
