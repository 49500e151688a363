"""Trainer glue for structure learning: the regularised objective, the λ_b callback and the learner bundle.

Inputs: a student network (initialised from the teacher), the recipe's ``structure`` section, the cost
models to optimise (a mapping kind → :class:`~edgekd.structure.costs.CostModel`, handed in by the caller)
and a base objective (KD, or cross-entropy for the MorphNet-without-KD baseline). Outputs:

* :class:`StructureObjective` — ``(model, images, targets) -> (loss + Σ_b λ_b·R̃_b, logits, metrics)``;
* :class:`BudgetCallback` — after every optimizer step runs :meth:`BudgetController.step`; at the end of
  each epoch returns the per-block cost against budget (merged into ``metrics.jsonl``); checkpoints the
  controller (λ_b, met steps, held masks) in the trainer checkpoint, so ``--resume`` continues it;
* :class:`StructureLearner` — graph, controller, objective and callback for one student, and its final masks.
* :func:`no_weight_decay` — keeps BatchNorm γ (the regularised scales) out of weight decay, since weight
  decay alone would shrink them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edgekd.structure.controller import BudgetController
from edgekd.structure.costs import CostModel
from edgekd.structure.groups import ChannelGraph, trace_groups
from edgekd.structure.ownership import BlockOwnership
from edgekd.structure.prune import final_masks
from edgekd.structure.report import epoch_metrics
from edgekd.structure.widths import WidthGrid, grid_for

__all__ = ["StructureLearner", "StructureObjective", "BudgetCallback", "no_weight_decay"]


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """BN γ/β and biases (1-D parameters) take no weight decay."""
    return param.dim() <= 1


class StructureObjective(nn.Module):
    """Wraps a base objective and reports the penalty Σ_b λ_b·R̃_b; the penalty is minimised by the
    callback's proximal step on the γ's (see :meth:`BudgetController.prox_step`), so its value is added
    to the loss detached."""

    def __init__(self, base: nn.Module, controller: BudgetController) -> None:
        super().__init__()
        self.base = base
        self.controller = controller

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor):
        loss, logits, metrics = self.base(model, images, targets)
        with torch.no_grad():
            penalty = self.controller.penalty().detach()
        return loss + penalty, logits, {**metrics, "structure_penalty": penalty}

    def extra_parameters(self) -> list[nn.Parameter]:
        extra = getattr(self.base, "extra_parameters", None)
        return list(extra()) if extra else []

    @property
    def taps_student(self) -> bool:
        return bool(getattr(self.base, "taps_student", False))

    def state_dict(self, *args, **kwargs):  # the controller is checkpointed by the callback
        return self.base.state_dict(*args, **kwargs)

    def load_state_dict(self, state, strict: bool = True):
        return self.base.load_state_dict(state, strict)


class BudgetCallback:
    """Trainer callback: controller step after every optimizer step, per-block report every epoch."""

    def __init__(self, controller: BudgetController) -> None:
        self.controller = controller
        self.log: list[dict[str, Any]] = []

    def on_step_end(self, trainer, step: int) -> None:
        self.controller.step(trainer.optimizer.param_groups[0]["lr"])

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> dict:
        extra = epoch_metrics(self.controller)
        self.log.append({"epoch": epoch, **extra})
        return extra

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state)


class StructureLearner:
    """Bundles graph, controller, objective and callback for one student network.

    ``cost_models`` (keyword): kind → cost model, covering every kind the recipe asks for (see
    :class:`~edgekd.structure.controller.BudgetController`)."""

    def __init__(self, student: nn.Module, structure, input_shape=(1, 3, 32, 32),
                 graph: ChannelGraph | None = None, *, cost_models: Mapping[str, CostModel]) -> None:
        self.student = student
        self.structure = structure
        self.graph = graph or trace_groups(student, input_shape)
        self.controller = BudgetController(self.graph, structure, cost_models)
        self.controller.init_lambdas()
        self.grid = grid_for(self.graph, structure.round_to, cost_models.values())
        self.callback = BudgetCallback(self.controller)

    @property
    def ownership(self) -> BlockOwnership:
        return self.controller.ownership

    def objective(self, base: nn.Module) -> StructureObjective:
        return StructureObjective(base, self.controller)

    def masks(self) -> list[torch.Tensor]:
        """The alive masks now (one τ; groups the blocks freeze are whole)."""
        return self.controller.alive_masks()

    def final_masks(self, grid: WidthGrid | int | None = None) -> list[torch.Tensor]:
        """The masks to prune with: alive at τ, on the ``grid`` (default :attr:`grid`: the recipe's ``round_to``
        and the per-group steps a cost model demands), fitted within every block's budget
        (:meth:`~edgekd.structure.controller.BudgetController.fit_masks`)."""
        grid = self.grid if grid is None else WidthGrid.of(grid)
        masks = final_masks(self.graph, self.controller.threshold, grid, self.ownership)
        return self.controller.fit_masks(masks, grid)
