"""The per-step budget controller of structure learning.

Inputs: a traced :class:`ChannelGraph`, the recipe's ``structure`` section and the cost models to optimise
(a mapping kind → :class:`CostModel`, handed in by the caller — the pipeline builds FLOPs and params). It
assembles the pieces, each readable alone:

* block ownership — :func:`~edgekd.structure.ownership.assign_blocks`, a mapping this controller owns (the
  graph is not modified, so controllers with different blocks can share one graph);
* per-block budget state — :func:`~edgekd.structure.budgets.resolve_budgets`;
* the λ_b policy — :class:`~edgekd.structure.policy.LambdaPolicy`;
* γ edits — :mod:`edgekd.structure.gammas`;
* reporting — :mod:`edgekd.structure.report` (reads the controller, changes nothing).

After every optimizer step (:meth:`BudgetController.step`):

1. a proximal step of lr·Σ_b λ_b·R̃_b on the γ's of learnable groups that are not held;
2. held groups are put back to their masks;
3. each block's alive cost is measured (one threshold τ for the whole network); a block within budget is
   *met*: λ_b = 0, the channels that died in that very step are revived (largest |γ| first) while the block
   stays within budget, and from then on its groups, and the groups its ops read, are held — dead channels
   keep γ = 0, alive ones keep max |γ| ≥ 1.02·τ (so pruning upstream cannot move a block that is done);
4. blocks still above budget get λ_b updated when the policy says so.

The controller's state (λ's, met steps, held masks, step count) goes into the trainer checkpoint through
:class:`~edgekd.structure.learner.BudgetCallback` (:meth:`state_dict` / :meth:`load_state_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from edgekd.structure import gammas
from edgekd.structure.budgets import BlockBudgetState, check_cost_models, resolve_blocks, resolve_budgets
from edgekd.structure.costs import CostModel, block_costs, block_regularizers
from edgekd.structure.groups import ChannelGraph
from edgekd.structure.ownership import BlockOwnership, assign_blocks
from edgekd.structure.policy import LambdaPolicy
from edgekd.structure.widths import WidthGrid

__all__ = ["BudgetController"]

_HOLD_MARGIN = 1.02  # alive channels of a held block keep max |γ| ≥ τ·margin


class BudgetController:
    """Budgets, λ_b and held masks of one structure-learning run (see the module docstring).

    ``cost_models`` maps each cost kind to the model that measures it; it must cover every kind the
    recipe asks for (``structure.cost``, every block budget) — otherwise a one-line ConfigError — and every
    model in it is measured and reported per block.
    """

    def __init__(self, graph: ChannelGraph, structure, cost_models: Mapping[str, CostModel]) -> None:
        check_cost_models(structure, cost_models)
        self.graph, self.structure = graph, structure
        self.cost_models: dict[str, CostModel] = dict(cost_models)
        self.threshold = float(structure.threshold)
        self.policy = LambdaPolicy.from_structure(structure)
        self.blocks_cfg = resolve_blocks(structure)
        self.ownership: BlockOwnership = assign_blocks(graph, self.blocks_cfg, structure.default)
        self.states: dict[str, BlockBudgetState] = resolve_budgets(graph, self.ownership, self.blocks_cfg,
                                                                   self.cost_models)
        self.prev_alive = self.alive_masks()
        self.held: dict[int, torch.Tensor] = {}  # group id → the alive mask it is held at
        self.step_count = 0

    @property
    def charged(self) -> dict[str, list[str]]:
        """Block → the op names charged to it."""
        return self.ownership.charged

    def init_lambdas(self) -> None:
        """λ_b from the policy and each block's initial normalised regularizer."""
        regs = self.normalised_regularizers()
        for name, state in self.states.items():
            if state.frozen:
                continue
            value = regs.get(name, 0.0)
            value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            state.lam = self.policy.initial(value, state.controlled)

    # ------------------------------------------------------------------ measurement
    def alive_masks(self) -> list[torch.Tensor]:
        """Per group r > τ under this controller's ownership (groups it freezes are whole)."""
        return self.ownership.alive_masks(self.graph, self.threshold)

    def costs(self, alive: list[torch.Tensor] | None = None) -> dict[str, dict[str, float]]:
        """block → {kind: alive cost} for every cost model handed in."""
        alive = alive if alive is not None else self.alive_masks()
        per_kind = {k: block_costs(self.graph, m, alive, self.ownership) for k, m in self.cost_models.items()}
        return {name: {k: per_kind[k].get(name, 0.0) for k in self.cost_models} for name in self.states}

    def regularised_kinds(self, state: BlockBudgetState) -> list[str]:
        """The kinds a block's regularizer sums: its budget kinds, or ``structure.cost`` without a budget."""
        return list(state.budget) or [self.structure.cost]

    def normalised_regularizers(self, r: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """R̃_b = Σ over the block's regularised kinds of R_kind / dense_kind (differentiable in ``r``)."""
        alive = self.alive_masks()
        r = r if r is not None else self.ownership.saliencies(self.graph)
        wanted = {name: self.regularised_kinds(s) for name, s in self.states.items() if not s.frozen}
        kinds = list(dict.fromkeys(k for ks in wanted.values() for k in ks))
        regs = {k: block_regularizers(self.graph, self.cost_models[k], alive, r, self.ownership) for k in kinds}
        out: dict[str, torch.Tensor] = {}
        for name, block_kinds in wanted.items():
            for kind in block_kinds:
                dense = self.states[name].dense.get(kind, 0.0)
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

    # ------------------------------------------------------------------ γ updates
    @torch.no_grad()
    def prox_step(self, lr: float) -> None:
        """One proximal step of lr·Σ_b λ_b·R̃_b on the γ's: soft-threshold every member of group channel c
        by lr·∂(Σ λ_b R̃_b)/∂r_c. (A subgradient step instead makes γ oscillate around 0 with amplitude
        lr·λ·∂R/∂r, which exceeds τ once λ_b has grown, so no channel would ever cross one fixed τ.)"""
        active = [g for g in self.graph.groups if self.ownership.learnable(g) and g.id not in self.held]
        if not active:
            return
        ids = {g.id for g in active}
        leaves = [r.detach().clone().requires_grad_(g.id in ids)
                  for g, r in zip(self.graph.groups, self.ownership.saliencies(self.graph), strict=True)]
        with torch.enable_grad():
            total = self.penalty(leaves)
            if not total.requires_grad:
                return
            grads = torch.autograd.grad(total, [leaves[g.id] for g in active], allow_unused=True)
        shrunk = []
        for group, grad in zip(active, grads, strict=True):
            if grad is not None:
                gammas.soft_threshold(group, (lr * grad).clamp_min(0))
                shrunk.append(group)
        # A group is never emptied while learning, as it never is when pruned. (A group whose every γ the proximal
        # step zeroes feeds the next BatchNorm a constant; in training mode its 1/√ε gain then sends gradients of
        # ~1e5 to the γ's upstream and momentum carries them to |γ| ~ 1e5 — a network float32 cannot prune.)
        gammas.keep_one_alive(shrunk, self.threshold * _HOLD_MARGIN)

    @torch.no_grad()
    def step(self, lr: float) -> dict[str, dict[str, float]]:
        """Call after each optimizer step (``lr``: its learning rate): proximal step on the γ's, hold met
        blocks, detect newly met ones, adapt λ's. Returns block → {kind: alive cost}."""
        self.step_count += 1
        self.prox_step(lr)
        self._apply_holds()
        alive = self.alive_masks()
        costs = self.costs(alive)
        regularizers = None
        for name, state in self.states.items():
            if state.frozen or not state.controlled or state.met:
                continue
            ratio = state.ratio(costs[name])
            if self.policy.met(ratio):
                self._meet(name, alive)
                alive = self.alive_masks()
                costs = self.costs(alive)
            elif self.policy.due(self.step_count):
                regularizers = self.normalised_regularizers() if regularizers is None else regularizers
                now = float(regularizers.get(name, 0.0))
                progress = 1.0 - now / state.last_regularizer if state.last_regularizer else None
                state.lam, state.last_regularizer = self.policy.updated(state.lam, ratio, progress), now
        self.prev_alive = alive
        return costs

    def _meet(self, name: str, alive: list[torch.Tensor]) -> None:
        state = self.states[name]
        state.met, state.met_step, state.lam = True, self.step_count, 0.0
        self._revive_overshoot(name, alive)
        groups, ownership = self.graph.groups, self.ownership
        own = {g.id for g in ownership.groups_of(self.graph, name) if ownership.learnable(g)}
        read = {s.group for op in ownership.ops_of(self.graph, name) for s in op.in_segments + op.out_segments}
        alive = self.alive_masks()
        for gid in own | {g for g in read if ownership.learnable(groups[g])}:
            self.held.setdefault(gid, alive[gid].clone())
        self._apply_holds()

    def _revive_overshoot(self, name: str, alive: list[torch.Tensor]) -> None:
        """Channels that died in the crossing step come back, largest |γ| first, while within budget."""
        state = self.states[name]
        candidates = []
        for group in self.ownership.groups_of(self.graph, name):
            if not self.ownership.learnable(group):
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
            gammas.raise_channel(self.graph.groups[gid], channel, self.threshold * _HOLD_MARGIN)

    # ------------------------------------------------------------------ final widths
    def fit_masks(self, masks: list[torch.Tensor], grid: WidthGrid | int = 1,
                  saliency: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The final masks within every block's budget, on the ``grid`` (a :class:`WidthGrid`, or one step for
        every group): a block over budget loses, one
        grid step at a time, the group step whose channels have the least saliency per unit of budget saved; then
        a block under budget gets back, greedily by saliency per unit of budget, the dead group steps that still
        fit. Saliency is |γ| unless given per group (``structure.saliency: taylor``:
        :func:`~edgekd.structure.saliency.taylor_saliency`, fitted from the whole network).
        Learning rarely lands exactly on a budget in few steps, and rounding widths up to the grid overshoots it;
        this makes the pruned network's predicted cost meet its budgets (HALP and NetAdapt end the same way)."""
        masks = [m.clone() for m in masks]
        scores = saliency if saliency is not None else self._gamma_saliency()
        grid = WidthGrid.of(grid)
        for name, state in self.states.items():
            if state.frozen or not state.controlled or not state.budget:
                continue
            groups = [g for g in self.ownership.groups_of(self.graph, name) if self.ownership.learnable(g)]
            while self._ratio(name, masks) > 1.0 + 1e-9:
                step = self._best_step(name, groups, masks, grid, scores, shrink=True)
                if step is None:
                    break
                masks = step
            while (step := self._best_step(name, groups, masks, grid, scores, shrink=False)) is not None:
                masks = step
        return masks

    def _gamma_saliency(self) -> list[torch.Tensor]:
        """Every group's |γ| saliency now (what :meth:`fit_masks` ranks by unless given another)."""
        return [g.saliency().detach().cpu() for g in self.graph.groups]

    def _ratio(self, name: str, masks: list[torch.Tensor]) -> float:
        """Block ``name``'s largest cost / budget over its budget kinds (only those models are evaluated)."""
        state = self.states[name]
        costs = {k: block_costs(self.graph, self.cost_models[k], masks, self.ownership).get(name, 0.0)
                 for k in state.budget}
        return state.ratio(costs)

    def _best_step(self, name: str, groups, masks: list[torch.Tensor], grid: WidthGrid, scores, shrink: bool):
        """The masks after the best one-step change of one group of block ``name`` (None when none is allowed):
        shrinking, the least saliency lost per budget share saved; growing, the most gained per share spent among
        the steps that keep the block within budget."""
        before = self._ratio(name, masks)
        best, best_score = None, None
        for trial, lost_or_gained, after in self._steps(name, groups, masks, grid, scores, shrink):
            if not shrink and after > 1.0 + 1e-9:
                continue
            delta = abs(before - after)
            if delta <= 0:
                continue
            score = lost_or_gained / delta
            if best_score is None or (score < best_score if shrink else score > best_score):
                best, best_score = trial, score
        return best

    def _steps(self, name: str, groups, masks: list[torch.Tensor], grid: WidthGrid, scores, shrink: bool):
        """Every one-grid-step change of one group of block ``name``: (masks after it, Σ saliency of the channels
        it kills or revives, the block's cost/budget ratio after it)."""
        for group in groups:
            r = scores[group.id]
            width = int(masks[group.id].sum())
            target = grid.below(group.id, width) if shrink else grid.above(group.id, width, group.size)
            if target is None:
                continue
            order = torch.argsort(r, descending=True, stable=True)
            trial = list(masks)
            trial[group.id] = torch.zeros_like(masks[group.id])
            trial[group.id][order[:target]] = True
            changed = trial[group.id] ^ masks[group.id]
            yield trial, float(r[changed].sum()), self._ratio(name, trial)

    def next_step_ratio(self, name: str, masks: list[torch.Tensor], grid: WidthGrid | int = 1) -> float | None:
        """Block ``name``'s cost/budget ratio after the cheapest one-grid-step growth of one of its learnable
        groups (None when every group is whole or the block has no budget). Above 1, nothing more fits: why a
        block that :meth:`fit_masks` fitted can sit below its budget — the grid's steps are that coarse."""
        state = self.states[name]
        if state.frozen or not state.budget:
            return None
        groups = [g for g in self.ownership.groups_of(self.graph, name) if self.ownership.learnable(g)]
        steps = self._steps(name, groups, masks, WidthGrid.of(grid), self._gamma_saliency(), shrink=False)
        return min((after for _trial, _gamma, after in steps),
                   default=None)

    def _apply_holds(self) -> None:
        if self.held:
            gammas.hold([(self.graph.groups[gid], mask) for gid, mask in self.held.items()],
                        self.threshold * _HOLD_MARGIN)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {"states": {n: s.to_dict() for n, s in self.states.items()},
                "held": {g: m.clone() for g, m in self.held.items()},
                "step_count": self.step_count, "prev_alive": [a.clone() for a in self.prev_alive]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, saved in state["states"].items():
            if name in self.states:
                target = self.states[name]
                target.lam, target.met, target.met_step = saved["lambda"], saved["met"], saved["met_step"]
                target.last_regularizer = saved.get("last_regularizer")
        self.held = {int(g): m.clone() for g, m in state["held"].items()}
        self.step_count = int(state["step_count"])
        self.prev_alive = [a.clone() for a in state["prev_alive"]]
