"""The one exception family edgekd raises for bad input and failed environments.

Every user-facing failure is an :class:`EdgekdError` whose ``str`` is a single actionable line.
The CLI prints that line to stderr and exits with :attr:`EdgekdError.exit_code` — never a
traceback. Library users catch the subclasses they care about.
"""

from __future__ import annotations


class EdgekdError(Exception):
    """Base class: a one-line, user-facing message and a process exit code."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the caller built


class ConfigError(EdgekdError):
    """An invalid recipe, target, device entry or override. The message names file and field."""

    @classmethod
    def at(cls, source: str, field: str, value: object, accepted: str) -> ConfigError:
        """Build the canonical '<file>: <field>=<value>: <what is accepted>' message."""
        return cls(f"{source}: {field}={value!r}: {accepted}")


class DataError(EdgekdError):
    """A dataset that cannot be found or read."""


class CheckpointError(EdgekdError):
    """A checkpoint or run directory that is missing, corrupt or from an incompatible schema."""


class ToolchainError(EdgekdError):
    """A cross compiler, NDK, or TVM facility that is missing or failed."""


class CompileError(EdgekdError):
    """TVM could not import, compile or export a model."""


class DeviceError(EdgekdError):
    """An SSH device that is unreachable, untrusted, misconfigured, or whose runner failed."""


class StructureError(EdgekdError):
    """A network whose channel structure edgekd cannot trace or prune: names the module path and the op."""


class PruningError(StructureError):
    """The physically pruned network does not compute what the masked one did: names the first module whose
    output differs and by how much."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``str(err)``, stripped; the exception's type name when it has no text.

    For quoting a foreign exception (torch, TVM, a user's code) inside a one-line :class:`EdgekdError`."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
