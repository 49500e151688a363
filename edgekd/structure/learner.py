"""The structure-learning policy: the regularised objective and the λ_b callback for the Trainer.

Inputs: a student network (initialised from the teacher), the recipe's ``structure`` section and a base
objective (KD, or cross-entropy for the MorphNet-without-KD baseline). Outputs:

* :class:`StructureObjective` — ``(model, images, targets) -> (loss + Σ_b λ_b·R̃_b, logits, metrics)``;
* :class:`BudgetCallback` — after every optimizer step runs :meth:`BudgetController.step`; at the end of
  each epoch returns the per-block cost against budget (merged into ``metrics.jsonl``); checkpoints λ_b.
* :func:`no_weight_decay` — keeps BatchNorm γ (the regularised scales) out of weight decay, since weight
  decay alone would shrink them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekd.structure.budgets import BudgetController
from edgekd.structure.groups import ChannelGraph, trace_groups

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
            penalty = float(self.controller.penalty())
        return loss + penalty, logits, {**metrics, "structure_penalty": penalty}

    def extra_parameters(self) -> list[nn.Parameter]:
        extra = getattr(self.base, "extra_parameters", None)
        return list(extra()) if extra else []

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
        extra = self.controller.epoch_metrics()
        self.log.append({"epoch": epoch, **extra})
        return extra

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state)


class StructureLearner:
    """Bundles graph, controller, objective and callback for one student network."""

    def __init__(self, student: nn.Module, structure, input_shape=(1, 3, 32, 32),
                 graph: ChannelGraph | None = None) -> None:
        self.student = student
        self.graph = graph or trace_groups(student, input_shape)
        self.controller = BudgetController(self.graph, structure)
        self.controller.init_lambdas()
        self.callback = BudgetCallback(self.controller)

    def objective(self, base: nn.Module) -> StructureObjective:
        return StructureObjective(base, self.controller)

    def masks(self) -> list[torch.Tensor]:
        return self.graph.alive_masks(self.controller.threshold)
