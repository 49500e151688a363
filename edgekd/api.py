"""The Python API behind every CLI command: plain functions over typed results, usable from a notebook.

    from edgekd import api
    recipe = api.load_recipe("quickstart")
    teacher = api.train(recipe)
    student = api.distill(recipe, teacher=teacher.run_dir)
    compact = api.compress(recipe, teacher=teacher.run_dir)          # learn structure, prune, finetune
    artifact = api.compile_model(compact.run_dir, "host", "artifacts/quickstart-host")
    [measurement] = api.bench(artifact.path, device="local")

Each stage reads its inputs (recipe, run directory, artifact) and returns a dataclass that is also
written as ``result.json`` in its run directory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.atomic import atomic_write_json
from edgekd.compile.api import Artifact, CompileOptions, compile_model
from edgekd.config.recipe import ModelSpec, Recipe, list_recipes, load_recipe
from edgekd.data import Loaders, build_loaders
from edgekd.errors import CheckpointError, ConfigError
from edgekd.learn.distill import CrossEntropyObjective, DistillationObjective
from edgekd.learn.engine import Trainer, TrainResult, seed_everything
from edgekd.learn.runs import resolve_run_dir, write_recipe
from edgekd.models import create_model
from edgekd.models.counting import count_model
from edgekd.models.io import LoadedModel, ModelArch, load_model, save_model

__all__ = [
    "RunResult", "train", "distill", "compress", "compile_model", "CompileOptions", "Artifact", "bench",
    "load_recipe", "list_recipes", "load_teacher", "build_student",
]


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
    model = _build(recipe.teacher.model, loaders)
    run_dir = _prepare(recipe, "train", out, resume)
    objective = CrossEntropyObjective(recipe.training.label_smoothing)
    trainer = Trainer(model, loaders, recipe.training, run_dir, objective=objective, seed=recipe.seed,
                      recipe=recipe.dump(), resume=resume, description="teacher")
    result = trainer.fit()
    return _finish(run_dir, "train", recipe.teacher.model, trainer.model, loaders, result)


def distill(recipe: Recipe, teacher: str | Path | None = None, out: str | Path | None = None,
            resume: bool = False) -> RunResult:
    """Train ``recipe.student`` with KD (+ hints) from the teacher found via ``teacher`` or the recipe."""
    seed_everything(recipe.seed)
    loaders = build_loaders(recipe.data, recipe.seed)
    dense = load_teacher(recipe, teacher)
    student_spec = recipe.student.model or recipe.teacher.model
    student = build_student(recipe, dense, loaders)
    run_dir = _prepare(recipe, "distill", out, resume)
    sample = torch.zeros(loaders.input_shape)
    objective = DistillationObjective(dense.model, recipe.distill, student, sample, recipe.training.label_smoothing)
    trainer = Trainer(student, loaders, recipe.training, run_dir, objective=objective, seed=recipe.seed,
                      recipe=recipe.dump(), resume=resume, description="distill")
    result = trainer.fit()
    teacher_info = {"path": str(dense.path), "sha256": dense.sha256, "model": dense.arch.name}
    teacher_count = count_model(dense.model, loaders.input_shape)
    teacher_info.update(flops=teacher_count.flops, params=teacher_count.params)
    return _finish(run_dir, "distill", student_spec, trainer.model, loaders, result, teacher_info)


def load_teacher(recipe: Recipe, teacher: str | Path | None = None) -> LoadedModel:
    """The dense teacher: ``teacher`` (run dir or model file) beats ``recipe.teacher.checkpoint``."""
    source = teacher or recipe.teacher.checkpoint
    if source is None:
        raise ConfigError(f"{recipe.source}: teacher.checkpoint=None: no teacher given; train one with "
                          f"`edgekd train --recipe {recipe.name}` and pass --teacher RUN_DIR")
    loaded = load_model(source)
    if loaded.arch.name != recipe.teacher.model.name:
        raise CheckpointError(f"{loaded.path}: holds {loaded.arch.name}, but the recipe's teacher is "
                              f"{recipe.teacher.model.name}")
    return loaded


def build_student(recipe: Recipe, teacher: LoadedModel, loaders: Loaders) -> nn.Module:
    """The student architecture, from scratch or initialised with the teacher's weights."""
    spec = recipe.student.model or recipe.teacher.model
    student = _build(spec, loaders)
    if recipe.student.init == "teacher":
        student.load_state_dict(teacher.model.state_dict())
    return student


def _build(spec: ModelSpec, loaders: Loaders) -> nn.Module:
    return create_model(spec.name, num_classes=loaders.num_classes, **spec.kwargs)


def _prepare(recipe: Recipe, stage: str, out: str | Path | None, resume: bool) -> Path:
    run_dir = resolve_run_dir(recipe, stage, out, resume)
    if not resume and (run_dir / "checkpoint.pt").exists():
        raise CheckpointError(f"{run_dir}: already holds a run; pass --resume to continue it or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_recipe(run_dir, recipe)
    return run_dir


def _finish(run_dir: Path, stage: str, spec: ModelSpec, model: nn.Module, loaders: Loaders, result: TrainResult,
            teacher: dict[str, Any] | None = None) -> RunResult:
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    arch = ModelArch(spec.name, dict(spec.kwargs), tuple(loaders.input_shape), loaders.num_classes)
    save_model(run_dir / "model.pt", model, arch, extra={"stage": stage, "test_acc": result.test_acc})
    count = count_model(model, loaders.input_shape)
    run = RunResult(
        run_dir=str(run_dir), stage=stage, model=spec.name, test_acc=result.test_acc, val_acc=result.val_acc,
        flops=count.flops, params=count.params, weight_params=count.weight_params, epochs=result.epochs,
        seconds=result.seconds, images_per_second=result.images_per_second,
        data={**loaders.sizes, "source": loaders.source, "num_classes": loaders.num_classes}, teacher=teacher,
    )
    atomic_write_json(run_dir / "result.json", run.to_dict())
    return run


def compress(recipe: Recipe, out: str | Path | None = None, teacher: str | Path | None = None,
             target: str | None = None, resume: bool = False):
    """Teacher → structure learning with KD under per-block budgets → prune → KD finetune.

    Returns a :class:`edgekd.structure.compress.CompressResult` (also written as ``report.json``)."""
    from edgekd.structure.compress import compress as run_compress

    return run_compress(recipe, out=out, teacher=teacher, target=target, resume=resume)


def bench(artifact: str | Path, device: str = "local", options=None, results: str | Path | None = None,
          store: bool = True) -> list:
    """Push an artifact to a configured device (``local`` = this host, no SSH), run it, compare with the
    PyTorch reference, and append one row per measurement to the results store.

    Returns a list of :class:`edgekd.device.bench.BenchResult` (one per ``options.repeat``)."""
    from edgekd.config.devices import DeviceStore
    from edgekd.device import connect
    from edgekd.device.bench import BenchOptions
    from edgekd.device.bench import bench as run_bench
    from edgekd.results.store import ResultsStore

    entry = DeviceStore().get(device)
    with connect(entry) as conn:
        measured = run_bench(conn, entry, artifact, options or BenchOptions())
    if store:
        results_store = ResultsStore(results)
        for result in measured:
            results_store.append(result.to_row())
    return measured
