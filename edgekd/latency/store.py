"""Latency models on disk: one JSON file per (device, network family, compile mode) in the user cache.

``<cache>/latency/models/<device>/<network>-<digest>-<mode>.json`` — the digest over the network key (builder,
arguments, input shape). Loading checks the schema version and that the model still describes the board as it
is now: the same TVM runtime and, for a tuned model, the same tuning records (:func:`staleness`); a stale model
is refused in one line, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import ValidationError

from edgekd.atomic import atomic_write_text
from edgekd.compile.tuning import database_dir, read_ledger
from edgekd.errors import ConfigError
from edgekd.latency.model import SCHEMA_VERSION, LatencyModel, NetworkKey
from edgekd.paths import latency_models_dir

__all__ = ["models_dir", "model_path", "save_latency_model", "load_latency_model", "find_latency_model",
           "list_latency_models", "staleness", "tuning_digest", "ledger_digest"]


def models_dir() -> Path:
    return latency_models_dir()


def _network_slug(network: NetworkKey) -> str:
    text = json.dumps({"name": network.name, "kwargs": network.kwargs, "input_shape": network.input_shape},
                      sort_keys=True, default=str)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", network.name).strip("-")[:48] or "network"
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def model_path(device: str, network: NetworkKey, mode: str) -> Path:
    return models_dir() / device / f"{_network_slug(network)}-{mode}.json"


def tuning_digest(directory: Path, tasks: list[str] | None = None) -> str | None:
    """sha256 over the records a tuned model was measured with: with ``tasks`` (ledger keys,
    :func:`edgekd.compile.tuning.task_key`), over their ledger entries — a task's records change only when its
    trials do, so tuning other networks into the same database leaves the model valid; without, over the whole
    database directory's record files. None when there is nothing."""
    if tasks:
        return ledger_digest(read_ledger(directory), tasks)
    files = sorted(p for p in directory.glob("*.json") if p.is_file()) if directory.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ledger_digest(ledger: dict[str, dict], tasks: list[str]) -> str:
    """sha256 over the ledger entries of ``tasks`` (order-free): what a tuned measurement of them depends on."""
    return hashlib.sha256(json.dumps([[key, ledger.get(key)] for key in sorted(tasks)]).encode()).hexdigest()


def save_latency_model(model: LatencyModel) -> Path:
    path = model_path(model.provenance.device, model.network, model.provenance.mode)
    atomic_write_text(path, model.model_dump_json(indent=1))
    return path


def _read(path: Path) -> LatencyModel:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable latency model ({type(err).__name__}); profile again") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{path}: latency model schema {version!r}, this edgekd reads {SCHEMA_VERSION}; "
                          "profile the board again (edgekd latency profile)")
    try:
        return LatencyModel.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}; profile the board again") from None


def staleness(model: LatencyModel, runtime: dict[str, str]) -> str | None:
    """Why ``model`` no longer describes the board (None when it still does): another TVM runtime, or — tuned —
    tuning records that changed since it was measured."""
    measured = model.provenance.runtime
    if measured.get("pipeline") != runtime.get("pipeline") and measured.get("tvm") == runtime.get("tvm"):
        return (f"measured with edgekd's compile pipeline {measured.get('pipeline', '1')}, this edgekd compiles with "
                f"{runtime.get('pipeline')}")
    if measured != runtime:
        return f"measured with TVM {measured.get('tvm')}, this host has {runtime.get('tvm')}"
    if model.provenance.mode == "tuned":
        directory = Path(model.provenance.records or database_dir(model.provenance.target))
        if tuning_digest(directory, model.provenance.tuned_tasks) != model.provenance.tuning_digest:
            return f"the tuning records of its kernels in {directory} changed since it was measured"
    return None


def find_latency_model(device: str, network: NetworkKey, mode: str = "untuned") -> LatencyModel | None:
    path = model_path(device, network, mode)
    return _read(path) if path.is_file() else None


def load_latency_model(device: str, network: NetworkKey, mode: str = "untuned", *,
                       runtime: dict[str, str]) -> LatencyModel:
    """The model of ``network`` on ``device`` in ``mode``; one-line ConfigError when there is none or it is stale."""
    model = find_latency_model(device, network, mode)
    command = f"`edgekd latency profile --device {device} --recipe {network.recipe or 'RECIPE'} --mode {mode}`"
    if model is None:
        raise ConfigError(f"no {mode} latency model of {network.name} on device {device}; measure one with {command}")
    why = staleness(model, runtime)
    if why is not None:
        raise ConfigError(f"the {mode} latency model of {network.name} on {device} is stale ({why}); profile "
                          f"again with {command}")
    return model


def list_latency_models(device: str | None = None) -> list[tuple[Path, LatencyModel]]:
    """Every readable model (of ``device`` when given), oldest first; unreadable files are skipped."""
    root = models_dir() / device if device else models_dir()
    found = []
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            found.append((path, _read(path)))
        except ConfigError:
            continue
    return sorted(found, key=lambda item: item[1].provenance.created)
