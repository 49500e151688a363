"""Real test boards on loopback: an OpenSSH server of our own and a fake power sensor.

* :class:`Sshd` runs ``/usr/sbin/sshd -D -e -f CONFIG`` on 127.0.0.1:<free port> with a generated
  ed25519 host key and one authorized ed25519 user key; SFTP is ``internal-sftp -l INFO`` so the log
  shows every file opened for writing (tests use it to observe uploads).
* :class:`FakeSensor` lays out an INA3221 ``iio:device`` directory (``rail_name_0``,
  ``in_power0_input`` in mW) and runs a helper process that writes ``busy_mw`` while a process whose
  command line contains ``marker`` exists, else ``idle_mw``. The real sensor code reads those files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> Path:
    """A fresh passphrase-less ed25519 key pair at ``path`` / ``path.pub``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class Sshd:
    """One sshd on loopback. ``start()`` waits for the banner; ``stop()`` kills it by PID."""

    def __init__(self, workdir: Path, user_key: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        if not self.host_key.exists():
            keygen(self.host_key)
        (self.dir / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "PermitRootLogin yes",
                    "AllowTcpForwarding yes",
                    "LogLevel VERBOSE",
                    "Subsystem sftp internal-sftp -l INFO",
                    "",
                ]
            )
        )
        return config

    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        self.log_handle = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=self.log_handle)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def kill_all(self) -> None:
        """Kill the listener and every session it forked (an 'sshd died' fault)."""
        if self.proc is None:
            return
        children = _descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def stop(self) -> None:
        self.kill_all()
        if getattr(self, "log_handle", None):
            self.log_handle.close()

    def known_hosts_line(self) -> str:
        kind, b64 = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"

    def sftp_writes(self) -> list[str]:
        """The paths internal-sftp opened for writing so far (from the log)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if " open " in line and "WRITE" in line]


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


_HELPER = r"""
import os, sys, time
directory, marker, idle, busy, period = sys.argv[1], sys.argv[2].encode(), sys.argv[3], sys.argv[4], float(sys.argv[5])
me = os.getpid()
def busy_now():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker in fh.read():
                    return True
        except OSError:
            pass
    return False
target = os.path.join(directory, "in_power0_input")
while True:
    value = busy if busy_now() else idle
    tmp = target + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, target)
    time.sleep(period)
"""


class FakeSensor:
    """An INA3221-like sysfs directory whose power follows whether ``marker`` is running."""

    def __init__(self, directory: Path, *, marker: str = "edgekd-runner", idle_mw: int = 1200,
                 busy_mw: int = 3400, period_s: float = 0.005, rail: str = "VDD_IN") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rail_name_0").write_text(f"{rail}\n")
        (self.dir / "in_power0_input").write_text(f"{idle_mw}\n")
        self.args = [sys.executable, "-c", _HELPER, str(self.dir), marker, str(idle_mw), str(busy_mw), str(period_s)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeSensor:
        self.proc = subprocess.Popen(self.args)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
