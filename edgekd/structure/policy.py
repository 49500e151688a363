"""The λ_b policy: how each block's regularisation strength starts and moves.

* Start: λ_b = ``lambda_init``, or MorphNet's 1/(initial regularizer) on the block's normalised regularizer
  R̃_b = Σ_kind R_kind / dense_kind (so λ_b·R̃_b starts near 1 whatever the block's size). The uncontrolled
  "(default)" pseudo-block (``structure.default: free``) gets a tenth of that, as a gentle, constant pull.
* Move: every ``update_every`` optimizer steps, while the block is above budget,
  λ_b ← λ_b·exp(η·(min(cost_b/budget_b, 3) − 1)) — bounded, so one update cannot explode λ_b. With flops
  and params budgets, the larger ratio drives it. But λ_b is left as it is while R̃_b still falls by
  ``min_progress`` of itself per update: the cost is counted at τ, so it lags the γ's, and a λ that kept
  growing until channels cross τ shrinks every γ of the block by ~0.3 a step by then (measured on a hard
  latency budget) — faster than training can follow, and the network that meets the budget is destroyed.
* Stop: the step a block's alive cost first falls to its budget (ratio ≤ 1), λ_b = 0 for good (what then
  happens to its channels — revive the overshoot, hold the mask — is the controller's business).

The policy is pure arithmetic on floats; it reads no graph and touches no weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LambdaPolicy"]


@dataclass(frozen=True)
class LambdaPolicy:
    init: float | None = None  # structure.lambda_init; None = 1 / initial normalised regularizer
    rate: float = 0.5  # η, structure.lambda_rate
    update_every: int = 10  # structure.update_every
    free_scale: float = 0.1  # λ of the uncontrolled "(default)" pseudo-block, relative to the start value
    max_ratio: float = 3.0  # cost/budget ratios above this count as this much in one update
    min_progress: float = 0.05  # R̃_b falling by this fraction per update: the shrinking is under way

    @classmethod
    def from_structure(cls, structure) -> LambdaPolicy:
        return cls(init=structure.lambda_init, rate=structure.lambda_rate, update_every=structure.update_every)

    def initial(self, regularizer: float, controlled: bool = True) -> float:
        """λ_b at the start, from the block's initial normalised regularizer value."""
        lam = (1.0 / regularizer if regularizer > 0 else 0.0) if self.init is None else float(self.init)
        return lam if controlled else lam * self.free_scale

    @staticmethod
    def met(ratio: float) -> bool:
        """The block's alive cost is within its budget: stop shrinking it."""
        return ratio <= 1.0

    def due(self, step: int) -> bool:
        """Whether λ's are adapted after optimizer step ``step`` (1-based)."""
        return step % self.update_every == 0

    def updated(self, lam: float, ratio: float, progress: float | None = None) -> float:
        """λ_b after one update while the block is at ``ratio`` × its budget (> 1) and its regularizer fell by
        ``progress`` (a fraction; None: not known yet) since the last update."""
        if progress is not None and progress >= self.min_progress:
            return lam
        return lam * math.exp(self.rate * (min(ratio, self.max_ratio) - 1.0))
