"""A measured latency model as structure learning's cost: the ``latency`` kind of
:class:`~edgekd.structure.costs.CostModel`.

An op's cost is its calibrated predicted milliseconds at its alive widths (:meth:`LatencyModel.op_ms`); its
regularizer is MorphNet's form with the model's marginal latency per channel in place of the FLOP coefficient:
``∂t/∂A_in · R_in + ∂t/∂A_out · R_out``, each slope a finite difference over one grid step at the current widths
(a depthwise conv, whose input is its output: its one slope times the mean of R_in and R_out). The network's
predicted latency is Σ op costs + β (:meth:`LatencyCost.network_ms`); β, the time no op owns (the runtime's
calls, pooling), is outside every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgekd.errors import ConfigError
from edgekd.latency.kernels import family_key, op_shape
from edgekd.latency.model import LatencyModel
from edgekd.structure.costs import Number, block_costs
from edgekd.structure.groups import ChannelGraph, OpInfo

__all__ = ["LatencyCost"]


@dataclass(frozen=True)
class LatencyCost:
    model: LatencyModel
    name: str = "latency"

    def _family(self, op: OpInfo) -> str:
        family = self.model.ops.get(op.name)
        if family is None or family not in self.model.tables:
            family = family_key(op_shape(op))
        if family not in self.model.tables:
            raise ConfigError(f"the latency model of {self.model.network.name} on {self.model.provenance.device} has "
                              f"no measurements for op {op.name} ({family}); it was profiled for another network — "
                              "profile this one (edgekd latency profile)")
        return family

    @property
    def group_steps(self) -> dict[str, int]:
        """The coarse grid of a tuned model (group name → step), which structure learning keeps widths on
        (:func:`edgekd.structure.widths.grid_for`); empty for a model on the common grid."""
        return dict(self.model.multiples)

    def check(self, graph: ChannelGraph) -> None:
        """Refuse (one line) a graph with an op the model never measured."""
        for op in graph.ops:
            self._family(op)

    def cost(self, op: OpInfo, a_in: Number, a_out: Number) -> Number:
        table = self.model.tables[self._family(op)]
        return self.model.calibration.alpha * table.value(float(a_in), float(a_out))

    def regularizer(self, op: OpInfo, a_in: Number, r_in: Number, a_out: Number, r_out: Number) -> Number:
        table = self.model.tables[self._family(op)]
        s_in, s_out = table.slopes(float(a_in), float(a_out), self.model.grid)
        alpha = self.model.calibration.alpha
        if table.depthwise:
            return alpha * s_out * (r_in + r_out) / 2
        return alpha * (s_in * r_in + s_out * r_out)

    def network_ms(self, graph: ChannelGraph, masks: list[torch.Tensor]) -> float:
        """Predicted latency of the network ``graph`` at ``masks`` (ms, β included)."""
        return sum(block_costs(graph, self, masks).values()) + self.model.calibration.beta_ms
