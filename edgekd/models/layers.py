"""Layers that pruned networks need beyond the registry's builders.

:class:`BorderCorrectedConv2d` is a plain ``nn.Conv2d`` plus a constant ``border_offset`` map added to its
output. Pruning uses it where removed channels were constant (a dead BatchNorm channel emits β through its
activation) and fed a zero-padded k×k conv: their contribution is a per-channel constant in the interior
(folded into the bias) but smaller at the borders, where the kernel overhangs the zero padding. The offset
map holds exactly that border difference, so the pruned network computes what the masked one did. It is a
buffer, not a parameter (a constant of the removed weights), and it ties the layer to the input resolution it
was built for; FLOP counts are unchanged (an add, not a multiply-add).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BorderCorrectedConv2d"]


class BorderCorrectedConv2d(nn.Conv2d):
    """``Conv2d`` whose output gets a fixed ``border_offset`` of shape ``(out_channels, H_out, W_out)``."""

    border_offset: torch.Tensor

    def __init__(self, *args, offset_size: tuple[int, int] = (1, 1), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("border_offset", torch.zeros(self.out_channels, *offset_size))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, offset: torch.Tensor) -> BorderCorrectedConv2d:
        """A copy of ``conv`` (same weights, device, dtype) with ``offset`` added to its output."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                    offset_size=tuple(offset.shape[-2:]), device=conv.weight.device, dtype=conv.weight.dtype)
        layer.load_state_dict({**conv.state_dict(), "border_offset": offset.to(conv.weight)})
        return layer.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if out.shape[-2:] != self.border_offset.shape[-2:]:
            raise ValueError(
                f"border-corrected conv built for {tuple(self.border_offset.shape[-2:])} outputs got "
                f"{tuple(out.shape[-2:])}: a network pruned with border correction runs at the input size it "
                "was pruned for (prune with border_correction=False for other sizes)"
            )
        return out + self.border_offset

    def extra_repr(self) -> str:
        return super().extra_repr() + f", border_offset={tuple(self.border_offset.shape)}"
