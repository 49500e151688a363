"""``edgekd tune``: measurements on the board steer the latency budgets until the compact network *measures*
within a target (milliseconds, or a share of the dense network's p50 measured in the same interleaved bench).

Input: a recipe (its blocks say what may be pruned; their own budgets are replaced by latency budgets), a device
(its target is the compile target), the target and :class:`TuneOptions`. Output: a run directory

    RUN/teacher/             the dense teacher (only when it had to be trained here)
    RUN/reference/dense/     the dense network (model.pt, also from a user's plain weights + artifact/)
    RUN/reference/floor/     the smallest network the recipe allows (model.pt + artifact/): a target must clear it
    RUN/round-K/             round K's compress run (learn/, pruned/, model.pt, report.json), artifact/ (measured)
                             the round kept also: finetune/, model.pt finetuned, final-artifact/
    RUN/model.pt, model.pt2, arch.json, artifact/   the kept round's finetuned network and its artifact, copied up
    RUN/tune.json            :class:`TuneResult` (``schema_version``), rewritten atomically after every step

Before round 1 the dense and the floor networks are compiled and benched interleaved; a target below the floor is
refused in one line with the floor measured. Each round then: budgets from the board's latency model → compress,
warm-started from the previous round's structure learning → compile with the target's tuning database (the
deployed artifact is tuned) → bench interleaved with the dense network and the previous round's artifact
(``repeats`` rounds) → stop when the candidate meets the target: for a share of the dense p50, the median over the
bench rounds of each round's own candidate ÷ dense ratio (paired: a slow spell of the board falls on both); for
milliseconds, the candidate's median p50. A round's network is
measured *before* it is finetuned — latency is the architecture's and its schedules', not its weights' — and only
the round kept (the one that met, or the last) is finetuned, once, then compiled again with its weights (every task
reused from the database: the measured schedules). A round that misses costs its structure learning, not a
finetune whose network is thrown away (a third of the steps of a three-round tune in the benchmark, stop 29).
Every bench row goes to the results store tagged ``tune_run``, ``tune_round``, ``tune_role`` (dense, floor,
previous, candidate) and, for a candidate, ``predicted_ms`` and ``compress_run``. ``resume`` continues from
``tune.json``: measured rounds are kept as they are, an unfinished one resumes its training from its checkpoints.

Budgets, and why: the default latency model (``profile.mode`` untuned) predicts the latency of *untuned* kernels
while the artifact is tuned, so its milliseconds do not transfer; the order of networks does far better. It also
shapes *where* the learner prunes: untuned kernels' cost grows much faster with width than tuned ones', so the
learner thins wide layers more than the board needs (the tune benchmark, stop 28). A tuned model (``mode="tuned"``,
``--latency-mode tuned``) prices the deployed kernels, at the cost of tuning every lattice kernel once. Either way
every measurement becomes a point (predicted ms, measured share of the dense p50, paired by bench round): the floor
and the dense network before round 1, then each round's network. The next round asks the learner for the predicted
latency at which that piecewise-linear curve reaches the target share (less ``margin``, for the bench's noise) —
never above a missed round's predicted latency scaled down by how far it missed — and scaled by how far the
learner's last network landed from what it was asked (:func:`next_ask`). The ask goes to the recipe's blocks at one
common point between each block's predicted cost in the floor network and in the dense one (always reachable);
within a block, the learner's latency-weighted regularizer removes the channels with the least γ per millisecond
they cost. The residual of model, learner and tuning together is thus measured on the board and corrects the next
budget.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgekd.atomic import atomic_write_json
from edgekd.config.recipe import BlockBudget, Recipe
from edgekd.data.loaders import build_loaders
from edgekd.device.bench import BenchOptions
from edgekd.errors import CheckpointError, ConfigError
from edgekd.latency.cost import LatencyCost
from edgekd.latency.design import masks_for
from edgekd.latency.profile import ProfileOptions
from edgekd.learn.runs import resolve_run_dir, write_recipe
from edgekd.models.io import save_model
from edgekd.pipeline.compress import compress, finetune_deferred, on_target_grid
from edgekd.pipeline.latency import (
    ensure_latency_model,
    floor_widths,
    latency_budgets,
    latency_device,
    learning_grid,
    recipe_network,
)
from edgekd.pipeline.measure import (
    Measured,
    bench_tagged,
    check_deploy_trials,
    compile_for_board,
    paired_share,
    summarize,
)
from edgekd.pipeline.train import load_teacher, teacher_source
from edgekd.results.store import ResultsStore
from edgekd.structure.groups import ChannelGraph, dense_masks, trace_groups
from edgekd.structure.ownership import recipe_ownership
from edgekd.structure.prune import prune_model

__all__ = ["TuneOptions", "TuneRound", "TuneResult", "tune", "TUNE_FILE", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2  # 2: only the round kept is finetuned
TUNE_FILE = "tune.json"
MEASURED = ("measured", "finetuned", "deployed")  # a round's statuses once the board has measured it


@dataclass(frozen=True)
class TuneOptions:
    """Knobs of one tune.

    Attributes:
        max_rounds: compress → compile → bench rounds at most.
        repeats: interleaved bench rounds per measurement (the verdict is on medians; ≥ 3).
        tune_trials: MetaSchedule trials of each compile, spread over its tasks not yet in the target's database
            (tasks already tuned — a pruned network shares most with the dense one — are reused).
        tune_trials_per_task: instead, this many trials for every task the database has fewer for (each compile's
            tuning then costs what its new tasks do, the tuned latency model's kernels tuned alike).
        margin: aim this share below the target (the bench's own spread must not tip the verdict); a negative one
            aims above it (the API allows it for experiments; the CLI does not).
        runs, min_seconds: each runner invocation's timed runs (at least ``runs`` and ``min_seconds``).
        profile: how to profile the board when its latency model is missing or stale.
    """

    max_rounds: int = 3
    repeats: int = 3
    tune_trials: int = 500
    tune_trials_per_task: int | None = None
    margin: float = 0.05
    runs: int = 50
    min_seconds: float = 1.0
    profile: ProfileOptions = field(default_factory=ProfileOptions)


@dataclass
class TuneRound:
    """One round: what was asked of the learner, what the model predicted, what the board measured."""

    index: int
    ask_ms: float  # the predicted latency asked of the learner (the latency model's milliseconds)
    budgets: dict[str, float]  # block → latency budget (ms of the model's prediction); "global" without blocks
    run_dir: str
    status: str = "budgeted"  # budgeted → compressed → compiled → measured (→ finetuned → deployed: the round kept)
    predicted_ms: float | None = None
    artifact: str | None = None
    tuned: bool | None = None
    tune_trials: int | None = None
    target_ms: float | None = None  # the target in this round's bench (a ratio target moves with the dense p50)
    measured_p50_ms: float | None = None  # median over the bench rounds
    measured_p50s: list[float] = field(default_factory=list)
    dense_p50_ms: float | None = None
    dense_p50s: list[float] = field(default_factory=list)  # the same bench rounds, in order
    share: float | None = None  # candidate ÷ dense p50 paired by bench round, median (a ratio target's verdict)
    previous_p50_ms: float | None = None
    met: bool | None = None
    test_acc: float | None = None  # of the round's network: pruned, or finetuned when ``finetuned``
    finetuned: bool = False
    final_artifact: str | None = None  # the finetuned network compiled (the round kept)
    flops: float | None = None
    params: float | None = None
    learn_steps: int | None = None
    peak_rss_mb: float | None = None
    energy_per_inference_mj: float | None = None


@dataclass
class TuneResult:
    """``tune.json``: the target, the reference measurements, every round, and the outcome."""

    recipe: str
    device: str
    target: str
    run_dir: str
    goal: dict[str, float]  # {"latency_ms": X} or {"latency_ratio": r}
    options: dict[str, Any]
    reference: dict[str, Any] = field(default_factory=dict)
    rounds: list[TuneRound] = field(default_factory=list)
    met: bool | None = None
    target_ms: float | None = None
    measured_p50_ms: float | None = None
    dense_p50_ms: float | None = None
    artifact: str | None = None
    model: str | None = None
    message: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TuneResult:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["rounds"] = [TuneRound(**r) for r in raw.get("rounds", [])]
        return cls(**values)


def _read_state(path: Path) -> TuneResult:
    import json

    try:
        raw = json.loads(path.read_text())
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise CheckpointError(f"{path}: tune schema {raw.get('schema_version')!r}, this edgekd reads "
                                  f"{SCHEMA_VERSION}; start a new tune")
        return TuneResult.from_dict(raw)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: not a readable tune state ({type(err).__name__}); start a new tune "
                              "(another --out)") from None


def _goal(latency_ms: float | None, latency_ratio: float | None) -> dict[str, float]:
    if (latency_ms is None) == (latency_ratio is None):
        raise ConfigError("tune: give the target as --latency-ms X or --latency-ratio r (one of them)")
    if latency_ms is not None:
        if latency_ms <= 0:
            raise ConfigError(f"tune: --latency-ms={latency_ms:g}: give a positive number of milliseconds")
        return {"latency_ms": float(latency_ms)}
    if not 0 < latency_ratio < 1:
        raise ConfigError(f"tune: --latency-ratio={latency_ratio:g}: give a share of the dense network's p50 "
                          "between 0 and 1 (0.6 = 40% faster)")
    return {"latency_ratio": float(latency_ratio)}


def _target_ms(goal: dict[str, float], dense_p50: float) -> float:
    return goal["latency_ms"] if "latency_ms" in goal else goal["latency_ratio"] * dense_p50


class _Tuner:
    def __init__(self, recipe: Recipe, state: TuneResult, options: TuneOptions, teacher: Path, device: str,
                 say: Callable[[str], None], results: ResultsStore) -> None:
        self.recipe, self.state, self.options, self.teacher = recipe, state, options, teacher
        self.say, self.results = say, results
        self.entry, self.profile = latency_device(device)
        self.run_dir = Path(state.run_dir)
        self.loaders = build_loaders(recipe.data, recipe.seed)  # once: every network here is sized by them
        self.model, self.input_shape, _key = recipe_network(recipe, self.loaders)
        self.graph: ChannelGraph = trace_groups(self.model, self.input_shape)
        self.ownership = recipe_ownership(self.graph, recipe.structure)  # without blocks: every group is tune's
        self.cost: LatencyCost | None = None

    # ------------------------------------------------------------------ persistence
    def save(self) -> None:
        atomic_write_json(self.run_dir / TUNE_FILE, self.state.to_dict())

    # ------------------------------------------------------------------ networks and artifacts
    def _compile(self, model: Path, out: Path) -> Path:
        return compile_for_board(model, self.entry, self.profile, out, self.options.tune_trials, self.say,
                                 self.options.tune_trials_per_task)

    def _bench(self, artifacts: list[Path], roles: list[str], round_index: int, extra: dict[str, Any] | None = None
               ) -> list[Measured]:
        """The artifacts benched interleaved, each row stored tagged with the tune run, round and role."""
        tags = [{"tune_run": str(self.run_dir), "tune_round": round_index, "tune_role": role,
                 **((extra or {}) if role == "candidate" else {})} for role in roles]
        options = BenchOptions(runs=self.options.runs, min_seconds=self.options.min_seconds)
        self.say(f"bench {', '.join(roles)} interleaved on {self.entry.name} ({self.options.repeats} rounds)")
        measured = bench_tagged(self.entry, artifacts, tags, self.options.repeats, options, self.results)
        return [summarize(results) for results in measured]

    # ------------------------------------------------------------------ reference: dense and floor
    def floor_widths(self) -> dict[int, int]:
        return floor_widths(self.graph, self.ownership, learning_grid(self.graph, self.recipe, self.cost))

    def reference(self) -> dict[str, Any]:
        ref = self.state.reference
        if ref.get("dense_p50s"):
            return ref
        root = self.run_dir / "reference"
        dense_model, floor_model = root / "dense" / "model.pt", root / "floor" / "model.pt"
        if not (dense_model.is_file() and floor_model.is_file()):
            self._write_reference(dense_model, floor_model)
        dense = self._compile(dense_model, root / "dense" / "artifact")
        floor = self._compile(floor_model, root / "floor" / "artifact")
        measured = self._bench([dense, floor], ["dense", "floor"], 0)
        ref.update(dense_artifact=str(dense), floor_artifact=str(floor), dense_p50s=measured[0].p50s,
                   floor_p50s=measured[1].p50s)
        self.save()
        return ref

    def _write_reference(self, dense_file: Path, floor_file: Path) -> None:
        """The teacher as edgekd's model.pt (a user's plain weights compile too) and the floor network pruned
        from it: every prunable group of the recipe at one grid step."""
        teacher = load_teacher(self.recipe, self.teacher, self.loaders)
        save_model(dense_file, teacher.model, teacher.arch, extra={"stage": "dense"})
        masks = masks_for(self.graph, self.floor_widths())
        pruned = prune_model(teacher.model, trace_groups(teacher.model, self.input_shape), masks).model
        save_model(floor_file, pruned, teacher.arch, extra={"stage": "floor"})  # rebuilt as its teacher is

    # ------------------------------------------------------------------ budgets
    def predicted(self, widths: dict[int, int] | None = None) -> float:
        masks = dense_masks(self.graph) if widths is None else masks_for(self.graph, widths)
        return self.cost.network_ms(self.graph, masks)

    def budgets(self, ask_ms: float) -> dict[str, float]:
        """What compress will make of ``ask_ms`` (:func:`~edgekd.pipeline.latency.latency_budgets`): block → ms, or
        ``{"global": ms}`` for a recipe without blocks."""
        structure = self.recipe.structure
        return latency_budgets(self.graph, self.cost, self.ownership, structure.blocks, ask_ms,
                               learning_grid(self.graph, self.recipe, self.cost))

    def round_recipe(self, ask_ms: float) -> Recipe:
        """The recipe with its blocks' own budgets replaced by the network's latency ``ask_ms`` (compress shares it
        out exactly as :meth:`budgets` records)."""
        structure = self.recipe.structure
        blocks = [b if b.frozen else BlockBudget(name=b.name, modules=b.modules) for b in structure.blocks]
        update = {"blocks": blocks, "global_budget": None, "latency_ms": ask_ms, "cost": "latency"}
        return self.recipe.model_copy(update={"structure": structure.model_copy(update=update)})

    def ask(self, ref: dict[str, Any]) -> float:
        """The predicted latency asked of the next round (:func:`next_ask`), between the floor and the dense."""
        dense_m = statistics.median(ref["dense_p50s"])
        done = [r for r in self.state.rounds if r.status in MEASURED]
        latest_dense = done[-1].dense_p50_ms if done else dense_m
        wanted_share = _target_ms(self.state.goal, latest_dense) / latest_dense * (1 - self.options.margin)
        # measured latency as a share of the dense network's p50, paired by bench round: immune to the board's drift
        floor = (self.predicted(self.floor_widths()), paired_share(ref["floor_p50s"], ref["dense_p50s"]))
        rounds = [MeasuredRound(r.ask_ms, r.predicted_ms, _share(r)) for r in done]
        return next_ask(floor, self.predicted(), rounds, wanted_share)

    # ------------------------------------------------------------------ one round
    def run_round(self, index: int, ref: dict[str, Any]) -> TuneRound:
        rounds = self.state.rounds
        current = rounds[-1] if rounds and rounds[-1].index == index else None
        if current is None:
            ask = self.ask(ref)
            current = TuneRound(index=index, ask_ms=ask, budgets=self.budgets(ask),
                                run_dir=str(self.run_dir / f"round-{index}"))
            rounds.append(current)
            self.save()
        round_dir = Path(current.run_dir)
        if current.status == "budgeted":
            self.say(f"round {index}: ask {current.ask_ms:.4g} ms predicted; budgets "
                     + ", ".join(f"{k} {v:.4g} ms" for k, v in current.budgets.items()))
            recipe = self.round_recipe(current.ask_ms)
            # a learnt structure shaves on from where the last round stopped; Taylor saliency is the teacher's
            learnt = index > 1 and recipe.structure.saliency == "gamma"
            previous = self.run_dir / f"round-{index - 1}" / "learn" / "checkpoint.pt"
            result = compress(recipe, out=round_dir, teacher=self.teacher,
                              target=self.entry.target, resume=round_dir.exists(), device=self.entry.name,
                              warm_start=previous if learnt else None, finetune_now=False,
                              latency_mode=self.options.profile.mode)  # the model that sized the budgets
            current.predicted_ms = result.pruning.get("predicted_latency_ms")
            current.test_acc, current.flops = result.student["test_acc"], result.student["flops"]
            current.params, current.learn_steps = result.student["params"], result.phases["learn"].get("steps")
            current.status = "compressed"
            self.save()
        if current.status == "compressed":
            artifact = self._compile(round_dir / "model.pt", round_dir / "artifact")
            current.artifact, current.status = str(artifact), "compiled"
            self.save()
        if current.status == "compiled":
            self.measure(current, ref)
        return current

    def deploy(self, kept: TuneRound) -> None:
        """The round kept, finetuned once (KD from the teacher, the recipe's finetune phase) and compiled again with
        its weights: same architecture, so every task's schedule is the measured artifact's."""
        round_dir = Path(kept.run_dir)
        if kept.status == "measured":
            self.say(f"round {kept.index}: finetuning the network kept")
            result = finetune_deferred(self.round_recipe(kept.ask_ms), round_dir, self.teacher,
                                       resume=(round_dir / "finetune").exists())
            kept.test_acc, kept.finetuned, kept.status = result.student["test_acc"], True, "finetuned"
            self.save()
        if kept.status == "finetuned":
            artifact = self._compile(round_dir / "model.pt", round_dir / "final-artifact")
            kept.final_artifact, kept.status = str(artifact), "deployed"
            self.save()

    def measure(self, current: TuneRound, ref: dict[str, Any]) -> None:
        artifacts, roles = [Path(ref["dense_artifact"])], ["dense"]
        measured_before = [r for r in self.state.rounds if r.status in MEASURED and r.index < current.index]
        if measured_before:
            artifacts.append(Path(measured_before[-1].artifact))
            roles.append("previous")
        artifacts.append(Path(current.artifact))
        roles.append("candidate")
        results = self._bench(artifacts, roles, current.index,
                              {"predicted_ms": current.predicted_ms, "compress_run": current.run_dir})
        candidate, dense = results[-1], results[0]
        current.measured_p50s, current.measured_p50_ms = candidate.p50s, candidate.p50_ms
        current.dense_p50_ms, current.dense_p50s = dense.p50_ms, dense.p50s
        current.share = paired_share(candidate.p50s, dense.p50s)
        current.previous_p50_ms = results[1].p50_ms if len(results) == 3 else None
        current.target_ms = _target_ms(self.state.goal, current.dense_p50_ms)
        current.met = _meets(self.state.goal, current)
        current.tuned, current.tune_trials = candidate.tuned, candidate.tune_trials
        current.peak_rss_mb, current.energy_per_inference_mj = candidate.peak_rss_mb, candidate.energy_per_inference_mj
        current.status = "measured"
        self.save()
        verdict = "meets" if current.met else "misses"
        self.say(f"round {current.index}: predicted {current.predicted_ms:.4g} ms (model), measured p50 "
                 f"{current.measured_p50_ms:.4g} ms vs dense {current.dense_p50_ms:.4g} ms ({current.share:.3f}x, "
                 f"paired by bench round): {verdict} the target {_goal_text(self.state.goal, current.target_ms)}")


def _share(measured: TuneRound) -> float:
    """A measured round's share of the dense p50 (paired; a state from before pairing: the medians' ratio)."""
    return measured.share if measured.share is not None else measured.measured_p50_ms / measured.dense_p50_ms


def _meets(goal: dict[str, float], measured: TuneRound) -> bool:
    if "latency_ratio" in goal:
        return _share(measured) <= goal["latency_ratio"]
    return measured.measured_p50_ms <= goal["latency_ms"]


def _goal_text(goal: dict[str, float], target_ms: float) -> str:
    if "latency_ratio" in goal:
        return f"{goal['latency_ratio']:.3g}x ({target_ms:.4g} ms at the dense median)"
    return f"{target_ms:.4g} ms"


@dataclass(frozen=True)
class MeasuredRound:
    """What :func:`next_ask` needs of a measured round: its ask and the learner's predicted latency (ms, the
    latency model's), and its measured share of the dense p50 (:func:`~edgekd.pipeline.measure.paired_share`)."""

    ask_ms: float
    predicted_ms: float
    share: float


def next_ask(floor: tuple[float, float], dense_predicted: float, rounds: list[MeasuredRound],
             wanted_share: float) -> float:
    """The predicted latency to ask of the next round for a measured share ``wanted_share`` of the dense p50.

    ``floor`` is the floor network's (predicted ms, measured share); the dense network is (``dense_predicted``,
    1.0). 1. Every measured network is a point (predicted, share); the ask is where the piecewise-linear curve
    through them reaches ``wanted_share`` (:func:`predicted_for`). 2. A round that missed bounds it from above at
    its own predicted latency scaled by how far it missed (``predicted × wanted ÷ share``): the curve ignores a
    point that measured slower than a network predicted slower (a tuned kernel's schedule can be far off the
    model's order), and then without the bound the next round would ask as much again. 3. The learner's last
    network came in at ``predicted`` for ``ask``: the ask is scaled by that ratio (within 0.8..1.25). The result
    lies between the floor's and the dense network's predicted latency.

    A curve that bows above its chords (measured latency falling slower than predicted) makes every interpolation
    toward the floor land short again — regula falsi's stall with a fixed end, seen as 0.75 → 0.69 → … toward 0.6
    in the benchmark. So after ``k ≥ 2`` misses in a row the floor's share offset from the wanted share is halved
    ``k − 1`` times (the Illinois rule, :func:`floor_weighted`): each further miss steps further."""
    floor_p, _floor_share = floor
    points = [floor_weighted(floor, rounds, wanted_share), (dense_predicted, 1.0)]
    wanted = predicted_for(points + [(r.predicted_ms, r.share) for r in rounds], wanted_share)
    for missed in (r for r in rounds if r.share > wanted_share):
        wanted = min(wanted, missed.predicted_ms * wanted_share / missed.share)
    if rounds:
        wanted *= min(1.25, max(0.8, rounds[-1].ask_ms / rounds[-1].predicted_ms))
    return min(dense_predicted, max(floor_p, wanted))


def floor_weighted(floor: tuple[float, float], rounds: list[MeasuredRound], wanted_share: float
                   ) -> tuple[float, float]:
    """The floor point as the curve uses it: after ``k ≥ 2`` trailing misses (rounds measured above
    ``wanted_share``), its share moved halfway toward ``wanted_share`` ``k − 1`` times (Illinois)."""
    predicted, share = floor
    misses = 0
    for measured in reversed(rounds):
        if measured.share <= wanted_share:
            break
        misses += 1
    if misses < 2 or share >= wanted_share:
        return floor
    return predicted, wanted_share - (wanted_share - share) / 2 ** (misses - 1)


def predicted_for(points: list[tuple[float, float]], share: float) -> float:
    """The predicted latency at which the measured share of the dense p50 is ``share``: piecewise-linear through
    the (predicted, measured share) points, ordered by measured share; extrapolated from the end segments."""
    ordered = sorted(points, key=lambda point: point[1])
    for (p0, m0), (p1, m1) in zip(ordered, ordered[1:], strict=False):
        if share <= m1 or (p1, m1) == ordered[-1]:
            return p0 if m1 == m0 else p0 + (share - m0) * (p1 - p0) / (m1 - m0)
    return ordered[0][0]


def _check_floor(state: TuneResult, ref: dict[str, Any]) -> None:
    dense, floor = statistics.median(ref["dense_p50s"]), statistics.median(ref["floor_p50s"])
    target = _target_ms(state.goal, dense)
    if "latency_ratio" in state.goal:  # paired, as the rounds are judged; reported at the dense median
        floor = paired_share(ref["floor_p50s"], ref["dense_p50s"]) * dense
    if target < floor:
        raise ConfigError(f"tune: target {target:.4g} ms is below the smallest network the recipe allows: it "
                          f"measures {floor:.4g} ms on {state.device} (dense {dense:.4g} ms); widen the recipe's "
                          "blocks or raise the target")
    if target >= dense:
        raise ConfigError(f"tune: the dense network already measures {dense:.4g} ms on {state.device}, within the "
                          f"target {target:.4g} ms; nothing to prune")


def _finish(state: TuneResult) -> None:
    run_dir = Path(state.run_dir)
    measured = [r for r in state.rounds if r.status in MEASURED]
    last = measured[-1]
    round_dir = Path(last.run_dir)
    for name in ("model.pt", "model.pt2", "arch.json"):
        shutil.copy2(round_dir / name, run_dir / name)
    final_artifact = run_dir / "artifact"
    if final_artifact.exists():
        shutil.rmtree(final_artifact)
    shutil.copytree(last.final_artifact or last.artifact, final_artifact)
    state.met, state.target_ms = last.met, last.target_ms
    state.measured_p50_ms, state.dense_p50_ms = last.measured_p50_ms, last.dense_p50_ms
    state.artifact, state.model = str(final_artifact), str(run_dir / "model.pt")
    if "latency_ratio" in state.goal:
        ratio = state.goal["latency_ratio"]
        measured_text = f"{_share(last):.3f}x the dense p50 measured (paired; {last.measured_p50_ms:.4g} ms median)"
        target_text, over = f"target {ratio:.3g}x", _share(last) / ratio - 1
    else:
        measured_text, target_text = f"{last.measured_p50_ms:.4g} ms measured", f"target {last.target_ms:.4g} ms"
        over = last.measured_p50_ms / last.target_ms - 1
    if last.met:
        state.message = f"met in {len(measured)} round(s): {measured_text} ≤ {target_text} on {state.device}"
    else:
        state.message = (f"missed after {len(measured)} round(s): {measured_text} vs {target_text} on "
                         f"{state.device} ({over * 100:.1f}% over); run more rounds (--resume --max-rounds N) or "
                         "lower the margin of error with more --repeats")


def tune(recipe: Recipe, device: str, *, latency_ms: float | None = None, latency_ratio: float | None = None,
         options: TuneOptions | None = None, teacher: str | Path | None = None, out: str | Path | None = None,
         resume: bool = False, results: str | Path | None = None,
         on_event: Callable[[str], None] | None = None) -> TuneResult:
    """Tune ``recipe`` on ``device`` until its compact network measures within the target (module docstring).

    Raises:
        ConfigError: no target or two, no structure section, an emulated or unknown device, a target below the
            floor the recipe allows or above the dense network. Everything compress, compile and bench raise.
    """
    options = options or TuneOptions()
    if options.max_rounds < 1 or options.repeats < 1:
        raise ConfigError("tune: --max-rounds and --repeats are at least 1")
    if not -1 < options.margin < 1:
        raise ConfigError(f"tune: margin={options.margin:g}: a share of the target between -1 and 1")
    check_deploy_trials("tune", options.profile.mode, options.tune_trials, options.tune_trials_per_task)
    say = on_event or (lambda message: print(f"edgekd tune: {message}", file=sys.stderr))
    goal = _goal(latency_ms, latency_ratio)
    if recipe.structure is None:
        raise ConfigError(f"{recipe.source}: structure: missing; tune needs a structure section (the blocks that "
                          "may be pruned)")
    entry, profile = latency_device(device)  # unknown or emulated: one line, before anything is written
    recipe = on_target_grid(recipe, profile)
    run_dir = resolve_run_dir(recipe, "tune", out, resume)
    state_file = run_dir / TUNE_FILE
    if resume and state_file.is_file():
        state = _read_state(state_file)
        if state.goal != goal:
            raise ConfigError(f"tune --resume: {run_dir} tunes for {state.goal}, not {goal}; give the same target")
    elif state_file.is_file():
        raise ConfigError(f"tune: {run_dir} holds a tune already; continue it with --resume or give another --out")
    else:
        state = TuneResult(recipe=recipe.name, device=entry.name, target=profile.name, run_dir=str(run_dir), goal=goal,
                           options={})
    state.options = {k: v for k, v in asdict(options).items() if k != "profile"}  # this invocation's (--resume too)
    state.options["latency_mode"] = options.profile.mode
    run_dir.mkdir(parents=True, exist_ok=True)
    write_recipe(run_dir, recipe)
    teacher_path = teacher_source(recipe, teacher, run_dir, resume)
    tuner = _Tuner(recipe, state, options, teacher_path, entry.name, say, ResultsStore(results))
    tuner.save()
    tuner.cost = ensure_latency_model(recipe, entry, options.profile, say, tuner.loaders)
    ref = tuner.reference()
    _check_floor(state, ref)
    for index in range(1, options.max_rounds + 1):
        kept = next((r for r in state.rounds if r.index == index and r.status in MEASURED), None)
        if (kept or tuner.run_round(index, ref)).met:
            break
    tuner.deploy(next(r for r in reversed(state.rounds) if r.status in MEASURED))
    _finish(state)
    tuner.save()
    return state
