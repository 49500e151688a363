"""MorphNet cost models and their differentiable regularizers, per op, per block and per network.

Inputs: a traced :class:`~edgekd.structure.groups.ChannelGraph`, per-group alive masks, per-group
regularisation vectors r (|γ| maxima) and, for per-block sums, a
:class:`~edgekd.structure.ownership.BlockOwnership`. Outputs: costs (FLOPs with 2 per MAC, conv/linear weight
counts, or roofline seconds) and regularizer values, per op and summed per block.

For an op with input (A_in, R_in) and output (A_out, R_out), A = alive channels, R = Σ r:

* FLOPs:  C = 2·H_out·W_out·k_h·k_w (conv), 2 (linear); params: C = k_h·k_w (conv), 1 (linear).
* dense/grouped conv, linear: cost = C·A_in·A_out / groups, regularizer = C·(A_in·R_out + A_out·R_in) / groups.
* depthwise conv: cost = C·A_out, regularizer = C·(R_in + R_out).
* roofline: cost = max(FLOPs / peak, bytes / bandwidth) with bytes = b·(A_in·H_in·W_in +
  A_out·H_out·W_out + weights); the regularizer follows the dominating term.

Every cost model (:class:`CostModel`) has a ``name`` — the cost kind it measures, the key a recipe uses
(``structure.cost``, a block's budget) — and the same two methods, ``cost(op, a_in, a_out)`` and
``regularizer(op, a_in, r_in, a_out, r_out)``. The structure learner never looks models up: it is handed a
mapping kind → model (:func:`edgekd.structure.budgets.check_cost_models`), built by the pipeline. Kinds that
exist today: ``flops`` (:class:`FlopCost`) and ``params`` (:class:`ParamCost`). ``latency`` needs a model
measured on a board (a later addition that implements this interface); the roofline
(:class:`RooflineCost`, kind ``roofline``) is a prior from two datasheet numbers, not a measurement, and
does not answer for ``latency``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from edgekd.structure.groups import ChannelGraph, OpInfo
from edgekd.structure.ownership import BlockOwnership

__all__ = ["CostModel", "FlopCost", "ParamCost", "RooflineCost", "Roofline", "OpTerms", "op_terms",
           "block_costs", "block_regularizers", "network_cost"]

Number = float | torch.Tensor


class CostModel(Protocol):
    """What structure learning optimises and reports: ``name`` is the cost kind (``flops``, ``params``, and
    later ``latency``); ``cost`` and ``regularizer`` take alive counts A (floats) and saliency sums R
    (tensors carrying gradients) of one op's input and output."""

    name: str

    def cost(self, op: OpInfo, a_in: Number, a_out: Number) -> Number: ...

    def regularizer(self, op: OpInfo, a_in: Number, r_in: Number, a_out: Number, r_out: Number) -> Number: ...


def _coefficient(op: OpInfo, flops: bool) -> float:
    kernel = op.kernel[0] * op.kernel[1] if op.kind != "linear" else 1
    spatial = op.out_hw[0] * op.out_hw[1] if op.kind != "linear" else 1
    return float(2 * spatial * kernel if flops else kernel)


def _bilinear_cost(op: OpInfo, coef: float, a_in: Number, a_out: Number) -> Number:
    if op.kind == "dwconv":
        return coef * a_out
    return coef * a_in * a_out / op.groups


def _bilinear_regularizer(op: OpInfo, coef: float, a_in: Number, r_in: Number, a_out: Number, r_out: Number) -> Number:
    if op.kind == "dwconv":
        return coef * (r_in + r_out)
    return coef * (a_in * r_out + a_out * r_in) / op.groups


@dataclass(frozen=True)
class FlopCost:
    """FLOPs, 2 per multiply-add (``torch.utils.flop_counter``'s convention)."""

    name: str = "flops"

    def cost(self, op: OpInfo, a_in: Number, a_out: Number) -> Number:
        return _bilinear_cost(op, _coefficient(op, True), a_in, a_out)

    def regularizer(self, op: OpInfo, a_in: Number, r_in: Number, a_out: Number, r_out: Number) -> Number:
        return _bilinear_regularizer(op, _coefficient(op, True), a_in, r_in, a_out, r_out)


@dataclass(frozen=True)
class ParamCost:
    """Conv/linear weights only (MorphNet's convention; BN and biases are reported separately)."""

    name: str = "params"

    def cost(self, op: OpInfo, a_in: Number, a_out: Number) -> Number:
        return _bilinear_cost(op, _coefficient(op, False), a_in, a_out)

    def regularizer(self, op: OpInfo, a_in: Number, r_in: Number, a_out: Number, r_out: Number) -> Number:
        return _bilinear_regularizer(op, _coefficient(op, False), a_in, r_in, a_out, r_out)


@dataclass(frozen=True)
class Roofline:
    """A target's peak compute (FLOP/s) and memory bandwidth (bytes/s); fp32 = 4 bytes per element."""

    peak_flops: float = 50e9
    bandwidth: float = 10e9
    bytes_per_element: int = 4


@dataclass(frozen=True)
class RooflineCost:
    """Roofline seconds per op: max(FLOPs / peak, bytes / bandwidth); the regularizer of the bound term.

    A prior from two datasheet numbers, not a measured latency: its kind is ``roofline``, and it never
    satisfies ``structure.cost: latency`` (see :func:`edgekd.structure.budgets.check_cost_models`)."""

    roofline: Roofline = Roofline()
    name: str = "roofline"

    def _bytes(self, op: OpInfo, a_in: Number, a_out: Number, weights: Number) -> Number:
        elements = a_in * op.in_hw[0] * op.in_hw[1] + a_out * op.out_hw[0] * op.out_hw[1] + weights
        return self.roofline.bytes_per_element * elements

    def _terms(self, op: OpInfo, a_in: Number, a_out: Number) -> tuple[float, float]:
        flops = float(FlopCost().cost(op, a_in, a_out))
        moved = float(self._bytes(op, a_in, a_out, ParamCost().cost(op, a_in, a_out)))
        return flops / self.roofline.peak_flops, moved / self.roofline.bandwidth

    def cost(self, op: OpInfo, a_in: Number, a_out: Number) -> Number:
        compute, memory = self._terms(op, a_in, a_out)
        return max(compute, memory)

    def regularizer(self, op: OpInfo, a_in: Number, r_in: Number, a_out: Number, r_out: Number) -> Number:
        compute, memory = self._terms(op, a_in, a_out)
        if compute >= memory:
            return FlopCost().regularizer(op, a_in, r_in, a_out, r_out) / self.roofline.peak_flops
        weights = ParamCost().regularizer(op, a_in, r_in, a_out, r_out)
        if op.kind == "dwconv":  # activations: the depthwise input and output are the same group
            weights = weights + r_in * op.in_hw[0] * op.in_hw[1] + r_out * op.out_hw[0] * op.out_hw[1]
            return self.roofline.bytes_per_element * weights / self.roofline.bandwidth
        return self._bytes(op, r_in, r_out, weights) / self.roofline.bandwidth


@dataclass
class OpTerms:
    """A_in, R_in, A_out, R_out of one op (A as floats, R as tensors carrying gradients)."""

    a_in: float
    r_in: Number
    a_out: float
    r_out: Number


def _side(op: OpInfo, segments, total: int, alive: list[torch.Tensor], r: list[torch.Tensor] | None):
    covered = sum(s.module_idx.numel() for s in segments)
    a = float(total - covered)  # channels no group covers (network input, classifier output): fixed
    reg: Number = 0.0
    for s in segments:
        a += float(alive[s.group][s.group_idx].sum())
        if r is not None:
            reg = reg + r[s.group][s.group_idx.to(r[s.group].device)].sum()
    if op.kind == "dwconv":
        a = float(alive[segments[0].group][segments[0].group_idx].sum()) if segments else float(total)
    return a, reg


def op_terms(graph: ChannelGraph, alive: list[torch.Tensor], r: list[torch.Tensor] | None = None) -> list[OpTerms]:
    """(A_in, R_in, A_out, R_out) for every op of ``graph`` under the given masks and saliencies."""
    terms = []
    for op in graph.ops:
        a_in, r_in = _side(op, op.in_segments, op.in_channels, alive, r)
        a_out, r_out = _side(op, op.out_segments, op.out_channels, alive, r)
        terms.append(OpTerms(a_in, r_in, a_out, r_out))
    return terms


def _owner(ownership: BlockOwnership | None, op: OpInfo) -> str | None:
    return ownership.op_block.get(op.name) if ownership is not None else None


def block_costs(graph: ChannelGraph, model: CostModel, alive: list[torch.Tensor],
                ownership: BlockOwnership | None = None) -> dict[str | None, float]:
    """Alive cost summed per block of ``ownership`` (key None: ops charged to no block; every op without one)."""
    totals: dict[str | None, float] = {}
    for op, t in zip(graph.ops, op_terms(graph, alive), strict=True):
        block = _owner(ownership, op)
        totals[block] = totals.get(block, 0.0) + float(model.cost(op, t.a_in, t.a_out))
    return totals


def block_regularizers(graph: ChannelGraph, model: CostModel, alive: list[torch.Tensor],
                       r: list[torch.Tensor], ownership: BlockOwnership | None = None) -> dict[str | None, Number]:
    """Differentiable regularizer summed per block of ``ownership``."""
    totals: dict[str | None, Number] = {}
    for op, t in zip(graph.ops, op_terms(graph, alive, r), strict=True):
        block = _owner(ownership, op)
        totals[block] = totals.get(block, 0.0) + model.regularizer(op, t.a_in, t.r_in, t.a_out, t.r_out)
    return totals


def network_cost(graph: ChannelGraph, model: CostModel, alive: list[torch.Tensor]) -> float:
    return sum(block_costs(graph, model, alive).values())
