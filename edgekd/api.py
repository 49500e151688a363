"""The Python API behind every CLI command: plain functions over typed results, usable from a notebook.

    from edgekd import api
    recipe = api.load_recipe("quickstart")
    teacher = api.train(recipe)
    student = api.distill(recipe, teacher=teacher.run_dir)
    compact = api.compress(recipe, teacher=teacher.run_dir)          # learn structure, prune, finetune
    artifact = api.compile_model(compact.run_dir, "host", "artifacts/quickstart-host")
    [measurement] = api.bench(artifact.path, device="local")

A facade: it only re-exports the stage functions (:mod:`edgekd.pipeline`) and the few lower-floor
functions the CLI needs, so that the CLI never reaches past it. Each stage reads its inputs (recipe, run
directory, artifact) and returns a dataclass that is also written as JSON in its run directory.
"""

from __future__ import annotations

from edgekd.compile.api import Artifact, CompileOptions, compile_model, default_output_dir
from edgekd.config.recipe import Recipe, list_recipes, load_recipe
from edgekd.config.target import TargetProfile, list_targets, load_target
from edgekd.device.bench import BenchOptions, BenchResult
from edgekd.pipeline.bench import bench
from edgekd.pipeline.compress import CompressResult, compress
from edgekd.pipeline.train import RunResult, build_student, distill, load_teacher, train

__all__ = [
    "Artifact", "BenchOptions", "BenchResult", "CompileOptions", "CompressResult", "Recipe", "RunResult",
    "TargetProfile", "bench", "build_student", "compile_model", "compress", "default_output_dir", "distill",
    "list_recipes", "list_targets", "load_recipe", "load_target", "load_teacher", "train",
]
