"""Training stages: the dense teacher (``train``) and a student distilled from it (``distill``).

Each reads a resolved recipe, writes a run directory (checkpoints, ``metrics.jsonl``, ``model.pt``,
``result.json``) and returns a :class:`RunResult`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.atomic import atomic_write_json, sha256_file
from edgekd.config.recipe import ModelSpec, Recipe
from edgekd.data import Loaders, build_loaders
from edgekd.errors import CheckpointError, ConfigError, first_line
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective
from edgekd.learn.engine import Trainer, TrainResult, seed_everything
from edgekd.learn.runs import resolve_run_dir, write_recipe
from edgekd.models import create_model
from edgekd.models.counting import count_model
from edgekd.models.io import LoadedModel, ModelArch, for_inference, load_model, resolve_model_file, save_model
from edgekd.models.weights import is_edgekd_payload, load_weights, read_weight_file, state_dict_of

__all__ = ["RunResult", "train", "distill", "teacher_source", "load_teacher", "build_model", "build_student",
           "check_head", "model_arch", "objective_for"]


@dataclass
class RunResult:
    """The outcome of a training stage (teacher or distilled student)."""

    run_dir: str
    stage: str
    model: str
    test_acc: float
    val_acc: float | None
    flops: int
    params: int
    weight_params: int
    epochs: int
    seconds: float
    images_per_second: float
    data: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(recipe: Recipe, out: str | Path | None = None, resume: bool = False) -> RunResult:
    """Train the recipe's teacher from scratch with ``recipe.training``; writes ``model.pt`` in the run dir."""
    seed_everything(recipe.seed)  # before the model is built: its initial weights depend on it
    loaders = build_loaders(recipe.data, recipe.seed)
    model = build_model(recipe.teacher.model, loaders)
    run_dir = _prepare(recipe, "train", out, resume)
    trainer = Trainer(model, loaders, recipe.training, run_dir, objective=objective_for(recipe, None, model, loaders),
                      seed=recipe.seed, recipe=recipe.dump(), resume=resume, description="teacher")
    result = trainer.fit()
    return _finish(run_dir, "train", recipe.teacher.model, trainer.model, loaders, result)


def distill(recipe: Recipe, teacher: str | Path | None = None, out: str | Path | None = None,
            resume: bool = False) -> RunResult:
    """Train ``recipe.student`` with KD (+ hints) from the teacher found via ``teacher`` or the recipe."""
    seed_everything(recipe.seed)
    loaders = build_loaders(recipe.data, recipe.seed)
    dense = load_teacher(recipe, teacher, loaders)
    student_spec = recipe.student.model or recipe.teacher.model
    student = build_student(recipe, dense, loaders)
    run_dir = _prepare(recipe, "distill", out, resume)
    objective = objective_for(recipe, dense.model, student, loaders)
    trainer = Trainer(student, loaders, recipe.training, run_dir, objective=objective, seed=recipe.seed,
                      recipe=recipe.dump(), resume=resume, description="distill")
    result = trainer.fit()
    teacher_info = {"path": str(dense.path), "sha256": dense.sha256, "model": dense.arch.name}
    teacher_count = count_model(dense.model, loaders.input_shape)
    teacher_info.update(flops=teacher_count.flops, params=teacher_count.params)
    return _finish(run_dir, "distill", student_spec, trainer.model, loaders, result, teacher_info)


def teacher_source(recipe: Recipe, teacher: str | Path | None, run_dir: Path, resume: bool) -> Path:
    """Where a pipeline's dense teacher comes from: ``teacher`` (a run directory or weights file), else the recipe's
    ``teacher.checkpoint``, else one trained here into ``RUN/teacher`` (a finished one there is reused, an
    unfinished one resumes with ``resume``)."""
    if teacher is not None:
        return Path(teacher)
    if recipe.teacher.checkpoint is not None:
        return Path(recipe.teacher.checkpoint)
    out = run_dir / "teacher"
    if (out / "model.pt").is_file():
        return out
    return Path(train(recipe, out=out, resume=resume and out.exists()).run_dir)


def load_teacher(recipe: Recipe, teacher: str | Path | None = None, loaders: Loaders | None = None) -> LoadedModel:
    """The dense teacher: ``teacher`` (run dir or model file) beats ``recipe.teacher.checkpoint``.

    The file may be edgekd's ``model.pt`` (it says how to rebuild the network) or the user's weights — a
    plain or nested ``state_dict`` (``.pt``/``.pth``) or ``.safetensors`` — loaded into the recipe's teacher
    network built for ``loaders``' classes."""
    source = teacher or recipe.teacher.checkpoint
    if source is None:
        raise ConfigError(f"{recipe.source}: teacher.checkpoint=None: no teacher given; train one with "
                          f"`edgekd train --recipe {recipe.name}` and pass --teacher RUN_DIR, or pass your "
                          f"weights with --checkpoint")
    file = resolve_model_file(source)
    payload = read_weight_file(file)
    if not is_edgekd_payload(payload):
        return _teacher_from_weights(recipe, file, payload, loaders)
    loaded = load_model(file, payload)
    if loaded.arch.name != recipe.teacher.model.name:
        raise CheckpointError(f"{loaded.path}: holds {loaded.arch.name}, but the recipe's teacher is "
                              f"{recipe.teacher.model.name}")
    return loaded


def _teacher_from_weights(recipe: Recipe, file: Path, payload: object, loaders: Loaders | None) -> LoadedModel:
    if loaders is None:
        raise ConfigError(f"{file}: plain weights need the data to size the network; pass loaders")
    spec = recipe.teacher.model
    model = load_weights(build_model(spec, loaders), state_dict_of(payload, file), file)
    return LoadedModel(for_inference(model), model_arch(spec, loaders), file, sha256_file(file),
                       {"stage": "user weights"})


def build_student(recipe: Recipe, teacher: LoadedModel, loaders: Loaders) -> nn.Module:
    """The student architecture, from scratch or initialised with the teacher's weights."""
    spec = recipe.student.model or recipe.teacher.model
    student = build_model(spec, loaders)
    if recipe.student.init == "teacher":
        student.load_state_dict(teacher.model.state_dict())
    return student


def build_model(spec: ModelSpec, loaders: Loaders) -> nn.Module:
    """A fresh model of ``spec`` with the data's class count (checked: a user's builder may ignore it)."""
    model = create_model(spec.name, num_classes=loaders.num_classes, **spec.kwargs)
    check_head(model, spec.name, loaders)
    return model


def check_head(model: nn.Module, name: str, loaders: Loaders) -> None:
    """Refuse, in one line, a network that cannot run on the data's images or whose output is not one score
    per class of the data."""
    was_training = model.training
    try:
        with torch.no_grad():
            output = model.eval()(torch.zeros(loaders.input_shape))
    except Exception as err:  # a user's network may raise anything on a wrong input size
        raise ConfigError(f"model={name!r}: cannot run on the data's input {_dims(loaders.input_shape)}: "
                          f"{type(err).__name__}: {first_line(err)}") from None
    finally:
        model.train(was_training)
    if isinstance(output, tuple | list):
        output = output[0]
    if output.dim() != 2 or output.shape[1] != loaders.num_classes:
        raise ConfigError(f"model={name!r}: outputs {_dims(tuple(output.shape))} but the data ({loaders.source}) "
                          f"has {loaders.num_classes} classes; the head must give one score per class "
                          f"(pass num_classes in model.kwargs if the builder takes another name for it)")


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def model_arch(spec: ModelSpec, loaders: Loaders) -> ModelArch:
    """What a saved model of ``spec`` trained on ``loaders`` needs to be rebuilt without the recipe."""
    return ModelArch(spec.name, dict(spec.kwargs), tuple(loaders.input_shape), loaders.num_classes)


def objective_for(recipe: Recipe, teacher: nn.Module | None, student: nn.Module, loaders: Loaders) -> nn.Module:
    """Cross-entropy without a teacher; KD (+ the recipe's FitNets hints) from ``teacher`` otherwise."""
    if teacher is None:
        return CrossEntropyObjective(recipe.training.label_smoothing)
    sample = torch.zeros(loaders.input_shape)
    return DistillationObjective(teacher, recipe.distill, student, sample, recipe.training.label_smoothing)


def _prepare(recipe: Recipe, stage: str, out: str | Path | None, resume: bool) -> Path:
    run_dir = resolve_run_dir(recipe, stage, out, resume)
    if not resume and (run_dir / "checkpoint.pt").exists():
        raise CheckpointError(f"{run_dir}: already holds a run; pass --resume to continue it or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_recipe(run_dir, recipe)
    return run_dir


def _finish(run_dir: Path, stage: str, spec: ModelSpec, model: nn.Module, loaders: Loaders, result: TrainResult,
            teacher: dict[str, Any] | None = None) -> RunResult:
    model = for_inference(model)
    save_model(run_dir / "model.pt", model, model_arch(spec, loaders),
               extra={"stage": stage, "test_acc": result.test_acc})
    count = count_model(model, loaders.input_shape)
    run = RunResult(
        run_dir=str(run_dir), stage=stage, model=spec.name, test_acc=result.test_acc, val_acc=result.val_acc,
        flops=count.flops, params=count.params, weight_params=count.weight_params, epochs=result.epochs,
        seconds=result.seconds, images_per_second=result.images_per_second,
        data={**loaders.sizes, "source": loaders.source, "num_classes": loaders.num_classes}, teacher=teacher,
    )
    atomic_write_json(run_dir / "result.json", run.to_dict())
    return run
