import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.config.recipe import DistillConfig, HintPair
from edgekd.learn.distill import DistillationObjective, kd_loss
from edgekd.models import create_model

STUDENT = torch.tensor([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]])
TEACHER = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 2.5]])
TARGETS = torch.tensor([1, 2])
# Computed by hand in float64 (pure Python softmax/log): batch-mean KL(p_t || p_s) at T=4, times T^2.
KD_T4 = 0.37090791909537413
# (1 - 0.7) * CE + 0.7 * KD_T4, CE = mean(-log softmax(z_s)[y]) = 0.27025995...
CE = 0.2702599390907
TOTAL_ALPHA_07 = 0.3 * CE + 0.7 * KD_T4


def test_kd_loss_matches_literal():
    assert abs(kd_loss(STUDENT, TEACHER, 4.0).item() - KD_T4) < 1e-6


@pytest.mark.filterwarnings("ignore:reduction")
def test_kd_loss_is_batchmean_not_elementwise_mean():
    mean_reduced = F.kl_div(F.log_softmax(STUDENT / 4, 1), F.softmax(TEACHER / 4, 1), reduction="mean") * 16
    assert abs(mean_reduced.item() * STUDENT.shape[1] - KD_T4) < 1e-6  # "mean" also divides by classes


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
