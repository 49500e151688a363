"""Shared YAML loading and pydantic validation with one-line, file-and-field error messages.

Every config schema (recipe, target profile, device entry) goes through :func:`load_yaml` and
:func:`validate`, so a bad file always fails the same way::

    recipes/mbv2.yaml: training.epochs=-1: Input should be greater than or equal to 0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)
ConfigT = TypeVar("ConfigT")


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a parse error or a non-mapping is a ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: <yaml>=malformed{where}: {problem}; expected a YAML mapping") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: <root>={type(data).__name__}: expected a YAML mapping of fields")
    return data


def _lookup(data: Any, loc: tuple) -> Any:
    for key in loc:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return data


def validate(schema: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate ``data`` against ``schema``; the first error becomes one line naming file, field and value."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
        field = ".".join(str(part) for part in loc) or "<root>"
        value = first.get("input", _lookup(data, loc))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown field; accepted: {', '.join(_field_names(schema, loc[:-1]))}"
        elif first["type"] == "missing":
            value = "<missing>"
            message = "required field"
        raise ConfigError(f"{source}: {field}={_short(value)}: {message}") from None


def _field_names(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The accepted field names of the sub-model at ``loc`` (best effort for the error message)."""
    model: Any = schema
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return sorted(getattr(model, "model_fields", {}) or [])
        model = _inner_model(fields[part].annotation)
    return sorted(getattr(model, "model_fields", {}) or [])


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_named(name_or_path: str, search_dirs: list[Path], kind: str) -> Path:
    """Resolve a config by path, or by bare name (``NAME.yaml``) in ``search_dirs`` (first match wins)."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: file not found")
        return candidate
    for directory in search_dirs:
        for suffix in (".yaml", ".yml"):
            path = directory / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    available = list(named_files(search_dirs))
    raise ConfigError(
        f"{kind} {name_or_path!r}: not found in {', '.join(str(d) for d in search_dirs)}; "
        f"available: {', '.join(available) or '(none)'}"
    )


def named_files(search_dirs: list[Path]) -> dict[str, Path]:
    """Every ``NAME.yaml`` / ``NAME.yml`` in ``search_dirs``, by name (sorted); the first directory holding a
    name wins, as in :func:`resolve_named`."""
    found: dict[str, Path] = {}
    for directory in search_dirs:
        for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
            if path.suffix in {".yaml", ".yml"}:
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class ConfigEntry(Generic[ConfigT]):
    """One config file found by :func:`scan_named`: the loaded value, or the one-line reason it does not load."""

    name: str
    path: Path
    value: ConfigT | None = None
    error: str | None = None


def scan_named(search_dirs: list[Path], load: Callable[[Path], ConfigT]) -> list[ConfigEntry[ConfigT]]:
    """Every file of :func:`named_files`, loaded with ``load``; an invalid one is an entry with its error, so one
    bad user file never hides the others (a user file still hides a shipped one of its name, valid or not:
    that is what loading the name would use)."""
    entries = []
    for name, path in named_files(search_dirs).items():
        try:
            entries.append(ConfigEntry(name, path, value=load(path)))
        except ConfigError as err:
            entries.append(ConfigEntry(name, path, error=str(err)))
    return entries
