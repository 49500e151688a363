"""Where a kept network's finetune starts: a compress run's learned structure (its masks, re-derived from
``learn/checkpoint.pt``) finetuned with the run's own finetune phase and KD from the teacher, starting either from
the learned weights (what ``compress`` does) or from the dense teacher's weights on the same kept channels.
``--masks taylor`` replaces the learned structure by one chosen on the teacher under the run's budgets
(:func:`~edgekd.pipeline.compress.choose_by_taylor`, as ``structure.saliency: taylor`` does it).

    EDGEKD_CACHE_DIR=... python scripts/compare_finetune_start.py RUN TEACHER learned|teacher \
        --device local [--latency-mode tuned] [--masks learned|taylor]

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
from edgekd.pipeline.compress import _learned_weights, choose_by_taylor, finetune, structure_cost_models
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
    parser.add_argument("--masks", choices=["learned", "taylor"], default="learned",
                        help="the run's learned structure, or Taylor saliency on the teacher fitted to its budgets")
    args = parser.parse_args()
    recipe = load_recipe(str(args.run / "recipe.yaml"))
    loaders = build_loaders(recipe.data, recipe.seed)
    latency = None
    if wants_latency(recipe):
        latency = latency_cost_for(recipe, args.device, args.latency_mode, loaders=loaders)
    seed_everything(recipe.seed)
    dense = load_teacher(recipe, args.teacher, loaders).model.eval()
    student = build_model(recipe.teacher.model, loaders)
    cost_models = structure_cost_models(recipe, latency)
    if args.masks == "learned":
        student.load_state_dict(_learned_weights(args.run / "learn" / "checkpoint.pt"))
        learner = StructureLearner(student, recipe.structure, loaders.input_shape, cost_models=cost_models)
        masks = learner.final_masks()  # the fit to the budgets is the controller's, as compress does it
    else:  # what compress does with structure.saliency: taylor
        student.load_state_dict(dense.state_dict())
        learner, masks, _info = choose_by_taylor(recipe, student, loaders, cost_models)
    widths = [int(m.sum()) for m in masks]
    source = for_inference(student) if args.start == "learned" else copy.deepcopy(dense).eval()
    pruned = prune_model(source, learner.graph, masks, ownership=learner.ownership).model
    before = evaluate(pruned, loaders.test).acc
    with tempfile.TemporaryDirectory() as scratch:
        seed_everything(recipe.seed)
        _compact, info = finetune(recipe, pruned, dense, loaders, Path(scratch) / "finetune")
    print(json.dumps({"run": str(args.run), "start": args.start, "masks": args.masks, "widths": widths,
                      "before": before, **info}))


if __name__ == "__main__":
    main()
