"""The latency stage: a recipe's network family profiled on a device, and the latency cost structure learning uses.

``edgekd latency profile --device D --recipe R``: the recipe's dense network (its teacher architecture, at the
data's input size and class count) is profiled on D for D's target (:func:`edgekd.latency.profile.profile_network`)
and saved in the user cache (:mod:`edgekd.latency.store`). ``structure.cost: latency``, a block's ``latency``
budget or ``structure.latency_ms`` make :func:`latency_cost_for` load that model for ``compress --device D``:
one line when there is no device, the device is emulated, or the model is missing or stale.
"""

from __future__ import annotations

from edgekd.config.devices import Device, DeviceStore
from edgekd.config.recipe import GlobalBudget, Recipe
from edgekd.config.target import TargetProfile, load_target
from edgekd.data.loaders import Loaders, build_loaders
from edgekd.errors import ConfigError
from edgekd.latency.cost import LatencyCost
from edgekd.latency.design import masks_for
from edgekd.latency.model import LatencyModel, NetworkKey, check_mode
from edgekd.latency.profile import ProfileOptions, profile_network, runtime_versions
from edgekd.latency.store import (
    find_latency_model,
    list_latency_models,
    load_latency_model,
    save_latency_model,
    staleness,
)
from edgekd.pipeline.train import build_model
from edgekd.structure.budgets import requested_cost_kinds
from edgekd.structure.costs import block_costs
from edgekd.structure.groups import ChannelGraph, dense_masks, trace_groups
from edgekd.structure.ownership import BlockOwnership, recipe_ownership
from edgekd.structure.widths import WidthGrid, grid_for

__all__ = ["profile_recipe", "ensure_latency_model", "latency_device", "latency_grid", "network_key",
           "recipe_network", "latency_cost_for", "wants_latency", "floor_widths", "share_latency", "latency_budgets",
           "resolve_latency_budget", "show_latency_model", "list_latency_models", "learning_grid"]


def latency_grid(recipe: Recipe, profile: TargetProfile) -> int:
    """The channel grid: the recipe's ``structure.round_to`` when set, else the target's channel multiple, else 8."""
    round_to = recipe.structure.round_to if recipe.structure is not None else 1
    return round_to if round_to > 1 else (profile.channel_multiple or 8)


def network_key(recipe: Recipe, loaders: Loaders | None = None) -> NetworkKey:
    """What the recipe's latency model is saved under: its teacher network at the data's classes and input size
    (``loaders``: the recipe's, when the caller has them; built otherwise)."""
    loaders = loaders or build_loaders(recipe.data, recipe.seed)
    spec = recipe.teacher.model
    return NetworkKey(name=spec.name, kwargs={**spec.kwargs, "num_classes": loaders.num_classes},
                      input_shape=list(loaders.input_shape), recipe=recipe.name)


def recipe_network(recipe: Recipe, loaders: Loaders | None = None):
    """The recipe's dense network (fresh weights: latency does not depend on them), its input shape and key."""
    loaders = loaders or build_loaders(recipe.data, recipe.seed)
    model = build_model(recipe.teacher.model, loaders).eval()
    return model, tuple(loaders.input_shape), network_key(recipe, loaders)


def latency_device(device: str | Device) -> tuple[Device, TargetProfile]:
    entry = device if isinstance(device, Device) else DeviceStore().get(device)
    if entry.emulated:
        raise ConfigError(f"device {entry.name} is emulated: its timings are the emulator's, not latency; a latency "
                          "model needs a real board (or this host: --device local)")
    return entry, load_target(entry.target)


def profile_recipe(recipe: Recipe, device: str | Device, options: ProfileOptions | None = None,
                   on_progress=None) -> LatencyModel:
    """Profile ``recipe``'s network family on ``device`` and save the model (see the module docstring)."""
    entry, profile = latency_device(device)
    model, input_shape, key = recipe_network(recipe)
    options = options or ProfileOptions()
    if options.grid <= 0:
        options = ProfileOptions(**{**options.__dict__, "grid": latency_grid(recipe, profile)})
    latency = profile_network(model, input_shape, entry, profile, key, options, on_progress)
    save_latency_model(latency)
    return latency


def ensure_latency_model(recipe: Recipe, device: str | Device, options: ProfileOptions | None = None,
                         say=None, loaders: Loaders | None = None) -> LatencyCost:
    """The latency cost of ``recipe``'s network on ``device``, profiled first (with ``options``) when the saved
    model is missing or stale; ``say`` is told why a profile runs."""
    entry, _profile = latency_device(device)
    key = network_key(recipe, loaders)
    options = options or ProfileOptions()
    found = find_latency_model(entry.name, key, options.mode)  # a tuned profile is asked for a tuned model
    why = "none yet" if found is None else staleness(found, runtime_versions())
    if why is not None:
        if say is not None:
            say(f"profiling the latency of {key.name} on {entry.name} ({why})")
        found = profile_recipe(recipe, entry, options)
    return LatencyCost(found)


def show_latency_model(recipe: Recipe, device: str, mode: str = "untuned") -> LatencyModel:
    key = network_key(recipe)
    found = find_latency_model(device, key, mode)
    if found is None:
        raise ConfigError(f"no {mode} latency model of {key.name} ({recipe.name}) on device {device}; measure one "
                          f"with `edgekd latency profile --device {device} --recipe {recipe.name}`")
    return found


def wants_latency(recipe: Recipe) -> bool:
    return recipe.structure is not None and "latency" in requested_cost_kinds(recipe.structure)


def latency_cost_for(recipe: Recipe, device: str | None, mode: str = "untuned",
                     loaders: Loaders | None = None) -> LatencyCost:
    """The latency cost of ``recipe``'s network on ``device`` (one-line ConfigError when it cannot be had)."""
    field = requested_cost_kinds(recipe.structure).get("latency", "structure.cost")
    check_mode(mode)
    if device is None:
        raise ConfigError(f"{recipe.source}: {field} asks for latency: name the board it is measured on "
                          "(compress --device D; profile it first with `edgekd latency profile --device D "
                          f"--recipe {recipe.name}`)")
    entry, _profile = latency_device(device)
    model = load_latency_model(entry.name, network_key(recipe, loaders), mode, runtime=runtime_versions())
    return LatencyCost(model)


def floor_widths(graph: ChannelGraph, ownership: BlockOwnership, grid: WidthGrid | int) -> dict[int, int]:
    """The smallest widths ``ownership`` allows on the grid: one step per group its blocks may prune."""
    grid = WidthGrid.of(grid)
    return {g.id: grid.smallest(g.id, g.size) for g in graph.groups if g.prunable and ownership.learnable(g)}


def learning_grid(graph: ChannelGraph, recipe: Recipe, cost: LatencyCost) -> WidthGrid:
    """The grid compress will prune ``graph`` on under ``cost`` (:func:`edgekd.structure.widths.grid_for`)."""
    return grid_for(graph, recipe.structure.round_to, [cost])


def share_latency(graph: ChannelGraph, cost: LatencyCost, ownership: BlockOwnership, blocks: list,
                  network_ms: float, grid: WidthGrid | int) -> dict[str, float]:
    """Block → latency budget (ms) for a network predicted at ``network_ms``: every learnable block at one common
    point ``s`` between its cost in the smallest network on the grid and in the dense one, ``s`` where the network
    interpolates to ``network_ms``. Each budget is then reachable (it is never below the block's floor), and a
    block whose channels the model prices high gives up as large a share of its span as any other."""
    floor_masks = masks_for(graph, floor_widths(graph, ownership, grid))
    dense = block_costs(graph, cost, dense_masks(graph), ownership)
    floor = block_costs(graph, cost, floor_masks, ownership)
    low, high = cost.network_ms(graph, floor_masks), cost.network_ms(graph, dense_masks(graph))
    share = min(1.0, max(0.0, (network_ms - low) / max(high - low, 1e-12)))
    learnable = {b.name for b in blocks if not b.frozen}
    return {name: floor[name] * (1 + 1e-6) + share * (dense[name] - floor[name]) for name in dense if name in learnable}


def latency_budgets(graph: ChannelGraph, cost: LatencyCost, ownership: BlockOwnership, blocks: list,
                    network_ms: float, grid: WidthGrid | int) -> dict[str, float]:
    """A network predicted at ``network_ms`` as budgets of its ops: with ``blocks``, block → ms
    (:func:`share_latency`); without, ``{"global": network_ms − β}`` (β: the runtime's fixed cost, no op's)."""
    if blocks:
        return share_latency(graph, cost, ownership, blocks, network_ms, grid)
    return {"global": network_ms - cost.model.calibration.beta_ms}


def resolve_latency_budget(recipe: Recipe, cost: LatencyCost, loaders: Loaders | None = None) -> Recipe:
    """``structure.latency_ms`` (the whole network's predicted latency) as budgets of the network's ops, checked
    against the dense network and the smallest the grid reaches (one line each): :func:`latency_budgets` as the
    blocks' budgets, or as a global latency budget without blocks."""
    structure = recipe.structure
    if structure is None or structure.latency_ms is None:
        return recipe
    model, input_shape, _key = recipe_network(recipe, loaders)
    graph = trace_groups(model, input_shape)
    ownership = recipe_ownership(graph, structure)
    dense = cost.network_ms(graph, dense_masks(graph))
    beta = cost.model.calibration.beta_ms
    if structure.latency_ms > dense * (1 + 1e-9):
        raise ConfigError(f"{recipe.source}: structure.latency_ms={structure.latency_ms:g}: above the dense network's "
                          f"predicted {dense:.4g} ms on {cost.model.provenance.device}; nothing to prune")
    grid = learning_grid(graph, recipe, cost)
    smallest = cost.network_ms(graph, masks_for(graph, floor_widths(graph, ownership, grid)))
    if structure.latency_ms < smallest:
        scope = "its blocks" if structure.blocks else "every group"
        at = f"{grid.step} channel(s)" if not grid.steps else "its smallest grid width"
        raise ConfigError(f"{recipe.source}: structure.latency_ms={structure.latency_ms:g}: unreachable; the smallest "
                          f"this network can be is {smallest:.4g} ms on {cost.model.provenance.device} ({scope} at "
                          f"{at}, the runtime's {beta:.4g} ms included)")
    budgets = latency_budgets(graph, cost, ownership, structure.blocks, structure.latency_ms, grid)
    if structure.blocks:
        blocks = [b if b.frozen else b.model_copy(update={"latency": None, "latency_ms": budgets[b.name]})
                  for b in structure.blocks]
        update = {"blocks": blocks, "latency_ms": None}
    else:
        update = {"latency_ms": None, "global_budget": GlobalBudget(latency_ms=budgets["global"])}
    return recipe.model_copy(update={"structure": structure.model_copy(update=update)})
