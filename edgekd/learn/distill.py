"""Training objectives: cross-entropy, Hinton knowledge distillation and FitNets hints.

An objective is a small callable ``objective(model, images, targets) -> (loss, logits, metrics)``; the
engine never knows which one it runs. Objectives that own trainable parameters (FitNets regressors)
expose them through :meth:`extra_parameters` and are checkpointed through ``state_dict``.

KD loss (Hinton et al. 2015): ``(1 − α)·CE(y, z_s) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))``, with the
KL averaged over the batch (``reduction="batchmean"``; plain ``"mean"`` would also divide by the number
of classes). FitNets (Romero et al. 2015): ``β·MSE(r(f_s), f_t)`` with ``r`` a learned 1×1 conv whose
shape is inferred by running both networks once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.config.recipe import DistillConfig, HintPair
from edgekd.errors import ConfigError

ObjectiveResult = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor | float]]  # loss, logits, parts


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²-scaled KL divergence between softened teacher and student distributions, batch-averaged."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature * temperature


class CrossEntropyObjective(nn.Module):
    """Plain supervised training (optionally label-smoothed)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> ObjectiveResult:
        logits = model(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        return loss, logits, {"ce": loss.detach()}

    def extra_parameters(self) -> list[nn.Parameter]:
        return []


class FeatureTap:
    """Records the output of named modules on every forward pass (forward hooks, removable)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        missing = [name for name in names if name not in modules]
        if missing:
            raise ConfigError(f"distill.hints: module {missing[0]!r} not found; "
                              f"e.g. {', '.join(list(modules)[1:6])} ...")
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in names]

    def _hook(self, name: str) -> Callable:
        def record(_module, _inputs, output):
            self.features[name] = output

        return record

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class DistillationObjective(nn.Module):
    """Hinton KD from a frozen teacher, plus optional FitNets hints through learned 1×1 regressors.

    Args:
        teacher: the dense network; frozen and kept in eval mode.
        cfg: the recipe's ``distill`` section.
        student: needed only when ``cfg.hints`` is non-empty (to infer regressor shapes and attach taps).
        sample_input: one input batch shape example for that inference, e.g. ``torch.zeros(1, 3, 32, 32)``.
        label_smoothing: applied to the cross-entropy term.
    """

    def __init__(self, teacher: nn.Module, cfg: DistillConfig, student: nn.Module | None = None,
                 sample_input: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.teacher = teacher.eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.cfg = cfg
        self.label_smoothing = label_smoothing
        self.regressors = nn.ModuleDict()
        self._student_tap = self._teacher_tap = None
        if cfg.hints and cfg.hint_weight > 0:
            if student is None or sample_input is None:
                raise ValueError("hints need the student and a sample input to infer regressor shapes")
            self._attach_hints(student, cfg.hints, sample_input)

    def _attach_hints(self, student: nn.Module, hints: list[HintPair], sample: torch.Tensor) -> None:
        self._student_tap = FeatureTap(student, [h.student for h in hints])
        self._teacher_tap = FeatureTap(self.teacher, [h.teacher for h in hints])
        shapes = infer_hint_shapes(student, self.teacher, hints, sample, self._student_tap, self._teacher_tap)
        for index, (student_ch, teacher_ch) in enumerate(shapes):
            self.regressors[str(index)] = nn.Conv2d(student_ch, teacher_ch, 1, bias=False)

    def train(self, mode: bool = True) -> DistillationObjective:
        super().train(mode)
        self.teacher.eval()  # the teacher never leaves eval mode (BN statistics stay frozen)
        return self

    def extra_parameters(self) -> list[nn.Parameter]:
        return list(self.regressors.parameters())

    @property
    def taps_student(self) -> bool:
        """True when hints read the student's features through forward hooks (a compiled step cannot)."""
        return self._student_tap is not None

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> ObjectiveResult:
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = model(images)
        ce = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        kd = kd_loss(logits, teacher_logits.float(), self.cfg.temperature)
        loss = (1 - self.cfg.alpha) * ce + self.cfg.alpha * kd
        metrics = {"ce": ce.detach(), "kd": kd.detach()}
        if len(self.regressors):
            hint = self._hint_loss()
            loss = loss + self.cfg.hint_weight * hint
            metrics["hint"] = hint.detach()
        return loss, logits, metrics

    def _hint_loss(self) -> torch.Tensor:
        total = 0.0
        for index, hint in enumerate(self.cfg.hints):
            student = self.regressors[str(index)](self._student_tap.features[hint.student])
            teacher = self._teacher_tap.features[hint.teacher].detach()
            if student.shape[-2:] != teacher.shape[-2:]:
                student = F.adaptive_avg_pool2d(student, teacher.shape[-2:])
            total = total + F.mse_loss(student, teacher)
        return total / len(self.cfg.hints)


def infer_hint_shapes(student: nn.Module, teacher: nn.Module, hints: list[HintPair], sample: torch.Tensor,
                      student_tap: FeatureTap, teacher_tap: FeatureTap) -> list[tuple[int, int]]:
    """Run both networks once and return ``(student_channels, teacher_channels)`` per hint pair."""
    was_training = student.training
    student.eval()
    with torch.no_grad():
        student(sample)
        teacher(sample)
    student.train(was_training)
    shapes = []
    for hint in hints:
        s_feat, t_feat = student_tap.features[hint.student], teacher_tap.features[hint.teacher]
        if s_feat.dim() != 4 or t_feat.dim() != 4:
            raise ConfigError(f"distill.hints: {hint.student} / {hint.teacher} must output 4-D feature maps")
        shapes.append((s_feat.shape[1], t_feat.shape[1]))
    return shapes
