"""The Python API behind every CLI command: plain functions over typed results, usable from a notebook.

    from edgekd import api
    recipe = api.load_recipe("quickstart")
    teacher = api.train(recipe)
    student = api.distill(recipe, teacher=teacher.run_dir)
    compact = api.compress(recipe, teacher=teacher.run_dir)          # learn structure, prune, finetune
    artifact = api.compile_model(compact.run_dir, "host", "artifacts/quickstart-host")
    [measurement] = api.bench(artifact.path, device="local")
    api.add_device("tx2", target="jetson-tx2", host="tx2.lan")         # then fetch_host_key / trust_host_key

A facade: it only re-exports the stage functions (:mod:`edgekd.pipeline`) and the few lower-floor
functions the CLI needs, so that the CLI never reaches past it. Each stage reads its inputs (recipe, run
directory, artifact) and returns a dataclass that is also written as JSON in its run directory.
"""

from __future__ import annotations

from edgekd.compile.api import Artifact, CompileOptions, compile_model, default_output_dir
from edgekd.config.devices import Device
from edgekd.config.loading import ConfigEntry
from edgekd.config.recipe import Recipe, list_recipes, load_recipe, scan_recipes
from edgekd.config.target import TargetProfile, list_targets, load_target, scan_targets
from edgekd.device.baselines import parse_baseline
from edgekd.device.bench import BenchOptions, BenchResult
from edgekd.device.lock import board_lock
from edgekd.device.manage import (
    CacheVerify,
    DeviceProbe,
    DeviceSetup,
    HostKey,
    StoredDevice,
    add_device,
    clean_device_cache,
    fetch_host_key,
    get_device,
    list_devices,
    probe_device,
    remove_device,
    setup_device,
    trust_host_key,
    verify_device_cache,
)
from edgekd.errors import ConfigError
from edgekd.latency.profile import ProfileOptions
from edgekd.learn.progress import task_progress
from edgekd.models.counting import format_count
from edgekd.pipeline.bench import bench
from edgekd.pipeline.compile import compile_on_device
from edgekd.pipeline.compress import CompressResult, MeasureOptions, compress
from edgekd.pipeline.default_recipe import compress_model, model_blocks
from edgekd.pipeline.latency import list_latency_models, profile_recipe, show_latency_model
from edgekd.pipeline.train import RunResult, build_student, distill, load_teacher, train
from edgekd.pipeline.tune import TuneOptions, TuneResult, tune
from edgekd.results.query import DEFAULT_COLUMNS, ResultsQuery, query_results, select_columns
from edgekd.results.report import Report, build_report, default_report_dir, report_source_for_artifact

__all__ = [
    "Artifact", "BenchOptions", "BenchResult", "CompileOptions", "CompressResult", "Device", "DeviceProbe",
    "DeviceSetup", "HostKey", "ConfigEntry", "Recipe", "RunResult", "StoredDevice", "TargetProfile",
    "add_device", "bench", "build_student", "compile_model", "compress", "default_output_dir", "distill",
    "fetch_host_key", "format_count", "get_device", "list_devices", "list_recipes", "list_targets", "load_recipe",
    "load_target", "load_teacher", "probe_device", "remove_device", "scan_recipes", "scan_targets", "setup_device",
    "train", "trust_host_key",
    "CacheVerify", "clean_device_cache", "verify_device_cache",
    "board_lock",
    "ConfigError", "compress_model", "model_blocks", "parse_baseline", "task_progress",
    "DEFAULT_COLUMNS", "Report", "ResultsQuery", "build_report", "default_report_dir", "query_results",
    "report_source_for_artifact", "select_columns",
    "compile_on_device",
    "ProfileOptions", "list_latency_models", "profile_recipe", "show_latency_model",
    "MeasureOptions", "TuneOptions", "TuneResult", "tune",
]
