"""``clip_grad_norm``: one step of a huge loss moves the weights by at most lr × the clip, and the epoch's metrics
report the norm before clipping; without it the same step moves them by the whole gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.config.recipe import TrainingConfig
from edgekd.data.loaders import Loaders
from edgekd.learn.engine import Trainer


class _HugeLoss(nn.Module):
    """Cross-entropy × 1e6: the kind of step an emptied channel group's BatchNorm produces."""

    def forward(self, model, images, targets):
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, targets) * 1e6
        return loss, logits, {}

    def extra_parameters(self):
        return []


def _one_step(tmp_path, clip: float | None) -> tuple[float, dict]:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    loader = DataLoader(data, batch_size=8)
    loaders = Loaders(train=loader, val=None, test=loader, num_classes=3, input_shape=(1, 4))
    model = nn.Linear(4, 3)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = TrainingConfig(epochs=1, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant", channels_last=False,
                         clip_grad_norm=clip)
    trainer = Trainer(model, loaders, cfg, tmp_path / f"run-{clip}", objective=_HugeLoss())
    trainer.fit()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm()), trainer.history[-1]


def test_a_clipped_step_moves_the_weights_by_at_most_lr_times_the_clip(tmp_path):
    moved, metrics = _one_step(tmp_path, clip=1.0)
    assert moved <= 0.1 * 1.0 + 1e-6
    assert metrics["grad_norm"] > 1e3  # the norm before clipping is what the metrics say
    unclipped, metrics = _one_step(tmp_path, clip=None)
    assert unclipped > 100 * moved and "grad_norm" not in metrics


class _NanLoss(_HugeLoss):
    def forward(self, model, images, targets):
        loss, logits, parts = super().forward(model, images, targets)
        return loss * float("nan"), logits, parts


def test_a_nan_loss_stops_the_run_before_a_checkpoint_in_one_line(tmp_path):
    # the running loss is read back every few steps (not each step: that would stall a GPU), and always
    # before the epoch's checkpoint, so a diverged network is never saved
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    loader = DataLoader(data, batch_size=4)
    loaders = Loaders(train=loader, val=None, test=loader, num_classes=3, input_shape=(1, 4))
    cfg = TrainingConfig(epochs=1, lr=0.1, schedule="constant", channels_last=False)
    trainer = Trainer(nn.Linear(4, 3), loaders, cfg, tmp_path / "nan", objective=_NanLoss())
    with pytest.raises(FloatingPointError, match="loss is nan by step 2; lower the learning rate"):
        trainer.fit()
    assert not (tmp_path / "nan" / "checkpoint.pt").exists()
