"""Recipes: a validated description of one compression job (model, data, schedules, distillation,
structure budgets).

Resolution order, lowest to highest precedence:

1. the recipe file (by name: ``$EDGEKD_CONFIG_DIR/recipes/NAME.yaml``, then the shipped ``recipes/NAME.yaml``;
   or a path);
2. ``EDGEKD_DATA`` (environment) sets ``data.root``;
3. ``--data DIR`` sets ``data.root``;
4. ``--set dotted.key=value`` overrides, applied in order (values parsed as YAML scalars).

Every failure is a one-line :class:`~edgekd.errors.ConfigError` naming file, dotted field, value and
what is accepted.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgekd.config.loading import ConfigEntry, load_yaml, named_files, resolve_named, scan_named, validate
from edgekd.errors import ConfigError
from edgekd.paths import config_dir, shipped_dir

_SI = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Strict):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from edgekd.models import model_info

        try:
            model_info(name)
        except ConfigError as err:
            raise ValueError(str(err).split(": ", 1)[-1]) from None
        return name


class DataConfig(Strict):
    dataset: Literal["cifar10", "cifar100", "imagefolder", "shapes"] = "cifar10"
    root: str | None = None
    download: bool = False  # torchvision download path, for users with network access
    val_size: int = Field(5000, ge=0)  # images split off the training set for model selection
    train_subset: int | None = Field(None, ge=1)  # use only the first N training images (CPU-scale runs)
    test_subset: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    workers: int = Field(2, ge=0)
    augment: bool = True
    image_size: int = Field(32, ge=8)
    num_classes: int | None = Field(None, ge=2)  # imagefolder: inferred when omitted


class TrainingConfig(Strict):
    epochs: int = Field(200, ge=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    amp: bool = True  # used on CUDA only
    channels_last: bool = True
    max_steps_per_epoch: int | None = Field(None, ge=1)  # CPU-scale runs; None = full epoch
    clip_grad_norm: float | None = Field(None, gt=0)  # the gradients' global L2 norm is clipped to it; None: no clip
    # torch.compile's mode for the training step's forward and backward (evaluation stays eager). On a GPU the eager
    # step is host-bound: "reduce-overhead" (CUDA graphs) ran MobileNetV2-CIFAR 3.4x faster on an H200
    # (docs/benchmarks.md, "GPU training step"); "off" on CPU, where compiling costs more than it returns.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"


class HintPair(Strict):
    student: str  # module name in the student
    teacher: str  # module name in the teacher


class DistillConfig(Strict):
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)  # weight of the KD term; (1 - alpha) on cross-entropy
    hints: list[HintPair] = Field(default_factory=list)
    hint_weight: float = Field(0.0, ge=0)  # beta for the FitNets MSE


class TeacherConfig(Strict):
    model: ModelSpec
    checkpoint: str | None = None  # a run directory or model.pt; trained with `training` when absent


class StudentConfig(Strict):
    model: ModelSpec | None = None  # distill: the student architecture (e.g. narrower width)
    init: Literal["scratch", "teacher"] = "scratch"


def parse_amount(value: Any) -> float:
    """'12M' → 12e6, '300k' → 3e5, 0.5 → 0.5 (a fraction), 1.2e7 → 1.2e7."""
    if isinstance(value, bool):
        raise ValueError("expected a number such as 0.5 (fraction) or '12M' / '300k' (absolute)")
    if isinstance(value, int | float):
        amount = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(value))
        if not match:
            raise ValueError("expected a number such as 0.5 (fraction) or '12M' / '300k' (absolute)")
        amount = float(match.group(1)) * _SI[match.group(2)]
    if amount <= 0:
        raise ValueError("a budget must be positive")
    return amount


def parse_latency(value: Any) -> tuple[float | None, float | None]:
    """A latency budget: a fraction ≤ 1 of the dense block's predicted latency (0.6) or milliseconds ('1.5ms');
    returns (fraction, milliseconds), one of them None."""
    if isinstance(value, str) and value.strip().lower().endswith("ms"):
        ms = parse_amount(value.strip()[:-2])
        return None, ms
    fraction = parse_amount(value)
    if fraction > 1:
        raise ValueError("a latency budget is a fraction ≤ 1 of the dense block (0.6) or milliseconds ('1.5ms')")
    return fraction, None


class _Amounts(Strict):
    """Budget amounts of the cost kinds: flops and params (fractions ≤ 1 or absolute counts such as '12M'), and
    latency (a fraction ≤ 1, or milliseconds written '1.5ms', kept in ``latency_ms``)."""

    flops: float | None = None
    params: float | None = None
    latency: float | None = None
    latency_ms: float | None = Field(None, gt=0)

    @field_validator("flops", "params", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> float | None:
        return None if value is None else parse_amount(value)

    @model_validator(mode="before")
    @classmethod
    def _latency(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("latency") is not None:
            data = dict(data)
            fraction, ms = parse_latency(data["latency"])
            if ms is not None:
                if data.get("latency_ms") is not None:
                    raise ValueError("give latency or latency_ms, not both")
                data["latency"], data["latency_ms"] = None, ms
            else:
                data["latency"] = fraction
        return data

    def amounts(self) -> dict[str, float]:
        """Cost kind → requested amount, for each kind budgeted (latency: the fraction or the milliseconds)."""
        found = {kind: value for kind in ("flops", "params") if (value := getattr(self, kind)) is not None}
        latency = self.latency_ms if self.latency_ms is not None else self.latency
        if latency is not None:
            found["latency"] = latency
        return found

    def is_fraction(self, kind: str) -> bool:
        """Whether ``kind``'s amount is relative to the dense block (≤ 1; latency: not given in ms)."""
        if kind == "latency":
            return self.latency_ms is None
        value = getattr(self, kind)
        return value is not None and value <= 1

    def budget_fields(self) -> dict[str, float]:
        return {k: v for k in ("flops", "params", "latency", "latency_ms") if (v := getattr(self, k)) is not None}


class BlockBudget(_Amounts):
    """One recipe block: the modules it owns and its budget (fractions ≤ 1 are relative to the dense block)."""

    name: str
    modules: list[str] = Field(min_length=1)  # module-name prefixes or fnmatch patterns
    frozen: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> BlockBudget:
        if self.frozen and self.amounts():
            raise ValueError(f"block {self.name!r}: a frozen block takes no budget")
        return self  # a block without a budget is refused by StructureConfig unless latency_ms shares one out


class GlobalBudget(_Amounts):
    pass


class PhaseConfig(Strict):
    """A structure-learning or finetuning phase; unset fields inherit from ``training``."""

    epochs: int = Field(10, ge=0)
    lr: float | None = Field(None, gt=0)
    schedule: Literal["cosine", "onecycle", "constant"] | None = None
    max_steps_per_epoch: int | None = Field(None, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0)


class StructureConfig(Strict):
    # The cost model regularising blocks that have no budget of their own (the structure.default: free
    # pseudo-block); block budgets name their kinds. Every kind asked for needs a cost model handed to the
    # structure learner: flops and params always; latency only from a model measured on a board (none yet),
    # so `cost: latency` is refused before training, never silently optimised as FLOPs.
    cost: Literal["flops", "params", "latency"] = "flops"
    threshold: float = Field(1e-2, gt=0)  # one alive threshold tau for the whole network
    blocks: list[BlockBudget] = Field(default_factory=list)
    global_budget: GlobalBudget | None = Field(None, alias="global")
    default: Literal["frozen", "free"] = "frozen"  # ops no block covers
    lambda_init: float | None = Field(None, gt=0)  # default 1 / initial regularizer value
    lambda_rate: float = Field(0.5, gt=0)  # eta of the multiplicative lambda controller
    update_every: int = Field(10, ge=1)  # optimizer steps between lambda updates
    round_to: int = Field(1, ge=1)  # channel counts rounded up to a multiple (e.g. 8)
    latency_ms: float | None = Field(None, gt=0)  # the whole network's predicted latency (cost: latency)
    learn: PhaseConfig = Field(default_factory=lambda: PhaseConfig(epochs=10, schedule="constant"))
    finetune: PhaseConfig = Field(default_factory=lambda: PhaseConfig(epochs=10))
    # where the pruned network's finetune starts: the structure-learned weights, or the dense teacher's on the same
    # kept channels (a hard-pushed learner — large λ, few steps — leaves weights a short finetune cannot mend)
    finetune_from: Literal["learned", "teacher"] = "learned"
    # how the kept channels are chosen: learnt (the γ regularizer under λ_b, then |γ| per unit of budget), or by
    # the teacher's first-order Taylor saliency per unit of budget with no learn phase (HALP-style; measured on
    # the tune benchmark's budgets: docs/benchmarks.md, stop 36)
    saliency: Literal["gamma", "taylor"] = "gamma"

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="after")
    def _budgets(self) -> StructureConfig:
        names = [b.name for b in self.blocks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate block names: {', '.join(duplicates)}")
        if self.blocks and self.global_budget is not None:
            raise ValueError("give either per-block budgets (blocks) or a global budget, not both")
        if self.latency_ms is not None and self.global_budget is not None:
            raise ValueError("latency_ms is the whole network's budget: give it or a global budget, not both")
        for block in self.blocks:
            if block.frozen:
                continue
            if self.latency_ms is None and not block.amounts():
                raise ValueError(f"block {block.name!r}: give flops, params, latency, or frozen: true (or "
                                 "structure.latency_ms, shared out among the blocks)")
            if self.latency_ms is not None and "latency" in block.amounts():
                raise ValueError(f"block {block.name!r}: a latency budget beside structure.latency_ms; give the "
                                 "network's (shared out among the blocks) or the blocks', not both")
        return self


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    teacher: TeacherConfig
    student: StudentConfig = Field(default_factory=StudentConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    structure: StructureConfig | None = None
    source: str = Field("<memory>", exclude=True)  # where it was loaded from, for messages

    def dump(self) -> dict[str, Any]:
        """The resolved recipe as plain data (stored in run directories and checkpoints)."""
        return self.model_dump(mode="json", by_alias=True)


def recipe_dirs() -> list[Path]:
    """User recipes first, then the ones shipped with edgekd (package data, see :func:`edgekd.paths.shipped_dir`)."""
    return [config_dir() / "recipes", shipped_dir("recipes")]


def list_recipes() -> list[Path]:
    """The recipe files by name; a user recipe hides a shipped one of the same name."""
    return list(named_files(recipe_dirs()).values())


def scan_recipes() -> list[ConfigEntry[Recipe]]:
    """Every recipe of :func:`list_recipes`, loaded; an invalid file is an entry with its one-line error."""
    return scan_named(recipe_dirs(), load_recipe)


def load_recipe(
    name_or_path: str | Path,
    overrides: list[str] | None = None,
    data_root: str | None = None,
) -> Recipe:
    """Resolve, merge (file → EDGEKD_DATA → ``data_root`` → ``overrides``) and validate a recipe."""
    path = resolve_named(str(name_or_path), recipe_dirs(), "recipe")
    raw = load_yaml(path)
    raw.setdefault("name", path.stem)
    return recipe_from_dict(raw, str(path), overrides, data_root)


def recipe_from_dict(raw: dict[str, Any], source: str, overrides: list[str] | None = None,
                     data_root: str | None = None) -> Recipe:
    """Merge (``raw`` → EDGEKD_DATA → ``data_root`` → ``overrides``) and validate a recipe given as plain data;
    ``source`` names it in messages (a file path, or what generated it)."""
    raw = copy.deepcopy(raw)
    env_root = os.environ.get("EDGEKD_DATA")
    for root in (env_root, data_root):
        if root:
            raw.setdefault("data", {})["root"] = str(root)
    for override in overrides or []:
        apply_override(raw, override, source)
    base = Path(source).parent if Path(source).suffix in {".yaml", ".yml"} else Path.cwd()
    _anchor_model_files(raw, base)
    recipe = validate(Recipe, raw, source)
    recipe.source = source
    return recipe


def _anchor_model_files(raw: dict[str, Any], base: Path) -> None:
    """Make a relative ``net.py:builder`` absolute (working directory first, then the recipe's folder), so the
    run directory and ``model.pt`` record where the builder is, wherever they are used later."""
    from edgekd.models.user import anchored

    for role in ("teacher", "student"):
        spec = (raw.get(role) or {}).get("model") if isinstance(raw.get(role), dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            spec["name"] = anchored(spec["name"], base)


def apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """Apply one ``dotted.key=value`` override in place; unknown keys are rejected against the schema."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{source}: --set {override!r}: expected dotted.key=value, e.g. training.epochs=1")
    parts = key.strip().split(".")
    _check_known_path(parts, source, text)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else copy.deepcopy(child)
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key}={text!r}: {part} is not a section")
            node[part] = child
        node = child
    node[parts[-1]] = value


def _check_known_path(parts: list[str], source: str, text: str) -> None:
    """Refuse override keys that no schema field matches (a typo must not pass silently)."""
    model: Any = Recipe
    for depth, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return  # a free-form mapping (model kwargs): anything goes below it
        aliases = {f.alias: n for n, f in fields.items() if f.alias}
        name = aliases.get(part, part)
        if name not in fields or name == "source":
            dotted = ".".join(parts)
            accepted = ", ".join(sorted(n for n in fields if n != "source"))
            raise ConfigError(f"{source}: --set {dotted}={text!r}: unknown field {'.'.join(parts[: depth + 1])!r}; "
                              f"accepted there: {accepted}")
        model = _model_of(fields[name].annotation)


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None  # dict / list / scalar
