"""A name-to-builder registry (timm-style, but an instance: tests can build their own).

``create_model(name, **kwargs)`` is the only way in. Unknown names raise a ConfigError that lists
the valid ones; registering a name twice is an error, not a silent overwrite.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from edgekd.errors import ConfigError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture."""

    name: str
    builder: Builder
    input_size: tuple[int, int, int] | None  # C, H, W the model is designed for (None: unknown)
    family: str
    description: str = ""


@dataclass
class ModelRegistry:
    """Maps names to builders. Names are lower-case; lookups are exact."""

    _models: dict[str, ModelInfo] = field(default_factory=dict)

    def register(
        self, name: str, *, input_size: tuple[int, int, int], family: str, description: str = ""
    ) -> Callable[[Builder], Builder]:
        def decorator(builder: Builder) -> Builder:
            if name in self._models:
                raise ValueError(f"model {name!r} is already registered")
            self._models[name] = ModelInfo(name, builder, input_size, family, description)
            return builder

        return decorator

    def info(self, name: str) -> ModelInfo:
        if name not in self._models:
            raise ConfigError(f"model={name!r}: unknown model; {self._suggest(name)}")
        return self._models[name]

    def create(self, name: str, **kwargs) -> nn.Module:
        return self.info(name).builder(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._models)

    def _suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._models, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return (f"{hint}accepted: {', '.join(self.names())} (or tv:<torchvision name>, timm:<timm name>, "
                "path/to/net.py:builder, package.module:builder)")
