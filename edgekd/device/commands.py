"""What every connection (SSH or local) shares without SSH: the quoted command line and its result."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

KILL_GRACE_S = 2  # `timeout -k`: seconds between TERM and KILL

__all__ = ["KILL_GRACE_S", "Result", "build_command"]


@dataclass(frozen=True)
class Result:
    """A finished command: exit code, captured output, wall seconds and whether it was killed at its timeout."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def last_error_line(self) -> str:
        """The last non-empty stderr line (what a one-line error should show)."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else "(no stderr)"


def build_command(
    cmd: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float | None = None,
) -> str:
    """One POSIX shell line from a word list; every word (including cwd and env values) is quoted.

    The command is wrapped as ``[cd CWD &&] exec [timeout -k G T] [env K=V ...] [PREFIX ...] CMD ...``
    so a hung program is killed on the board at its timeout, not only abandoned by the host.
    """
    if not cmd:
        raise ValueError("empty command")
    words: list[str] = []
    if timeout is not None:
        words += ["timeout", "-k", str(KILL_GRACE_S), f"{max(timeout, 0.1):g}"]
    if env:
        for key in env:
            if not key.isidentifier():
                raise ValueError(f"bad environment variable name {key!r}")
        words += ["env", *[f"{key}={value}" for key, value in env.items()]]
    words += [*prefix, *cmd]
    line = "exec " + " ".join(shlex.quote(str(word)) for word in words)
    return f"cd {shlex.quote(cwd)} && {line}" if cwd else line
