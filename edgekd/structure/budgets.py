"""Per-block budget state: what each block was asked for, resolved against the network.

Inputs: a traced :class:`ChannelGraph`, the :class:`BlockOwnership` of the recipe's blocks, the recipe's
``structure`` section and the cost models handed in (a mapping kind → :class:`CostModel`). Outputs: one
:class:`BlockBudgetState` per block — absolute budgets, dense and minimal (one channel per group) cost of
every kind, and the controller's dynamic state (λ_b, whether and when the block met its budget).

Fractions (≤ 1) are relative to the dense block; larger values are absolute (FLOPs with 2 per MAC, or
conv/linear weights). A pattern matching nothing, a budget above the dense block or below the smallest
reachable cost, or a cost kind with no model handed in is a one-line ConfigError — a recipe asking for
``latency`` without a measured latency model is refused, never trained on FLOPs instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgekd.errors import ConfigError
from edgekd.models.counting import format_count
from edgekd.structure.costs import CostModel, block_costs
from edgekd.structure.groups import ChannelGraph, dense_masks
from edgekd.structure.ownership import DEFAULT_BLOCK, BlockOwnership

__all__ = ["BlockBudgetState", "resolve_blocks", "resolve_budgets", "requested_cost_kinds", "check_cost_models"]


@dataclass
class BlockBudgetState:
    name: str
    budget: dict[str, float]  # kind → absolute budget (every kind of a frozen block: its dense cost)
    dense: dict[str, float]  # kind → cost of the dense block
    minimum: dict[str, float]  # kind → cost with one channel per learnable group
    frozen: bool = False
    controlled: bool = True  # False for the "(default)" pseudo-block of structure.default: free
    lam: float = 0.0
    met: bool = False
    met_step: int | None = None
    last_regularizer: float | None = None  # R̃_b at the last λ update (the policy's progress check)

    def ratio(self, costs: dict[str, float]) -> float:
        """The largest cost / budget over the block's budget kinds (0 without a budget)."""
        return max((costs[k] / self.budget[k] for k in self.budget), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "budget": dict(self.budget), "dense": dict(self.dense), "frozen": self.frozen,
                "lambda": self.lam, "met": self.met, "met_step": self.met_step,
                "last_regularizer": self.last_regularizer}


def resolve_blocks(structure) -> list:
    """The recipe's blocks, or one block "global" over every module for a global budget."""
    from edgekd.config.recipe import BlockBudget

    if getattr(structure, "latency_ms", None) is not None and structure.global_budget is None:
        raise ConfigError("structure.latency_ms: the network's latency budget needs the latency model's β to become "
                          "a budget of the network's ops; resolve it first (edgekd.pipeline.compress does)")
    if structure.blocks:
        return list(structure.blocks)
    budget = structure.global_budget
    if budget is None or not budget.amounts():
        raise ConfigError("structure: give per-block budgets (structure.blocks) or a global budget "
                          "(structure.global.flops / .params / .latency), or structure.latency_ms")
    return [BlockBudget(name="global", modules=["*"], **budget.budget_fields())]


def requested_cost_kinds(structure) -> dict[str, str]:
    """Cost kind → the first dotted recipe field that asks for it (``structure.cost`` always asks)."""
    wanted = {structure.cost: "structure.cost"}
    if getattr(structure, "latency_ms", None) is not None:
        wanted.setdefault("latency", "structure.latency_ms")
    for block in structure.blocks:
        for kind in block.amounts():
            wanted.setdefault(kind, f"structure.blocks[{block.name}].{kind}")
    if structure.global_budget is not None:
        for kind in structure.global_budget.amounts():
            wanted.setdefault(kind, f"structure.global.{kind}")
    return wanted


def check_cost_models(structure, cost_models: Mapping[str, CostModel], source: str | None = None) -> None:
    """Refuse a recipe that asks for a cost kind no model was handed in for (one line naming ``source`` and
    the field); and a mapping whose model does not measure the kind it is filed under (a roofline prior
    filed as ``latency``) — a programming error, ValueError."""
    for kind, model in cost_models.items():
        if getattr(model, "name", None) != kind:
            raise ValueError(f"cost model {model!r} measures {getattr(model, 'name', '?')!r}, "
                             f"not {kind!r}; file each model under its own name")
    for kind, field in requested_cost_kinds(structure).items():
        if kind not in cost_models:
            where = f"{source}: " if source else ""
            have = ", ".join(cost_models) or "none"
            hint = (" (a latency model must be measured on a board; the roofline is a prior, not a measurement)"
                    if kind == "latency" else "")
            raise ConfigError(f"{where}{field}={kind!r}: no {kind} cost model is available to structure learning; "
                              f"available: {have}{hint}")


def resolve_budgets(graph: ChannelGraph, ownership: BlockOwnership, blocks: Sequence,
                    cost_models: Mapping[str, CostModel]) -> dict[str, BlockBudgetState]:
    """One state per block (recipe order), plus the uncontrolled "(default)" pseudo-block when
    ``structure.default: free`` left learnable groups to it."""
    dense_costs = {k: block_costs(graph, m, dense_masks(graph), ownership) for k, m in cost_models.items()}
    minimum = {k: block_costs(graph, m, ownership.minimal_masks(graph), ownership) for k, m in cost_models.items()}
    states: dict[str, BlockBudgetState] = {}
    for block in blocks:
        states[block.name] = _resolve(block, ownership, dense_costs, minimum)
    if any(ownership.block_of(g) == DEFAULT_BLOCK and ownership.learnable(g) for g in graph.groups):
        states[DEFAULT_BLOCK] = BlockBudgetState(
            DEFAULT_BLOCK, {}, {k: c.get(DEFAULT_BLOCK, 0.0) for k, c in dense_costs.items()},
            {k: c.get(DEFAULT_BLOCK, 0.0) for k, c in minimum.items()}, controlled=False)
    return states


def _resolve(block, ownership: BlockOwnership, dense_costs: dict, minimum: dict) -> BlockBudgetState:
    dense = {k: c.get(block.name, 0.0) for k, c in dense_costs.items()}
    low = {k: c.get(block.name, 0.0) for k, c in minimum.items()}
    state = BlockBudgetState(block.name, {}, dense, low, frozen=block.frozen)
    if not ownership.charged.get(block.name):
        raise ConfigError(f"structure.blocks[{block.name}]: no conv/linear op is charged to this block "
                          "(its modules write no channel group it owns); check its module patterns")
    for kind, value in block.amounts().items():
        absolute = value * dense[kind] if block.is_fraction(kind) else value
        if absolute > dense[kind] * (1 + 1e-9):
            raise ConfigError(f"structure.blocks[{block.name}].{kind}={_amount(kind, value, block)}: above the "
                              f"dense block ({_amount(kind, dense[kind])}); give at most that or a fraction ≤ 1")
        if absolute < low[kind]:
            raise ConfigError(f"structure.blocks[{block.name}].{kind}={_amount(kind, value, block)}: unreachable; "
                              f"the smallest this block can be is {_amount(kind, low[kind])} (one channel per group)")
        state.budget[kind] = absolute
    if block.frozen:
        state.budget = dict(dense)
    return state


def _amount(kind: str, value: float, block=None) -> str:
    """A budget amount as a recipe writes it: milliseconds for an absolute latency, else a count or fraction."""
    if kind == "latency" and (block is None or not block.is_fraction(kind)):
        return f"{value:.4g}ms"
    return format_count(value)
