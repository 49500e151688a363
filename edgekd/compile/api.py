"""The compile stage as one function: model + target → artifact directory.

Input: a model (run directory, ``.pt`` file, :class:`~edgekd.models.io.LoadedModel` or ``nn.Module``),
a target (name, YAML path or :class:`TargetProfile`) and an output directory. Output: an
:class:`Artifact` describing the directory written (layout and manifest: docs/artifacts.md)::

    model.so  edgekd-runner  lib/libtvm_runtime.so  lib/libtvm_ffi.so
    input.bin  reference_output.bin  model.onnx  manifest.json
"""

from __future__ import annotations

import importlib.metadata
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.compile.artifact import (
    Manifest,
    ModelInfo,
    TargetInfo,
    TensorInfo,
    TuningInfo,
    staging_dir,
    utc_now,
    write_manifest,
)
from edgekd.config.target import TargetProfile, load_target
from edgekd.errors import ConfigError

__all__ = ["CompileOptions", "Artifact", "compile_model", "default_output_dir"]

LIBRARY = "model.so"
INPUT_FILE = "input.bin"
OUTPUT_FILE = "reference_output.bin"
ONNX_FILE = "model.onnx"
REFERENCE_SEED = 0


@dataclass(frozen=True)
class CompileOptions:
    """Knobs of one compile.

    Attributes:
        tune_trials: MetaSchedule trial budget spread over the model's tasks (0 = untuned).
        tune_trials_per_task: instead of spreading ``tune_trials``, give every task this many trials (tasks the
            database's ledger already gives as many are reused); tunes even when ``tune_trials`` is 0.
        tune_max_minutes: stop tuning after this many minutes, keeping the records measured so far.
        input_shape: input shape when the model is a bare ``nn.Module`` (ignored for saved models).
        model_name: name recorded in the manifest for a bare ``nn.Module``.
        onnx: also export ``model.onnx``.
        runner: also build the device runner and copy the runtime libraries.
        weight_prepack: when tuning, let MetaSchedule pick blocked weight layouts, folded into the constants
            at compile time (same library interface; DESIGN.md §3 names it a main lever on CPUs).
        fold_batch_norms: fold each BatchNorm into the convolution before it
            (:func:`edgekd.compile.build.fold_batch_norms`); off only to measure what folding buys.
    """

    tune_trials: int = 0
    tune_trials_per_task: int | None = None
    tune_max_minutes: float | None = None
    input_shape: tuple[int, ...] = (1, 3, 32, 32)
    model_name: str | None = None
    onnx: bool = True
    runner: bool = True
    weight_prepack: bool = True
    fold_batch_norms: bool = True


@dataclass(frozen=True)
class Artifact:
    """A written artifact directory and its manifest."""

    path: Path
    manifest: Manifest
    seconds: float
    tuning_measured: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.manifest.target.name

    @property
    def files(self) -> list[str]:
        return sorted(self.manifest.files)

    @property
    def tuned(self) -> bool:
        return self.manifest.tuned

    def to_json(self) -> dict[str, object]:
        """The ``--json`` document: ``{artifact, target, files, tuned}`` (+ tuning details)."""
        return {"artifact": str(self.path), "target": self.target, "files": self.files, "tuned": self.tuned,
                "tuning": self.manifest.tuning.model_dump(), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class _Model:
    module: nn.Module
    name: str
    source: str
    sha256: str | None
    input_shape: tuple[int, ...]
    program: Any = None  # a torch.export program (from a .pt2): traced already, handed on as is

    @property
    def traceable(self) -> Any:
        """What the TVM and ONNX importers take: the program when there is one, else the module."""
        return self.program if self.program is not None else self.module


def _resolve_model(model: object, options: CompileOptions) -> _Model:
    if isinstance(model, nn.Module):
        return _Model(model.eval(), options.model_name or type(model).__name__, "<in-memory nn.Module>", None,
                      tuple(options.input_shape))
    from edgekd.models.io import LoadedModel, load_model

    loaded = model if isinstance(model, LoadedModel) else load_model(Path(str(model)))
    module = loaded.model if loaded.program is not None else loaded.model.eval()  # a program is in eval already
    return _Model(module, loaded.arch.name, str(loaded.path), loaded.sha256, tuple(loaded.input_shape),
                  loaded.program)


def default_output_dir(model: object, target: str) -> Path:
    """``<run dir>/artifacts/<target>`` for a run directory or its ``model.pt`` / ``model.pt2``, else
    ``artifacts/<file stem>-<target>``."""
    path = Path(str(model))
    if path.is_dir():
        return path / "artifacts" / target
    if path.name in ("model.pt", "model.pt2"):
        return path.parent / "artifacts" / target
    return Path("artifacts") / f"{path.stem}-{target}"


def _versions() -> dict[str, str]:
    names = {"tvm": "apache-tvm", "tvm_ffi": "apache-tvm-ffi", "torch": "torch", "edgekd": "edgekd"}
    versions = {}
    for key, dist in names.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = "unknown"
    return versions


def _reference(model: _Model) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(REFERENCE_SEED)
    example = torch.randn(model.input_shape, generator=generator, dtype=torch.float32)
    with torch.no_grad():
        output = model.module(example)
    if isinstance(output, tuple | list):
        output = output[0]
    return example.numpy(), output.detach().float().contiguous().numpy()


def compile_model(model: object, target: str | Path | TargetProfile, out_dir: str | Path,
                  options: CompileOptions | None = None, *, tune_trials: int | None = None,
                  measure: Any = None, board: str | None = None, on_batch: Any = None) -> Artifact:
    """Compile ``model`` for ``target`` into the artifact directory ``out_dir`` (replaced atomically).

    Args:
        model: run directory, saved model file, LoadedModel, or nn.Module (see CompileOptions.input_shape).
        target: profile name, YAML path, or TargetProfile.
        out_dir: artifact directory to (re)write.
        options: compile knobs; ``tune_trials`` overrides ``options.tune_trials``.
        measure: when tuning, a MetaSchedule runner factory (profile -> Runner) that times candidates, e.g. on a
            board (:func:`edgekd.pipeline.compile.compile_on_device` hands one in); default: this machine.
        board: the measuring board's key (:func:`edgekd.compile.tuning.board_key`): its own tuning database.

    Raises:
        ConfigError: unknown target or bad options. ToolchainError: compiler, NDK or runtime missing.
        CompileError: TVM cannot import (operator named) or compile the model.
        CheckpointError: the model file cannot be read.
    """
    from edgekd.compile import build
    from edgekd.compile.onnx_export import export_onnx
    from edgekd.compile.runner import RUNNER_NAME, build_runner
    from edgekd.compile.runtime_libs import get_runtime_libs
    from edgekd.compile.toolchains import get_toolchain
    from edgekd.compile.tuning import ensure_measurable, open_database, tune_module

    options = options or CompileOptions()
    trials = options.tune_trials if tune_trials is None else tune_trials
    per_task = options.tune_trials_per_task
    if trials < 0 or (per_task is not None and per_task < 1):
        raise ConfigError(f"tune_trials={trials}, tune_trials_per_task={per_task}: trials must be >= 0, per task >= 1")
    tuned = trials > 0 or per_task is not None
    started = time.perf_counter()
    timings: dict[str, float] = {}
    profile = load_target(target) if not isinstance(target, TargetProfile) else target
    toolchain = get_toolchain(profile)  # fail fast on a missing compiler/NDK, before any heavy work
    if tuned:
        ensure_measurable(profile, measure)
    runtime = get_runtime_libs(profile) if options.runner else None
    resolved = _resolve_model(model, options)
    example, reference = _reference(resolved)

    host_cpu = build.system_cpu() if profile.tvm_target.mcpu == "host" else None
    tvm_target_dict = profile.tvm_target.as_tvm_dict(host_cpu=host_cpu)
    tvm_target = build.make_target(tvm_target_dict)
    prepack = tuned and options.weight_prepack
    imported = build.import_model(resolved.traceable, torch.from_numpy(example), fold=options.fold_batch_norms)
    mod = build.prepare_module(imported, tvm_target, prepack)
    timings["import_s"] = time.perf_counter() - started

    tuning, database, measured = TuningInfo(), None, 0
    if tuned:
        result = tune_module(mod, tvm_target, profile, trials, options.tune_max_minutes, measure=measure, board=board,
                             on_batch=on_batch, per_task=per_task)
        database, measured = open_database(result.database), result.measured  # read once: tuning just did
        tuning = TuningInfo(trials=result.trials, database=str(result.database), seconds=round(result.seconds, 3),
                            tasks=result.tasks, tasks_tuned=result.tasks_tuned, tasks_reused=result.tasks_reused,
                            weight_prepack=prepack, cost_model_records=result.pretrained_on)
        timings["tune_s"] = result.seconds

    with staging_dir(Path(out_dir)) as staging:
        mark = time.perf_counter()
        build.compile_library(mod, tvm_target, staging / LIBRARY, toolchain.compiler(), database, prepack)
        timings["compile_s"] = time.perf_counter() - mark
        example.tofile(staging / INPUT_FILE)
        reference.tofile(staging / OUTPUT_FILE)
        runtime_files: list[str] = []
        if runtime is not None:
            shutil.copy2(build_runner(toolchain, runtime), staging / RUNNER_NAME)
            (staging / "lib").mkdir()
            for library in runtime.files:
                shutil.copy2(library, staging / "lib" / library.name)
                runtime_files.append(f"lib/{library.name}")
        if options.onnx:
            mark = time.perf_counter()
            export_onnx(resolved.traceable, torch.from_numpy(example), staging / ONNX_FILE)
            timings["onnx_s"] = time.perf_counter() - mark
        manifest = write_manifest(staging, Manifest(
            model=ModelInfo(name=resolved.name, source=resolved.source, sha256=resolved.sha256),
            target=TargetInfo(name=profile.name, arch=profile.arch, glibc_floor=profile.glibc_floor,
                              tvm_target=tvm_target_dict),
            input=TensorInfo(name="x", shape=list(example.shape), file=INPUT_FILE),
            output=TensorInfo(shape=list(reference.shape), file=OUTPUT_FILE),
            library=LIBRARY,
            runner=RUNNER_NAME if runtime is not None else None,
            runtime_libs=runtime_files,
            onnx=ONNX_FILE if options.onnx else None,
            versions=_versions(),
            tuned=database is not None,
            tuning=tuning,
            created=utc_now(),
        ))
    return Artifact(Path(out_dir), manifest, time.perf_counter() - started, measured, timings)
