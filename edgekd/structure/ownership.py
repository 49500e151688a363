"""Block ownership: which recipe block each channel group and each op is charged to.

Input: a traced :class:`~edgekd.structure.groups.ChannelGraph` and the recipe's blocks. Output: a
:class:`BlockOwnership` — a mapping owned by whoever asked for it (a budget controller, a report). The graph
is never modified, so two controllers with different block configurations can share one graph without
rewriting each other's blocks.

Rule: a group is charged to the block of its **first producer** (module order); a **frozen** block freezes
every group any of its ops writes; groups whose first producer no block covers follow ``default``
("frozen", or "free" = the pseudo-block :data:`DEFAULT_BLOCK`). An op is charged to the block owning its
output group (or, when no block owns it, to the block whose patterns match the op). A frozen group is
neither regularised nor pruned: its saliency is 0 and its mask all alive, like the network input's.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from edgekd.errors import ConfigError
from edgekd.structure.groups import ChannelGraph, ChannelGroup, OpInfo, alive_on_host

__all__ = ["BlockOwnership", "assign_blocks", "recipe_ownership", "matches", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = "(default)"  # pseudo-block for uncovered groups when structure.default is "free"


@dataclass(frozen=True)
class BlockOwnership:
    """Group and op → block for one block configuration of one graph.

    ``group_block[g]`` is the block charged with group ``g`` (None: no block), ``frozen`` the ids of the
    groups that configuration keeps whole, ``op_block`` op name → block, ``charged`` block → its op names
    (module order). Build it with :func:`assign_blocks`, or :meth:`free` for "no blocks, nothing frozen".
    """

    group_block: tuple[str | None, ...]
    frozen: frozenset[int]
    op_block: dict[str, str | None]
    charged: dict[str, list[str]]

    @classmethod
    def free(cls, graph: ChannelGraph) -> BlockOwnership:
        """No blocks and nothing frozen: every prunable group is learnable (what a bare graph means)."""
        return cls(tuple(None for _ in graph.groups), frozenset(), {o.name: None for o in graph.ops}, {})

    def learnable(self, group: ChannelGroup) -> bool:
        """Regularised and prunable: the group has γ's and this configuration does not freeze it."""
        return group.prunable and group.id not in self.frozen

    def block_of(self, group: ChannelGroup) -> str | None:
        return self.group_block[group.id]

    def groups_of(self, graph: ChannelGraph, block: str) -> list[ChannelGroup]:
        """The groups charged to ``block`` (frozen ones included)."""
        return [g for g in graph.groups if self.group_block[g.id] == block]

    def ops_of(self, graph: ChannelGraph, block: str) -> list[OpInfo]:
        return [o for o in graph.ops if self.op_block.get(o.name) == block]

    def saliencies(self, graph: ChannelGraph) -> list[torch.Tensor]:
        """Per group r = max member |γ| (differentiable); zeros for groups that are not learnable."""
        return [g.saliency() if self.learnable(g) else torch.zeros(g.size) for g in graph.groups]

    def alive_masks(self, graph: ChannelGraph, threshold: float) -> list[torch.Tensor]:
        """Per group r > τ; all alive for groups that are not learnable."""
        return alive_on_host(graph.groups, [self.learnable(g) for g in graph.groups], threshold)

    def minimal_masks(self, graph: ChannelGraph) -> list[torch.Tensor]:
        """One alive channel per learnable group (Torch-Pruning never empties a layer); others whole."""
        masks = []
        for group in graph.groups:
            mask = torch.ones(group.size, dtype=torch.bool)
            if self.learnable(group):
                mask[1:] = False
            masks.append(mask)
        return masks


def matches(module_name: str, pattern: str) -> bool:
    """A module matches a block pattern by exact name, dotted prefix, or fnmatch wildcard."""
    return module_name == pattern or module_name.startswith(pattern + ".") or fnmatch.fnmatchcase(module_name, pattern)


def assign_blocks(graph: ChannelGraph, blocks: Sequence, default: str = "frozen") -> BlockOwnership:
    """Charge groups and ops to blocks (see the module docstring); ``blocks`` are recipe BlockBudgets.

    Returns a new :class:`BlockOwnership`; ``graph`` is left as it was. Raises ConfigError for a pattern that
    matches no module of the model.
    """
    module_names = [n for n, _ in graph.model.named_modules() if n]
    for block in blocks:
        for pattern in block.modules:
            if not any(matches(n, pattern) for n in module_names):
                raise ConfigError(f"structure.blocks[{block.name}].modules: pattern {pattern!r} matches no module "
                                  f"of the model (e.g. {', '.join(module_names[:3])}, ...)")

    def block_of(op_name: str):
        return next((b for b in blocks if any(matches(op_name, p) for p in b.modules)), None)

    frozen_writers = {o.name for o in graph.ops if (b := block_of(o.name)) is not None and b.frozen}
    group_block: list[str | None] = []
    frozen: set[int] = set()
    for group in graph.groups:
        first = block_of(group.producers[0]) if group.producers else None
        owner = first.name if first is not None else (DEFAULT_BLOCK if default == "free" else None)
        group_block.append(owner)
        if owner is None or any(p in frozen_writers for p in group.producers):
            frozen.add(group.id)
    op_block: dict[str, str | None] = {}
    for op in graph.ops:
        owned = [group_block[s.group] for s in op.out_segments if group_block[s.group]]
        if owned:
            op_block[op.name] = owned[0]
        else:
            own = block_of(op.name)
            op_block[op.name] = own.name if own is not None else None
    charged: dict[str, list[str]] = {b.name: [] for b in blocks}
    for op in graph.ops:
        if op_block[op.name] is not None:
            charged.setdefault(op_block[op.name], []).append(op.name)
    return BlockOwnership(tuple(group_block), frozenset(frozen), op_block, charged)


def recipe_ownership(graph: ChannelGraph, structure) -> BlockOwnership:
    """What a recipe's ``structure`` lets learning prune: its blocks (the groups no block covers by its
    ``default``); without blocks, every prunable group (a global budget owns them all)."""
    if structure.blocks:
        return assign_blocks(graph, structure.blocks, structure.default)
    return BlockOwnership.free(graph)
