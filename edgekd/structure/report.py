"""Reporting on structure learning: it reads a :class:`~edgekd.structure.controller.BudgetController` and
changes nothing.

* :func:`epoch_metrics` — per block and cost kind, the alive cost, the budget and λ_b (merged into each
  epoch's ``metrics.jsonl`` line by the budget callback);
* :func:`controller_report` — per block, the budget state and its alive cost now (``report.json:
  phases.learn.controller``);
* :func:`block_report` — per block, under the final masks: budget, alive cost and dense cost of every kind
  (``flops``, ``dense_flops``, ``params``, ``dense_params``, …), channels before / after, λ_b, the step it
  met its budget and the ratio one more grid step would reach (``report.json: blocks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from edgekd.structure.costs import block_costs
from edgekd.structure.groups import dense_masks
from edgekd.structure.widths import WidthGrid

if TYPE_CHECKING:
    from edgekd.structure.controller import BudgetController

__all__ = ["epoch_metrics", "controller_report", "block_report"]


def epoch_metrics(controller: BudgetController) -> dict[str, float]:
    """``block/<name>/<kind>``, ``block/<name>/<kind>_budget`` and ``block/<name>/lambda``."""
    costs = controller.costs()
    out: dict[str, float] = {}
    for name, state in controller.states.items():
        for kind, value in costs[name].items():
            out[f"block/{name}/{kind}"] = value
        for kind, value in state.budget.items():
            out[f"block/{name}/{kind}_budget"] = value
        out[f"block/{name}/lambda"] = state.lam
    return out


def controller_report(controller: BudgetController) -> list[dict[str, Any]]:
    """Per block: its state (budget, dense cost, λ_b, met) with the alive cost and cost/budget ratio now."""
    costs = controller.costs()
    rows = []
    for name, state in controller.states.items():
        ratio = state.ratio(costs[name]) if state.budget else None
        rows.append({**state.to_dict(), "cost": costs[name], "ratio": ratio})
    return rows


def block_report(controller: BudgetController, masks: list[torch.Tensor], grid: WidthGrid | int = 1
                 ) -> list[dict[str, Any]]:
    """Per block: requested budget (absolute), alive and dense cost of every kind, channels before / after, and
    the cost/budget ratio one more ``grid`` step of growth would reach (``next_step_ratio``, above 1 when
    nothing more fits)."""
    graph, ownership = controller.graph, controller.ownership
    kinds = list(controller.cost_models)
    dense = dense_masks(graph)
    costs = {k: block_costs(graph, m, masks, ownership) for k, m in controller.cost_models.items()}
    rows = []
    for name, state in controller.states.items():
        owned = ownership.groups_of(graph, name)
        rows.append({
            "name": name, "budget": dict(state.budget), "frozen": state.frozen,
            **{kind: costs[kind].get(name, 0.0) for kind in kinds},
            **{f"dense_{kind}": state.dense.get(kind, 0.0) for kind in kinds},
            "channels_before": int(sum(int(dense[g.id].sum()) for g in owned)),
            "channels_after": int(sum(int(masks[g.id].sum()) for g in owned)),
            "lambda": state.lam, "met_step": state.met_step,
            "next_step_ratio": controller.next_step_ratio(name, masks, grid),
        })
    return rows
