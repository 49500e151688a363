"""The built-in ``local`` device: the :class:`~edgekd.device.ssh.Connection` interface over subprocesses.

Same ``run``/``check``/``spawn``/``put``/``get`` as the SSH connection, so the cache, probe, sensor
and bench code has one path. Commands still go through ``sh -c`` with every word quoted, and a
timed-out command's whole process group is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgekd.device.commands import Result, build_command
from edgekd.errors import DeviceError


class LocalProcess:
    """A background subprocess (e.g. the local power sampler); :meth:`stop` returns its stdout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self._out: list[bytes] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while data := os.read(self._proc.stdout.fileno(), 65536):
            self._out.append(data)

    def peek(self) -> str:
        """What the process printed so far."""
        return b"".join(self._out).decode(errors="replace")

    def finished(self) -> bool:
        """True once its output ended."""
        return not self._thread.is_alive()

    def stop(self) -> str:
        """Terminate the process group and return what it printed."""
        _kill_group(self._proc)
        self._thread.join(timeout=5)
        return b"".join(self._out).decode(errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class LocalConnection:
    """Run on the host itself. ``open``/``close`` are no-ops; it is a context manager like Connection."""

    is_local = True
    label = "local"
    name = "local"

    def __init__(self, exec_prefix: Sequence[str] = ()) -> None:
        self.exec_prefix = list(exec_prefix)

    def open(self) -> LocalConnection:
        return self

    def close(self) -> None:
        return None

    def __enter__(self) -> LocalConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(
        self,
        cmd: Sequence[str],
        *,
        timeout: float | None = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        prefixed: bool = False,
    ) -> Result:
        """Run ``cmd`` (quoted into one ``sh -c`` line, as on a board) and wait; see ``Connection.run``."""
        line = build_command(cmd, cwd=cwd, env=env, prefix=self.exec_prefix if prefixed else ())
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["sh", "-c", line], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            cwd=os.path.expanduser("~"),
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            timed_out = True
        seconds = time.perf_counter() - start
        code = -9 if timed_out else proc.returncode
        return Result(line, code, out.decode(errors="replace"), err.decode(errors="replace"), seconds, timed_out)

    def check(self, cmd: Sequence[str], *, what: str, **kwargs) -> Result:
        """:meth:`run` that raises a one-line DeviceError on failure."""
        result = self.run(cmd, **kwargs)
        if not result.ok:
            reason = "timed out" if result.timed_out else f"exit {result.exit_code}: {result.last_error_line()}"
            raise DeviceError(f"{what} failed on local ({reason})")
        return result

    def spawn(self, cmd: Sequence[str]) -> LocalProcess:
        """Start ``cmd`` in the background."""
        proc = subprocess.Popen(
            ["sh", "-c", build_command(cmd)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, cwd=os.path.expanduser("~"),
        )
        return LocalProcess(proc)

    def _path(self, path: str) -> Path:
        return Path(os.path.expanduser("~"), path) if not os.path.isabs(path) else Path(path)

    def put(self, local: str | os.PathLike, remote: str) -> None:
        """Copy a file (relative destinations are under $HOME, as over SSH)."""
        try:
            shutil.copyfile(local, self._path(remote))
        except OSError as err:
            raise DeviceError(f"copy of {Path(local).name} to {remote} failed: {err.strerror or err}") from None

    def get(self, remote: str, local: str | os.PathLike) -> None:
        """Copy a file back."""
        try:
            shutil.copyfile(self._path(remote), local)
        except OSError as err:
            raise DeviceError(f"copy of {remote} failed: {err.strerror or err}") from None
