import math

import pytest
import torch
from torch import nn

from edgekd.config.recipe import DistillConfig, HintPair
from edgekd.learn.distill import DistillationObjective, kd_loss
from edgekd.models import create_model

STUDENT_ROWS = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
TEACHER_ROWS = [[2.0, 1.0, 0.0], [0.0, 0.5, 2.5]]
TARGET_LIST = [1, 2]
STUDENT, TEACHER, TARGETS = torch.tensor(STUDENT_ROWS), torch.tensor(TEACHER_ROWS), torch.tensor(TARGET_LIST)
# Computed independently in float64 (pure-Python math.exp/math.log softmax, see _reference_kd/_reference_ce):
# batch mean over rows of KL(softmax(z_t/4) || softmax(z_s/4)), times T^2 = 16.
KD_T4 = 0.37090791899744846
# CE = mean over rows of -log softmax(z_s)[y].
CE = 0.27025998087896075
TOTAL_ALPHA_07 = 0.3 * CE + 0.7 * KD_T4  # (1 - alpha) * CE + alpha * KD, alpha = 0.7


def _log_softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    scaled = [value / temperature for value in row]
    top = max(scaled)
    log_sum = math.log(sum(math.exp(value - top) for value in scaled))
    return [value - top - log_sum for value in scaled]


def _reference_kd(student: list[list[float]], teacher: list[list[float]], temperature: float) -> float:
    """T^2 * (1/N) * sum_rows sum_classes p_t (log p_t - log p_s), in float64 without torch."""
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        log_s, log_t = _log_softmax(s_row, temperature), _log_softmax(t_row, temperature)
        total += sum(math.exp(lt) * (lt - ls) for ls, lt in zip(log_s, log_t, strict=True))
    return temperature**2 * total / len(student)


def _reference_ce(student: list[list[float]], targets: list[int]) -> float:
    return -sum(_log_softmax(row)[y] for row, y in zip(student, targets, strict=True)) / len(student)


def test_reference_helpers_reproduce_the_literals():
    assert _reference_kd(STUDENT_ROWS, TEACHER_ROWS, 4.0) == pytest.approx(KD_T4, abs=1e-15)
    assert _reference_ce(STUDENT_ROWS, TARGET_LIST) == pytest.approx(CE, abs=1e-15)


def test_kd_loss_matches_literal():
    assert abs(kd_loss(STUDENT, TEACHER, 4.0).item() - KD_T4) < 1e-6


@pytest.mark.parametrize(("rows", "classes", "temperature"), [(1, 10, 4.0), (5, 7, 2.0), (8, 100, 1.0)])
def test_kd_loss_is_batchmean_and_t_squared_scaled(rows, classes, temperature):
    """Against the float64 reference over shapes where the alternatives differ: 'mean' would also divide by
    the number of classes, 'sum' would not divide by the batch, and T^2 matters once T != 1."""
    generator = torch.Generator().manual_seed(rows * classes)
    student = torch.randn(rows, classes, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(rows, classes, generator=generator, dtype=torch.float64) * 3
    expected = _reference_kd(student.tolist(), teacher.tolist(), temperature)
    assert expected > 1e-3
    assert kd_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-9)
    assert kd_loss(student.float(), teacher.float(), temperature).item() == pytest.approx(expected, rel=1e-5)


class Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.logits * self.scale


def test_distillation_objective_mixes_ce_and_kd():
    objective = DistillationObjective(Fixed(TEACHER), DistillConfig(temperature=4.0, alpha=0.7))
    loss, _, parts = objective(Fixed(STUDENT), torch.zeros(2, 1), TARGETS)
    assert abs(parts["ce"] - CE) < 1e-6
    assert abs(parts["kd"] - KD_T4) < 1e-6
    assert abs(loss.item() - TOTAL_ALPHA_07) < 1e-6


def test_teacher_is_frozen_and_stays_in_eval():
    teacher = create_model("resnet20_cifar")
    objective = DistillationObjective(teacher, DistillConfig())
    objective.train()
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_hint_regressor_shapes_are_inferred_from_both_networks():
    teacher = create_model("mobilenetv2_cifar", width_mult=1.0)
    student = create_model("mobilenetv2_cifar", width_mult=0.5)
    cfg = DistillConfig(hints=[HintPair(student="features.10", teacher="features.10"),
                               HintPair(student="features.3", teacher="features.6")], hint_weight=1.0)
    objective = DistillationObjective(teacher, cfg, student, torch.zeros(1, 3, 32, 32))
    shapes = [tuple(r.weight.shape) for r in objective.regressors.values()]
    assert shapes == [(64, 32, 1, 1), (32, 16, 1, 1)]  # (teacher C, student C); features.3 is stage 2 (24*0.5->16)
    loss, _, parts = objective(student.train(), torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    loss.backward()
    assert parts["hint"] > 0
    assert all(r.weight.grad is not None for r in objective.regressors.values())
