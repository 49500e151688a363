"""Per-block budgets and the λ_b controller.

Inputs: a traced :class:`ChannelGraph` (blocks assigned) and the recipe's ``structure`` section.
Outputs: :class:`BlockBudgetState` per block (absolute budgets, dense and minimal costs, λ_b, whether the
block has met its budget) and :class:`BudgetController`, which after every optimizer step

1. measures each block's alive cost (one threshold τ for the whole network),
2. every ``update_every`` steps adapts λ_b ← λ_b·exp(η·(cost_b/budget_b − 1)) for blocks still above
   budget (with flops and params budgets, the larger ratio drives it),
3. the step a block first meets its budget it stops shrinking: λ_b = 0, the channels that died in that
   very step are revived (largest |γ| first) while the block stays within budget, and from then on the
   block's mask is held — dead channels keep γ = 0, alive ones keep max |γ| ≥ τ, and so do the groups
   its ops read (so pruning upstream cannot move a block that is already done).

Fractions (≤ 1) are relative to the dense block; larger values are absolute (FLOPs with 2 per MAC, or
conv/linear weights). A pattern matching nothing, a budget above the dense block or below the smallest
reachable cost (one channel per group) is a one-line ConfigError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from edgekd.errors import ConfigError
from edgekd.models.counting import format_count
from edgekd.structure.costs import CostModel, FlopCost, ParamCost, block_costs, block_regularizers
from edgekd.structure.groups import DEFAULT_BLOCK, ChannelGraph, assign_blocks

__all__ = ["BlockBudgetState", "BudgetController", "resolve_blocks", "KINDS"]

KINDS: dict[str, CostModel] = {"flops": FlopCost(), "params": ParamCost()}
_HOLD_MARGIN = 1.02  # alive channels of a held block keep max |γ| ≥ τ·margin


@dataclass
class BlockBudgetState:
    name: str
    budget: dict[str, float]  # kind → absolute budget
    dense: dict[str, float]
    minimum: dict[str, float]
    frozen: bool = False
    controlled: bool = True  # False for the "(default)" pseudo-block of structure.default: free
    lam: float = 0.0
    met: bool = False
    met_step: int | None = None

    def ratio(self, costs: dict[str, float]) -> float:
        return max((costs[k] / self.budget[k] for k in self.budget), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "budget": dict(self.budget), "dense": dict(self.dense), "frozen": self.frozen,
                "lambda": self.lam, "met": self.met, "met_step": self.met_step}


def resolve_blocks(graph: ChannelGraph, structure) -> list:
    """The recipe's blocks, or one block "global" over every module for a global budget."""
    from edgekd.config.recipe import BlockBudget

    if structure.blocks:
        return list(structure.blocks)
    budget = structure.global_budget
    if budget is None or (budget.flops is None and budget.params is None):
        raise ConfigError("structure: give per-block budgets (structure.blocks) or a global budget "
                          "(structure.global.flops / .params)")
    return [BlockBudget(name="global", modules=["*"], flops=budget.flops, params=budget.params)]


def _min_masks(graph: ChannelGraph) -> list[torch.Tensor]:
    """One alive channel per learnable group (Torch-Pruning never empties a layer)."""
    masks = []
    for group in graph.groups:
        mask = torch.ones(group.size, dtype=torch.bool)
        if group.learnable:
            mask[1:] = False
        masks.append(mask)
    return masks


class BudgetController:
    """λ_b state and the per-step controller (see the module docstring)."""

    def __init__(self, graph: ChannelGraph, structure, cost: CostModel | None = None) -> None:
        self.graph, self.structure = graph, structure
        self.threshold = float(structure.threshold)
        self.blocks_cfg = resolve_blocks(graph, structure)
        self.charged = assign_blocks(graph, self.blocks_cfg, structure.default)
        self.cost = cost or KINDS.get(structure.cost, FlopCost())
        dense = [torch.ones(g.size, dtype=torch.bool) for g in graph.groups]
        self.dense_costs = {k: block_costs(graph, m, dense) for k, m in KINDS.items()}
        minimum = {k: block_costs(graph, m, _min_masks(graph)) for k, m in KINDS.items()}
        self.states: dict[str, BlockBudgetState] = {}
        for block in self.blocks_cfg:
            self.states[block.name] = self._resolve(block, minimum)
        if any(g.block == DEFAULT_BLOCK and g.learnable for g in graph.groups):
            self.states[DEFAULT_BLOCK] = BlockBudgetState(DEFAULT_BLOCK, {}, {}, {}, controlled=False)
        self.prev_alive = graph.alive_masks(self.threshold)
        self.held: dict[int, torch.Tensor] = {}  # group id → the alive mask it is held at
        self.step_count = 0

    # ------------------------------------------------------------------ setup
    def _resolve(self, block, minimum: dict) -> BlockBudgetState:
        dense = {k: self.dense_costs[k].get(block.name, 0.0) for k in KINDS}
        low = {k: minimum[k].get(block.name, 0.0) for k in KINDS}
        state = BlockBudgetState(block.name, {}, dense, low, frozen=block.frozen)
        if not self.charged.get(block.name):
            raise ConfigError(f"structure.blocks[{block.name}]: no conv/linear op is charged to this block "
                              "(its modules write no channel group it owns); check its module patterns")
        for kind in KINDS:
            value = getattr(block, kind)
            if value is None:
                continue
            absolute = value * dense[kind] if value <= 1 else value
            if absolute > dense[kind] * (1 + 1e-9):
                raise ConfigError(f"structure.blocks[{block.name}].{kind}={format_count(value)}: above the dense "
                                  f"block ({format_count(dense[kind])}); give at most that or a fraction ≤ 1")
            if absolute < low[kind]:
                raise ConfigError(f"structure.blocks[{block.name}].{kind}={format_count(value)}: unreachable; the "
                                  f"smallest this block can be is {format_count(low[kind])} (one channel per group)")
            state.budget[kind] = absolute
        if block.frozen:
            state.budget = {"flops": dense["flops"], "params": dense["params"]}
        return state

    def init_lambdas(self) -> None:
        """λ_b = lambda_init, or MorphNet's 1/(initial regularizer) on the block's normalised regularizer."""
        regs = self.normalised_regularizers()
        for name, state in self.states.items():
            if state.frozen:
                continue
            if self.structure.lambda_init is not None:
                state.lam = float(self.structure.lambda_init)
            else:
                value = float(regs.get(name, torch.zeros(())).detach())
                state.lam = 1.0 / value if value > 0 else 0.0
            if not state.controlled:
                state.lam *= 0.1  # uncovered ops: a gentle, constant pull

    # ------------------------------------------------------------------ measurement
    def costs(self, alive: list[torch.Tensor] | None = None) -> dict[str, dict[str, float]]:
        """block → {flops, params} of the alive network."""
        alive = alive if alive is not None else self.graph.alive_masks(self.threshold)
        per_kind = {k: block_costs(self.graph, m, alive) for k, m in KINDS.items()}
        return {name: {k: per_kind[k].get(name, 0.0) for k in KINDS} for name in self.states}

    def normalised_regularizers(self, r: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Σ over the block's budget kinds of R_kind / dense_kind (dimensionless, differentiable in ``r``)."""
        alive = self.graph.alive_masks(self.threshold)
        r = r if r is not None else self.graph.saliencies()
        kinds = {k for s in self.states.values() for k in (s.budget or {"flops": 0})} or {"flops"}
        regs = {k: block_regularizers(self.graph, KINDS[k], alive, r) for k in kinds}
        out: dict[str, torch.Tensor] = {}
        for name, state in self.states.items():
            if state.frozen:
                continue
            for kind in state.budget or {self.structure.cost if self.structure.cost in KINDS else "flops": 0}:
                dense = self.dense_costs[kind].get(name, 0.0)
                value = regs[kind].get(name)
                if value is not None and dense > 0:
                    out[name] = out.get(name, 0.0) + value / dense
        return out

    def penalty(self, r: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Σ_b λ_b·R̃_b — the structure term of the loss."""
        total = torch.zeros(())
        for name, value in self.normalised_regularizers(r).items():
            lam = self.states[name].lam
            if lam > 0 and isinstance(value, torch.Tensor):
                total = total.to(value.device) + lam * value
        return total

    @torch.no_grad()
    def prox_step(self, lr: float) -> None:
        """One proximal step of lr·Σ_b λ_b·R̃_b on the γ's: soft-threshold every member of group channel c
        by lr·∂(Σ λ_b R̃_b)/∂r_c. (A subgradient step instead makes γ oscillate around 0 with amplitude
        lr·λ·∂R/∂r, which exceeds τ once λ_b has grown, so no channel would ever cross one fixed τ.)"""
        active = [g for g in self.graph.groups if g.learnable and g.id not in self.held]
        if not active:
            return
        leaves = [g.saliency().detach().clone().requires_grad_(g in active) for g in self.graph.groups]
        with torch.enable_grad():
            total = self.penalty(leaves)
            if not total.requires_grad:
                return
            grads = torch.autograd.grad(total, [leaves[g.id] for g in active], allow_unused=True)
        for group, grad in zip(active, grads, strict=True):
            if grad is None:
                continue
            shrink = (lr * grad).clamp_min(0)
            for member in group.bns:
                weight = member.module.weight
                idx = member.module_idx.to(weight.device)
                values = weight[idx]
                amount = shrink[member.group_idx.to(shrink.device)].to(values.device)
                weight[idx] = values.sign() * (values.abs() - amount).clamp_min(0)

    # ------------------------------------------------------------------ control
    @torch.no_grad()
    def step(self, lr: float) -> dict[str, dict[str, float]]:
        """Call after each optimizer step (``lr``: its learning rate): proximal step on the γ's, hold met
        blocks, detect newly met ones, adapt λ's."""
        self.step_count += 1
        self.prox_step(lr)
        self._apply_holds()
        alive = self.graph.alive_masks(self.threshold)
        costs = self.costs(alive)
        for name, state in self.states.items():
            if state.frozen or not state.controlled or state.met:
                continue
            if state.ratio(costs[name]) <= 1.0:
                self._meet(name, alive)
                alive = self.graph.alive_masks(self.threshold)
                costs = self.costs(alive)
            elif self.step_count % self.structure.update_every == 0:
                ratio = min(state.ratio(costs[name]), 3.0)  # bounded: one update may not explode λ
                state.lam *= math.exp(self.structure.lambda_rate * (ratio - 1.0))
        self.prev_alive = alive
        return costs

    def _meet(self, name: str, alive: list[torch.Tensor]) -> None:
        state = self.states[name]
        state.met, state.met_step, state.lam = True, self.step_count, 0.0
        self._revive_overshoot(name, alive)
        own = {g.id for g in self.graph.groups if g.block == name and g.learnable}
        read = {s.group for op in self.graph.ops if op.block == name for s in op.in_segments + op.out_segments}
        alive = self.graph.alive_masks(self.threshold)
        for gid in own | {g for g in read if self.graph.groups[g].learnable}:
            self.held.setdefault(gid, alive[gid].clone())
        self._apply_holds()

    def _revive_overshoot(self, name: str, alive: list[torch.Tensor]) -> None:
        """Channels that died in the crossing step come back, largest |γ| first, while within budget."""
        state = self.states[name]
        candidates = []
        for group in self.graph.groups:
            if group.block != name or not group.learnable:
                continue
            died = self.prev_alive[group.id] & ~alive[group.id]
            r = group.saliency().detach().cpu()
            candidates += [(float(r[c]), group.id, int(c)) for c in torch.nonzero(died).flatten()]
        for _, gid, channel in sorted(candidates, reverse=True):
            trial = [a.clone() for a in alive]
            trial[gid][channel] = True
            if state.ratio(self.costs(trial)[name]) > 1.0:
                break
            alive = trial
            self._set_saliency(gid, channel, self.threshold * _HOLD_MARGIN)

    def _apply_holds(self) -> None:
        for gid, mask in self.held.items():
            group = self.graph.groups[gid]
            for member in group.bns:
                weight = member.module.weight
                dead = ~mask[member.group_idx]
                weight[member.module_idx[dead].to(weight.device)] = 0.0
            r = group.saliency().detach().cpu()
            weak = torch.nonzero(mask & (r < self.threshold * _HOLD_MARGIN)).flatten()
            for channel in weak.tolist():
                self._set_saliency(gid, channel, self.threshold * _HOLD_MARGIN)

    def _set_saliency(self, gid: int, channel: int, value: float) -> None:
        """Raise the largest member |γ| of one group channel to ``value`` (keeping its sign)."""
        group = self.graph.groups[gid]
        best, best_abs = None, -1.0
        for member in group.bns:
            hits = torch.nonzero(member.group_idx == channel).flatten()
            for hit in hits.tolist():
                index = int(member.module_idx[hit])
                magnitude = float(member.module.weight[index].abs())
                if magnitude > best_abs:
                    best, best_abs = (member.module.weight, index), magnitude
        if best is not None:
            weight, index = best
            sign = 1.0 if float(weight[index]) >= 0 else -1.0
            weight[index] = sign * value

    # ------------------------------------------------------------------ persistence and reporting
    def report(self) -> list[dict[str, Any]]:
        costs = self.costs()
        rows = []
        for name, state in self.states.items():
            ratio = state.ratio(costs[name]) if state.budget else None
            rows.append({**state.to_dict(), "cost": costs[name], "ratio": ratio})
        return rows

    def epoch_metrics(self) -> dict[str, float]:
        costs = self.costs()
        out: dict[str, float] = {}
        for name, state in self.states.items():
            for kind, value in costs[name].items():
                out[f"block/{name}/{kind}"] = value
            for kind, value in state.budget.items():
                out[f"block/{name}/{kind}_budget"] = value
            out[f"block/{name}/lambda"] = state.lam
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"states": {n: s.to_dict() for n, s in self.states.items()},
                "held": {g: m.clone() for g, m in self.held.items()},
                "step_count": self.step_count, "prev_alive": [a.clone() for a in self.prev_alive]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, saved in state["states"].items():
            if name in self.states:
                target = self.states[name]
                target.lam, target.met, target.met_step = saved["lambda"], saved["met"], saved["met_step"]
        self.held = {int(g): m.clone() for g, m in state["held"].items()}
        self.step_count = int(state["step_count"])
        self.prev_alive = [a.clone() for a in state["prev_alive"]]

