"""Run directories: where a stage's checkpoints, metrics, model and result go.

Default: ``runs/<recipe>-<stage>-<UTC timestamp>`` under the current directory. ``resume=True`` without
an explicit directory picks the newest run of the same recipe and stage.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from edgekd.atomic import atomic_write_text
from edgekd.config.recipe import Recipe
from edgekd.errors import CheckpointError

RUNS_ROOT = Path("runs")


def resolve_run_dir(recipe: Recipe, stage: str, out: str | Path | None, resume: bool) -> Path:
    if out is not None:
        return Path(out)
    if resume:
        candidates = sorted(RUNS_ROOT.glob(f"{recipe.name}-{stage}-*"))
        if not candidates:
            raise CheckpointError(f"--resume: no earlier {stage} run of recipe {recipe.name!r} under {RUNS_ROOT}/; "
                                  "pass --out RUN_DIR")
        return candidates[-1]
    return RUNS_ROOT / f"{recipe.name}-{stage}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def write_recipe(run_dir: Path, recipe: Recipe) -> None:
    """Store the fully resolved recipe so the run can be understood (and repeated) on its own."""
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe.dump(), sort_keys=False))
