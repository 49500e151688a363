"""Saving and loading a model together with what is needed to rebuild it without the recipe.

A model file (``model.pt``) holds the registry name and constructor kwargs, the state dict and the
input shape. Pruned models have narrower layers than their registry builder produces: on load, every
Conv2d / BatchNorm2d / Linear whose saved weight shape differs is replaced by one of the saved shape
(:func:`resize_to_state_dict`), so a compact model loads from the file alone — given the builder: a user's
network (``net.py:builder``) needs that file to be importable.

For inference without any builder, :func:`save_program` writes ``model.pt2``: a ``torch.export`` program of
the eval-mode network with the same arch record inside; :func:`load_model` reads both kinds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.atomic import atomic_write, sha256_file
from edgekd.errors import CheckpointError, ConfigError, first_line
from edgekd.models.layers import BorderCorrectedConv2d

MODEL_FILE = "model.pt"
PROGRAM_FILE = "model.pt2"
PROGRAM_ARCH = "edgekd-arch.json"  # the arch record inside a .pt2 (torch.export extra file)
SCHEMA_VERSION = 1


@dataclass
class ModelArch:
    """How to rebuild a model: registry name, constructor kwargs, and the input it expects."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = (1, 3, 32, 32)
    num_classes: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs), "input_shape": list(self.input_shape),
                "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelArch:
        return cls(data["name"], dict(data.get("kwargs", {})), tuple(data["input_shape"]),
                   int(data.get("num_classes", 10)))


@dataclass
class LoadedModel:
    model: nn.Module
    arch: ModelArch
    path: Path
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)
    program: Any = None  # the torch.export ExportedProgram when loaded from a .pt2

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.arch.input_shape


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` on the CPU, in contiguous memory format (training may use channels_last), in eval mode."""
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


def save_model(path: str | Path, model: nn.Module, arch: ModelArch, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.pt`` atomically (weights in CPU memory, contiguous format)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"schema_version": SCHEMA_VERSION, "arch": arch.to_dict(), "state_dict": state,
               "extra": extra or {}}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def resolve_model_file(path: str | Path) -> Path:
    """A run directory (holding ``model.pt``) or a model file."""
    path = Path(path)
    candidate = path / MODEL_FILE if path.is_dir() else path
    if not candidate.is_file():
        raise CheckpointError(f"{path}: no {MODEL_FILE} found; pass a run directory or a saved model file")
    return candidate


def save_program(path: str | Path, model: nn.Module, arch: ModelArch, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.pt2`` atomically: the eval-mode network traced by ``torch.export`` at ``arch.input_shape``,
    loadable for inference with no builder code (:func:`load_model`, ``torch.export.load``)."""
    from edgekd.errors import CompileError

    model = for_inference(model)
    example = torch.zeros(arch.input_shape)
    try:
        program = torch.export.export(model, (example,))
    except Exception as err:  # torch.export raises many types
        raise CompileError(f"torch.export could not trace {arch.name}: {first_line(err)}") from None
    record = json.dumps({"schema_version": SCHEMA_VERSION, "arch": arch.to_dict(), "extra": extra or {}})
    return atomic_write(path, lambda handle: torch.export.save(program, handle, extra_files={PROGRAM_ARCH: record}))


def load_model(path: str | Path, payload: dict[str, Any] | None = None) -> LoadedModel:
    """Rebuild a model saved by :func:`save_model` (dense or pruned) or :func:`save_program`, in eval mode on the
    CPU. A ``model.pt`` of a user's network imports its builder; a ``.pt2`` needs no code. ``payload``: the
    ``model.pt`` file's contents when the caller has already read them (the file is then not read again)."""
    from edgekd.models import create_model

    file = resolve_model_file(path)
    if file.suffix == ".pt2":
        return _load_program(file)
    try:
        if payload is None:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        arch = ModelArch.from_dict(payload["arch"])
    except Exception as err:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{file}: not an edgekd model file ({type(err).__name__}: {err})") from None
    try:
        model = create_model(arch.name, num_classes=arch.num_classes, **arch.kwargs)
    except ConfigError as err:
        beside = file.with_suffix(".pt2")
        hint = f"; {beside} loads without it" if beside.is_file() else ""
        raise CheckpointError(f"{file}: rebuilding needs the model's builder, which failed: {err}{hint}") from None
    resize_to_state_dict(model, payload["state_dict"])
    model.load_state_dict(payload["state_dict"])
    return LoadedModel(model.eval(), arch, file, sha256_file(file), payload.get("extra", {}))


def _load_program(file: Path) -> LoadedModel:
    files = {PROGRAM_ARCH: ""}
    try:
        program = torch.export.load(file, extra_files=files)
        record = json.loads(files[PROGRAM_ARCH] or "{}")
        arch = ModelArch.from_dict(record["arch"])
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{file}: not an edgekd program file ({type(err).__name__}: {err})") from None
    return LoadedModel(program.module(), arch, file, sha256_file(file), record.get("extra", {}), program)


def resize_to_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Replace layers whose saved shapes differ (pruned widths) with layers of the saved shape."""
    for name, module in list(model.named_modules()):
        weight = state_dict.get(f"{name}.weight")
        if weight is None or not hasattr(module, "weight") or module.weight is None:
            continue
        offset = state_dict.get(f"{name}.border_offset")
        if tuple(weight.shape) == tuple(module.weight.shape) and offset is None:
            continue
        has_bias = state_dict.get(f"{name}.bias") is not None
        replacement = _resized(module, weight.shape, has_bias)
        if offset is not None:  # pruned with border correction (edgekd.models.layers)
            replacement = BorderCorrectedConv2d.from_conv(replacement, offset)
        set_submodule(model, name, replacement.train(module.training))
    return model


def _resized(module: nn.Module, shape: torch.Size, has_bias: bool) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        out_ch, in_per_group = shape[0], shape[1]
        depthwise = module.groups == module.in_channels and module.groups > 1
        groups = out_ch if depthwise else module.groups
        return nn.Conv2d(in_per_group * groups, out_ch, module.kernel_size, module.stride, module.padding,
                         module.dilation, groups, has_bias, module.padding_mode)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
    if isinstance(module, nn.Linear):
        return nn.Linear(shape[1], shape[0], bias=has_bias)
    raise CheckpointError(f"cannot resize layer of type {type(module).__name__} to {tuple(shape)}")


def set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    """Replace the submodule at the dotted name ``dotted`` of ``root`` with ``new``."""
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
