"""Candidate blocks of any network: its top-level stages, with their cost and channel groups.

A *stage* is a top-level child module; a container child (``nn.Sequential`` / ``nn.ModuleList``) is opened one
level when the network has fewer than three top-level children that hold parameters (torchvision's and timm's
``features`` / ``blocks`` containers), so MobileNet-style networks get one block per inverted residual.

For each stage: FLOPs and parameters (the counting convention of :mod:`edgekd.models.counting`), the channel
groups it writes (charged like :func:`edgekd.structure.ownership.assign_blocks` charges them: a group belongs
to the block of its first producer) split into prunable ones and fixed ones with the reason they are fixed.
``edgekd blocks`` lists them; the default recipe of ``compress --model`` budgets them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from edgekd.models.counting import count_model
from edgekd.structure.groups import ChannelGraph, trace_groups
from edgekd.structure.ownership import matches

__all__ = ["StageInfo", "stage_names", "candidate_blocks"]

CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass
class StageInfo:
    name: str
    flops: int
    params: int
    prunable_groups: int
    prunable_channels: int
    fixed_groups: list[dict[str, Any]] = field(default_factory=list)  # {size, reason, producers}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_names(model: nn.Module) -> list[str]:
    """Top-level stages (see the module docstring), in module order."""
    children = [(name, child) for name, child in model.named_children() if _has_params(child)]
    if len(children) >= 3:
        return [name for name, _ in children]
    names = []
    for name, child in children:
        if isinstance(child, CONTAINERS):
            names.extend(f"{name}.{sub}" for sub, grandchild in child.named_children() if _has_params(grandchild))
        else:
            names.append(name)
    return names


def candidate_blocks(model: nn.Module, input_shape: tuple[int, ...], graph: ChannelGraph | None = None,
                     ) -> list[StageInfo]:
    """Every stage of ``model`` with its cost and groups (``graph`` is traced when not given)."""
    graph = graph or trace_groups(model, input_shape)
    count = count_model(model, input_shape)
    stages = stage_names(model)
    infos = {name: StageInfo(name, 0, 0, 0, 0) for name in stages}

    def stage_of(module_name: str) -> str | None:
        return next((s for s in stages if matches(module_name, s)), None)

    for row in count.modules:
        if (stage := stage_of(row.name)) is not None:
            infos[stage].flops += row.flops
            infos[stage].params += row.params
    for group in graph.groups:
        stage = stage_of(group.producers[0]) if group.producers else None
        if stage is None:
            continue
        info = infos[stage]
        if group.prunable:
            info.prunable_groups += 1
            info.prunable_channels += group.size
        else:
            info.fixed_groups.append({"size": group.size, "reason": getattr(group, "fixed", "") or "not prunable",
                                      "producers": list(group.producers)})
    return [infos[name] for name in stages]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())
