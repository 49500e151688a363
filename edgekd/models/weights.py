"""Weights a user brings: a plain ``state_dict`` file (``.pt``/``.pth``, possibly nested under ``state_dict`` or
``model``, possibly saved from ``DataParallel`` with ``module.`` prefixes) or a ``.safetensors`` file.

Files are read with ``torch.load(weights_only=True)`` (no code from a weights file ever runs). A file that
does not fit the network is one :class:`~edgekd.errors.CheckpointError` line naming the first parameter, in
the network's order, that is missing, extra or of another shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import CheckpointError, first_line

__all__ = ["read_weight_file", "is_edgekd_payload", "state_dict_of", "load_weights"]

NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net")
# Buffers some older or hand-written state_dicts lack; their absence changes nothing at inference.
OPTIONAL_SUFFIXES = (".num_batches_tracked",)


def read_weight_file(path: str | Path) -> Any:
    """The file's payload: a dict of tensors for ``.safetensors``, whatever ``torch.load`` returns otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch / safetensors raise many types for a bad file
        first = first_line(err)[:200] if str(err).strip() else ""  # no type name twice
        raise CheckpointError(f"{path}: cannot read weights ({type(err).__name__}: {first})") from None


def is_edgekd_payload(payload: Any) -> bool:
    """True for a file written by :func:`edgekd.models.io.save_model` (it carries how to rebuild the model)."""
    return isinstance(payload, dict) and "arch" in payload and "schema_version" in payload


def state_dict_of(payload: Any, source: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain or nested state_dict, ``module.`` prefixes removed."""
    if isinstance(payload, dict):
        for key in NESTED_KEYS:
            if isinstance(payload.get(key), dict) and _is_tensor_dict(payload[key]):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not _is_tensor_dict(payload):
        raise CheckpointError(f"{source}: not a state_dict (expected a mapping of parameter names to tensors, "
                              f"possibly under one of {', '.join(NESTED_KEYS)})")
    if all(key.startswith("module.") for key in payload):
        payload = {key[len("module."):]: value for key, value in payload.items()}
    return payload


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load ``state`` into ``model`` after checking it fits; the error names the first mismatch."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            if name.endswith(OPTIONAL_SUFFIXES):
                continue
            raise CheckpointError(f"{source}: weights do not match the model: {name} {_shape(tensor)} is "
                                  f"missing from the file")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: weights do not match the model: {name} is {_shape(state[name])} "
                                  f"in the file but {_shape(tensor)} in the model")
    extra = [name for name in state if name not in expected]
    if extra:
        raise CheckpointError(f"{source}: weights do not match the model: the file has {extra[0]} "
                              f"{_shape(state[extra[0]])}, which the model does not"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    model.load_state_dict(state, strict=False)
    return model


def _is_tensor_dict(mapping: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items())


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(str(d) for d in tensor.shape) + ")"
