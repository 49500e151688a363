"""Networks from outside the registry: a user's builder in a file or a package, and timm's zoo.

A model name is one of

* ``path/to/net.py:builder`` — a function (or class) in a Python file; a relative path is relative to the
  working directory (recipes anchor it, see :func:`edgekd.config.recipe.load_recipe`);
* ``package.module:builder`` — the same, from an importable module;
* ``timm:<name>`` — a timm architecture, built without pretrained weights unless the kwargs ask for them.

The builder is called with the recipe's kwargs, plus ``num_classes`` when its signature takes it (or takes
``**kwargs``) and the kwargs do not set it. Whatever goes wrong while finding, importing or calling the
builder is one :class:`~edgekd.errors.ConfigError` line naming the model; the user's own traceback is not
shown (the message quotes the exception's first line).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgekd.errors import ConfigError, first_line

__all__ = ["UserModelRef", "parse_user_ref", "is_user_model", "build_user_model", "check_user_model"]

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class UserModelRef:
    """Where a user's builder lives: ``kind`` is ``file``, ``module`` or ``timm``."""

    text: str
    kind: str
    location: str  # file path, module path, or timm name
    attribute: str = ""

    @property
    def path(self) -> Path:
        return Path(self.location)


def is_user_model(name: str) -> bool:
    """True for ``timm:`` names and ``file.py:builder`` / ``package.module:builder`` references."""
    return parse_user_ref(name) is not None


def parse_user_ref(name: str) -> UserModelRef | None:
    """The reference behind ``name``, or None for a registry or ``tv:`` name."""
    if name.startswith(TIMM_PREFIX):
        return UserModelRef(name, "timm", name[len(TIMM_PREFIX):])
    if name.startswith("tv:") or ":" not in name:
        return None
    location, _, attribute = name.rpartition(":")
    if not location or not attribute.isidentifier():
        raise ConfigError(f"model={name!r}: expected path/to/file.py:builder or package.module:builder")
    is_file = location.endswith(".py") or "/" in location or "\\" in location
    return UserModelRef(name, "file" if is_file else "module", location, attribute)


def anchored(name: str, base: Path) -> str:
    """``name`` with a relative builder file made absolute: relative to the working directory when the file is
    there, else to ``base`` (a recipe's folder). Other names are returned unchanged."""
    try:
        ref = parse_user_ref(name)
    except ConfigError:
        return name  # validation names the recipe file and field
    if ref is None or ref.kind != "file" or ref.path.is_absolute():
        return name
    candidate = ref.path if ref.path.exists() else base / ref.path
    return f"{candidate.resolve()}:{ref.attribute}"


def check_user_model(name: str) -> None:
    """Refuse, in one line, a reference whose builder cannot be found (nothing is built)."""
    ref = parse_user_ref(name)
    if ref is None:
        return
    if ref.kind == "timm":
        _timm_check(ref)
    else:
        _builder(ref)


def build_user_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the user's network; see the module docstring for how ``num_classes`` is passed."""
    ref = parse_user_ref(name)
    if ref is None:
        raise ConfigError(f"model={name!r}: not a user model reference")
    if ref.kind == "timm":
        return _build_timm(ref, num_classes, kwargs)
    builder = _builder(ref)
    if "num_classes" not in kwargs and _accepts(builder, "num_classes"):
        kwargs = {**kwargs, "num_classes": num_classes}
    try:
        model = builder(**kwargs)
    except Exception as err:  # a user's builder may raise anything
        raise ConfigError(f"model={name!r}: the builder raised {_describe(err)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model={name!r}: the builder returned {type(model).__name__}, not a torch nn.Module")
    return model


def _builder(ref: UserModelRef):
    module = _import_file(ref) if ref.kind == "file" else _import_module(ref)
    builder = getattr(module, ref.attribute, None)
    if builder is None or not callable(builder):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        listing = ", ".join(found[:12]) or "none"
        raise ConfigError(f"model={ref.text!r}: {ref.location} has no function {ref.attribute!r} "
                          f"(callables defined there: {listing})")
    return builder


def _import_file(ref: UserModelRef):
    path = ref.path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"model={ref.text!r}: the builder file {ref.location} does not exist")
    # One module per file (by absolute path), registered so that torch.export and pickling can find its classes.
    module_name = f"edgekd_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"model={ref.text!r}: {path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)  # the user's file may import its siblings
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ConfigError(f"model={ref.text!r}: importing {path} raised {_describe(err)}") from None
    return module


def _import_module(ref: UserModelRef):
    try:
        return importlib.import_module(ref.location)
    except ModuleNotFoundError as err:
        raise ConfigError(f"model={ref.text!r}: no module named {err.name!r} (is the package installed, or did "
                          f"you mean a file path such as ./{ref.location.replace('.', '/')}.py:{ref.attribute}?)"
                          ) from None
    except Exception as err:
        raise ConfigError(f"model={ref.text!r}: importing {ref.location} raised {_describe(err)}") from None


def _accepts(builder, parameter: str) -> bool:
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        return False
    return parameter in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("timm is not installed; run scripts/setup.sh (or pip install timm)") from None
    return timm


def _timm_check(ref: UserModelRef) -> None:
    if not _timm().is_model(ref.location):
        raise ConfigError(f"model={ref.text!r}: unknown timm model; see timm.list_models()")


def _build_timm(ref: UserModelRef, num_classes: int, kwargs: dict) -> nn.Module:
    _timm_check(ref)
    kwargs = {"pretrained": False, "num_classes": num_classes, **kwargs}
    try:
        return _timm().create_model(ref.location, **kwargs)
    except Exception as err:  # pretrained=True offline, bad kwargs
        raise ConfigError(f"model={ref.text!r}: timm could not build it: {_describe(err)}") from None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {first_line(err)}" if str(err).strip() else type(err).__name__
