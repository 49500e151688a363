"""The training loop: objects in (model, loaders, objective, config), a trained model and metrics out.

- Optimiser SGD/AdamW; per-step schedules (cosine with linear warm-up, one-cycle, constant).
- channels_last on CPU and GPU, AMP (bfloat16 autocast) on CUDA only.
- ``cfg.clip_grad_norm``: the gradients' global L2 norm is clipped to it before every step (the epoch's
  metrics get ``grad_norm``, the mean norm before clipping).
- A checkpoint (``checkpoint.pt``) is written atomically after every epoch; ``resume=True`` restores
  model, optimiser, scheduler, objective, callbacks and every RNG, and continues at the next epoch, so
  an interrupted run ends bit-identical to an uninterrupted one.
- ``metrics.jsonl`` gets one line per epoch; on resume, lines after the checkpoint are dropped.
- When launched by ``torchrun``, the model is wrapped in DistributedDataParallel and rank 0 writes.

Callbacks are plain objects with any of ``on_step_end(trainer, step)``, ``on_epoch_end(trainer, epoch,
metrics) -> dict | None`` (merged into the epoch's metrics) and ``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.atomic import atomic_write
from edgekd.config.recipe import TrainingConfig
from edgekd.data import Loaders
from edgekd.errors import CheckpointError, ConfigError
from edgekd.learn import distributed as dist_utils
from edgekd.learn.progress import epoch_progress

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CHECKPOINT_SCHEMA = 1


@dataclass
class EvalResult:
    acc: float
    loss: float
    count: int


@dataclass
class TrainResult:
    val_acc: float | None
    test_acc: float
    epochs: int
    seconds: float
    images_per_second: float
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


SYNC_EVERY = 20  # optimizer steps between read-backs of the running loss and accuracy (see Trainer.train_epoch)


def _as_float64(value: Any) -> Any:
    return value.detach().double() if isinstance(value, torch.Tensor) else float(value)


def _check_finite(loss: float, step: int) -> float:
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss is {loss} by step {step}; lower the learning rate")
    return loss


def build_optimizer(params: list[tuple[str, nn.Parameter]], cfg: TrainingConfig,
                    no_weight_decay: Callable[[str, nn.Parameter], bool] | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW; parameters chosen by ``no_weight_decay`` get none (e.g. BN γ under a γ regularizer)."""
    decay, no_decay = [], []
    for name, param in params:
        if not param.requires_grad:
            continue
        (no_decay if no_weight_decay and no_weight_decay(name, param) else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, steps_per_epoch: int):
    """A per-step LambdaLR: linear warm-up, then cosine / one-cycle / constant."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        peak = 0.3  # one-cycle: rise to the peak over the first 30%, then anneal to ~0
        if progress < peak:
            return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * progress / peak))
        return 0.5 * (1 + math.cos(math.pi * (progress - peak) / (1 - peak))) + 1e-4

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | None = None, channels_last: bool = False) -> EvalResult:
    """Top-1 accuracy and mean cross-entropy over a loader (summed across ranks under DDP)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # correct, loss sum, count
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images).float()
        totals[0] += (logits.argmax(1) == targets).sum()
        totals[1] += nn.functional.cross_entropy(logits, targets, reduction="sum")
        totals[2] += targets.numel()
    model.train(was_training)
    correct, loss, count = dist_utils.all_reduce_sum(totals).tolist()
    return EvalResult(acc=correct / max(count, 1), loss=loss / max(count, 1), count=int(count))


class Trainer:
    """Runs ``cfg.epochs`` epochs of ``objective`` on ``model``; see the module docstring.

    Args:
        model: the network to train (unwrapped; the trainer wraps it for DDP itself).
        loaders: train/val/test loaders from :func:`edgekd.data.build_loaders`.
        cfg: the training schedule.
        run_dir: where checkpoints and metrics go.
        objective: a callable ``(model, images, targets) -> (loss, logits, metrics)``.
        callbacks: objects with optional hook methods (see module docstring).
        seed: seeds every RNG; the shuffling of epoch e is a function of (seed, e) alone.
        no_weight_decay: predicate on ``(name, parameter)``.
        recipe: the resolved recipe, stored in the checkpoint.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists.
        description: label for progress bars.
    """

    def __init__(self, model: nn.Module, loaders: Loaders, cfg: TrainingConfig, run_dir: str | Path, *,
                 objective: nn.Module, callbacks: Sequence[Any] = (), seed: int = 0,
                 no_weight_decay: Callable[[str, nn.Parameter], bool] | None = None,
                 recipe: dict[str, Any] | None = None, resume: bool = False, description: str = "train") -> None:
        self.device = dist_utils.init_distributed()
        self.cfg, self.loaders, self.run_dir = cfg, loaders, Path(run_dir)
        self.objective, self.callbacks, self.seed = objective.to(self.device), list(callbacks), seed
        self.recipe, self.description = recipe, description
        seed_everything(seed)
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_model = self._wrap(self.model)
        params = list(self.model.named_parameters()) + [(f"objective.{i}", p) for i, p in
                                                          enumerate(objective.extra_parameters())]
        self.optimizer = build_optimizer(params, cfg, no_weight_decay)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.epoch, self.global_step, self.history = 0, 0, []
        self.best_val, self.best_state = -1.0, None
        if resume:
            self.load_checkpoint()

    # ----------------------------------------------------------------- setup
    def _wrap(self, model: nn.Module) -> nn.Module:
        if dist_utils.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile == "off":
            return model
        if getattr(self.objective, "taps_student", False):
            raise ConfigError(f"training.compile={self.cfg.compile}: FitNets hints read the student's features "
                              "through hooks, which a compiled step does not keep; use training.compile=off")
        return torch.compile(model, mode=None if self.cfg.compile == "default" else self.cfg.compile)

    def _steps_per_epoch(self) -> int:
        steps = len(self.loaders.train)
        return min(steps, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else steps

    # ----------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train the remaining epochs, then evaluate the best-validation weights on the test split."""
        started = time.perf_counter()
        images_seen = 0
        while self.epoch < self.cfg.epochs:
            metrics, seen = self.train_epoch(self.epoch)
            images_seen += seen
            self.epoch += 1
            self._end_epoch(metrics)
        seconds = time.perf_counter() - started
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test = evaluate(self.model, self.loaders.test, self.device, self.cfg.channels_last)
        return TrainResult(val_acc=self.best_val if self.best_val >= 0 else None, test_acc=test.acc,
                           epochs=self.epoch, seconds=seconds, images_per_second=images_seen / max(seconds, 1e-9),
                           history=self.history)

    def train_epoch(self, epoch: int) -> tuple[dict[str, Any], int]:
        self._reseed_loader(epoch)
        self.train_model.train()
        self.objective.train()
        # Running sums stay on the device (float64, as the host's floats were) and are read back every
        # SYNC_EVERY steps: a read-back each step stalls the host until the GPU is done, so it could not queue
        # the next step meanwhile (docs/benchmarks.md, "GPU training step").
        sums: dict[str, Any] = {"loss": 0.0}
        correct: Any = 0
        seen = read = 0
        started = time.perf_counter()
        with epoch_progress(f"{self.description} {epoch + 1}/{self.cfg.epochs}", self.steps_per_epoch) as update:
            for step, (images, targets) in enumerate(self.loaders.train):
                if step >= self.steps_per_epoch:
                    break
                images = images.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                loss, logits, parts = self._step(images, targets)
                batch = targets.numel()
                for key, value in (("loss", loss), *parts.items()):
                    sums[key] = sums.get(key, 0.0) + _as_float64(value) * batch
                correct = correct + (logits.argmax(1) == targets).sum()
                seen += batch
                if step + 1 - read >= SYNC_EVERY or step + 1 == self.steps_per_epoch:
                    running = _check_finite(float(sums["loss"]) / seen, self.global_step)
                    update(advance=step + 1 - read, loss=running, acc=int(correct) / seen,
                           ips=seen / max(time.perf_counter() - started, 1e-9))
                    read = step + 1
        elapsed = time.perf_counter() - started
        metrics = {key: float(value) / max(seen, 1) for key, value in sums.items()}
        _check_finite(metrics["loss"], self.global_step)
        metrics.update(epoch=epoch + 1, train_acc=int(correct) / max(seen, 1),
                       lr=self.optimizer.param_groups[0]["lr"], seconds=elapsed,
                       images_per_second=seen / max(elapsed, 1e-9), steps=self.global_step)
        return metrics, seen

    def _step(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One optimizer step on a batch already on the device; returns the detached loss, logits and the
        objective's parts (tensors or floats: nothing here waits for the device)."""
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.cfg.compile != "off":
            torch.compiler.cudagraph_mark_step_begin()  # a new step: CUDA graphs may reuse the last one's buffers
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.use_amp):
            loss, logits, parts = self.objective(self.train_model, images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self._params(), self.cfg.clip_grad_norm)
            parts = {**parts, "grad_norm": norm.detach()}
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        for callback in self.callbacks:
            if hasattr(callback, "on_step_end"):
                callback.on_step_end(self, self.global_step)
        return loss.detach(), logits.detach(), parts

    def _params(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    def _reseed_loader(self, epoch: int) -> None:
        # The order of epoch e depends on (seed, e) only, so a resumed run replays it exactly.
        sampler = self.loaders.train.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        generator = getattr(self.loaders.train, "generator", None)
        if generator is not None:
            generator.manual_seed(self.seed * 100_003 + epoch)

    def _end_epoch(self, metrics: dict[str, Any]) -> None:
        if self.loaders.val is not None:
            val = evaluate(self.model, self.loaders.val, self.device, self.cfg.channels_last)
            metrics.update(val_acc=val.acc, val_loss=val.loss)
            if val.acc > self.best_val:
                self.best_val = val.acc
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        for callback in self.callbacks:
            if hasattr(callback, "on_epoch_end"):
                metrics.update(callback.on_epoch_end(self, self.epoch, metrics) or {})
        self.history.append(metrics)
        if dist_utils.is_main_process():
            self._append_metrics(metrics)
            self.save_checkpoint()
        dist_utils.barrier()

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "schema_version": CHECKPOINT_SCHEMA,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "objective": self.objective.state_dict(),
            "callbacks": [c.state_dict() if hasattr(c, "state_dict") else None for c in self.callbacks],
            "rng": rng_state(),
            "best_val": self.best_val,
            "best_state": self.best_state,
            "history": self.history,
            "recipe": self.recipe,
        }

    def save_checkpoint(self) -> Path:
        state = self.state_dict()
        return atomic_write(self.run_dir / CHECKPOINT, lambda handle: torch.save(state, handle))

    def load_checkpoint(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as err:
            raise CheckpointError(
                f"{path}: unreadable checkpoint ({type(err).__name__}); delete it to restart"
            ) from None
        if state.get("schema_version") != CHECKPOINT_SCHEMA:
            raise CheckpointError(f"{path}: checkpoint schema {state.get('schema_version')} != {CHECKPOINT_SCHEMA}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.objective.load_state_dict(state["objective"])
        for callback, saved in zip(self.callbacks, state["callbacks"], strict=False):
            if saved is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(saved)
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.best_val, self.best_state, self.history = state["best_val"], state["best_state"], state["history"]
        set_rng_state(state["rng"])
        self._truncate_metrics(self.epoch)
        return True

    def _append_metrics(self, metrics: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS, "a") as handle:
            handle.write(json.dumps({"phase": self.description, **metrics}) + "\n")

    def _truncate_metrics(self, epochs_done: int) -> None:
        """Drop metric lines of this phase written after the checkpoint we resume from."""
        path = self.run_dir / METRICS
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by SIGKILL
            if row.get("phase") != self.description or row.get("epoch", 0) <= epochs_done:
                kept.append(line)
        atomic_write(path, lambda handle: handle.write(("\n".join(kept) + "\n" if kept else "").encode()))
