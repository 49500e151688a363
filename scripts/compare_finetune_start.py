"""Where a kept network's finetune starts: a compress run's learned structure (its masks, re-derived from
``learn/checkpoint.pt``) finetuned with the run's own finetune phase and KD from the teacher, starting either from
the learned weights (what ``compress`` does) or from the dense teacher's weights on the same kept channels.

    EDGEKD_CACHE_DIR=... python scripts/compare_finetune_start.py RUN TEACHER learned|teacher \
        --device local [--latency-mode tuned]

Prints one JSON line: accuracy before and after finetuning (docs/benchmarks.md "where the steps go")."""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

from edgekd.config.recipe import load_recipe
from edgekd.data import build_loaders
from edgekd.learn.engine import evaluate, seed_everything
from edgekd.models.io import for_inference
from edgekd.pipeline.compress import _learned_weights, finetune, structure_cost_models
from edgekd.pipeline.latency import latency_cost_for, wants_latency
from edgekd.pipeline.train import build_model, load_teacher
from edgekd.structure.learner import StructureLearner
from edgekd.structure.prune import prune_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a compress run directory (e.g. a tune round's)")
    parser.add_argument("teacher", type=Path, help="the teacher run directory or model file it was distilled from")
    parser.add_argument("start", choices=["learned", "teacher"])
    parser.add_argument("--device", default="local", help="the board whose latency model sized the run's budgets")
    parser.add_argument("--latency-mode", default="untuned", help="that latency model's mode (untuned or tuned)")
    args = parser.parse_args()
    recipe = load_recipe(str(args.run / "recipe.yaml"))
    loaders = build_loaders(recipe.data, recipe.seed)
    latency = None
    if wants_latency(recipe):
        latency = latency_cost_for(recipe, args.device, args.latency_mode, loaders=loaders)
    seed_everything(recipe.seed)
    dense = load_teacher(recipe, args.teacher, loaders).model.eval()
    student = build_model(recipe.teacher.model, loaders)
    student.load_state_dict(_learned_weights(args.run / "learn" / "checkpoint.pt"))
    learner = StructureLearner(student, recipe.structure, loaders.input_shape,
                               cost_models=structure_cost_models(recipe, latency))
    masks = learner.final_masks()  # the fit to the budgets is the controller's, as compress does it
    source = for_inference(student) if args.start == "learned" else copy.deepcopy(dense).eval()
    pruned = prune_model(source, learner.graph, masks, ownership=learner.ownership).model
    before = evaluate(pruned, loaders.test).acc
    with tempfile.TemporaryDirectory() as scratch:
        seed_everything(recipe.seed)
        _compact, info = finetune(recipe, pruned, dense, loaders, Path(scratch) / "finetune")
    print(json.dumps({"run": str(args.run), "start": args.start, "before": before, **info}))


if __name__ == "__main__":
    main()
