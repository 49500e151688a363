"""``training.compile``: a compiled training step (torch.compile, inductor on this CPU) does the eager step's
arithmetic, checkpoints the plain module, and is refused with FitNets hints (their hooks need the eager student)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.config.recipe import DistillConfig, HintPair, TrainingConfig
from edgekd.data.loaders import Loaders
from edgekd.errors import ConfigError
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective
from edgekd.learn.engine import Trainer


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


def _loaders() -> Loaders:
    data = TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,)))
    loader = DataLoader(data, batch_size=8, drop_last=True)
    return Loaders(train=loader, val=None, test=loader, num_classes=3, input_shape=(1, 3, 8, 8))


def _train(tmp_path, mode: str) -> tuple[nn.Module, Trainer]:
    torch.manual_seed(0)
    model = _net()
    cfg = TrainingConfig(epochs=1, lr=0.1, weight_decay=0.0, schedule="constant", channels_last=False, compile=mode)
    trainer = Trainer(model, _loaders(), cfg, tmp_path / mode, objective=CrossEntropyObjective())
    trainer.fit()
    return model, trainer


def test_a_compiled_step_matches_the_eager_one_and_saves_the_plain_module(tmp_path):
    eager, _ = _train(tmp_path, "off")
    compiled, trainer = _train(tmp_path, "default")
    assert trainer.train_model is not trainer.model  # the step really ran through torch.compile
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5, msg=name)
    saved = torch.load(tmp_path / "default" / "checkpoint.pt", weights_only=False)["model"]
    assert set(saved) == set(eager.state_dict())  # no torch.compile "_orig_mod." prefixes


def test_compile_is_refused_with_hints_in_one_line(tmp_path):
    student, teacher = _net(), _net()
    hints = DistillConfig(hints=[HintPair(student="1", teacher="1")], hint_weight=1.0)
    objective = DistillationObjective(teacher, hints, student=student, sample_input=torch.zeros(1, 3, 8, 8))
    cfg = TrainingConfig(epochs=1, channels_last=False, compile="reduce-overhead")
    with pytest.raises(ConfigError, match="training.compile=reduce-overhead: FitNets hints"):
        Trainer(student, _loaders(), cfg, tmp_path / "hints", objective=objective)
