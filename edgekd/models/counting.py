"""FLOPs and parameter counts, per module and per named block.

Convention: **1 multiply-add = 2 FLOPs** (what ``torch.utils.flop_counter`` counts), batch 1. Only
convolutions and linear layers are counted — BatchNorm, activations, pooling and residual adds are
ignored, as in the papers we compare with (MorphNet, Torch-Pruning, ResNet). "MACs" = FLOPs / 2.

Parameters are reported two ways: ``params`` (every parameter, BN and biases included — the number
papers quote) and ``weight_params`` (conv/linear weights only — MorphNet's cost convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ModuleCount:
    name: str
    kind: str
    flops: int
    weight_params: int
    params: int


@dataclass
class ModelCount:
    """Totals plus the per-module rows they were summed from."""

    flops: int
    params: int
    weight_params: int
    modules: list[ModuleCount] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return self.flops // 2

    def by_block(self, blocks: dict[str, list[str]]) -> dict[str, dict[str, int]]:
        """Sum rows into named blocks; a module belongs to the first block with a matching prefix."""
        totals = {name: {"flops": 0, "params": 0, "weight_params": 0} for name in blocks}
        for row in self.modules:
            block = owning_block(row.name, blocks)
            if block is not None:
                totals[block]["flops"] += row.flops
                totals[block]["params"] += row.params
                totals[block]["weight_params"] += row.weight_params
        return totals

    def to_dict(self) -> dict[str, int]:
        return {"flops": self.flops, "macs": self.macs, "params": self.params, "weight_params": self.weight_params}


def owning_block(module_name: str, blocks: dict[str, list[str]]) -> str | None:
    for block, prefixes in blocks.items():
        if any(module_name == p or module_name.startswith(p + ".") for p in prefixes):
            return block
    return None


def count_model(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> ModelCount:
    """Count FLOPs (2 per MAC) of conv/linear layers with one forward pass at batch 1 on the CPU."""
    output_sizes: dict[str, tuple[int, ...]] = {}

    def hook(name: str):
        def record(_module, _inputs, output):
            output_sizes[name] = tuple(output.shape)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if _countable(m)]
    was_training = model.training
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros((1, *input_shape[1:]), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    rows = [_count_module(name, module, output_sizes.get(name)) for name, module in model.named_modules()
            if _has_direct_params(module)]
    return ModelCount(
        flops=sum(r.flops for r in rows),
        params=sum(p.numel() for p in model.parameters()),
        weight_params=sum(r.weight_params for r in rows),
        modules=rows,
    )


def _countable(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d | nn.Linear)


def _has_direct_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _count_module(name: str, module: nn.Module, out_shape: tuple[int, ...] | None) -> ModuleCount:
    params = sum(p.numel() for p in module.parameters(recurse=False))
    if isinstance(module, nn.Conv2d):
        spatial = out_shape[2] * out_shape[3] if out_shape else 0
        macs = module.weight.numel() * spatial  # out * in/groups * kh * kw per output position
        return ModuleCount(name, "conv", 2 * macs, module.weight.numel(), params)
    if isinstance(module, nn.Linear):
        return ModuleCount(name, "linear", 2 * module.weight.numel(), module.weight.numel(), params)
    return ModuleCount(name, type(module).__name__.lower(), 0, 0, params)


def torch_flop_count(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """FLOPs as ``torch.utils.flop_counter`` counts them (the reference our counter is tested against)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros((1, *input_shape[1:])))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def format_count(value: float) -> str:
    """1234567 → '1.23M' (SI prefixes, as recipes accept them)."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.0f}"
