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
import shutil
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
        self.proc = subprocess.Popen([*_clean_login_prefix(), SSHD, "-D", "-e", "-f", str(config)],
                                     stderr=self.log_handle)
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


def _clean_login_prefix() -> list[str]:
    """A command prefix that runs sshd in a private mount namespace where the login user's ``~/.bashrc`` is
    empty, so that the board is a clean board: bash sources ``~/.bashrc`` for every command sshd runs, and a
    developer's rc file (pyenv's ``init`` takes a lock for its rehash: a session killed by a fault test leaves
    it stale, and every later login waits 60 s) must not slow or change the test board. ``[]`` where mount
    namespaces are not allowed (the board then runs the rc file as a real board would)."""
    import pwd

    bashrc = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".bashrc"
    unshare = shutil.which("unshare")
    if not bashrc.is_file() or unshare is None:
        return []
    probe = subprocess.run([unshare, "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return []
    script = 'mount --bind /dev/null "$1" 2>/dev/null; shift; exec "$@"'
    return [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh", str(bashrc)]


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
within = sys.argv[6]  # only processes whose working directory is below this count ("" = any)
me = os.getpid()
def busy_now():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker in fh.read() and os.readlink(f"/proc/{pid}/cwd").startswith(within):
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
    """An INA3221-like sysfs directory whose power follows whether ``marker`` is running — in a working
    directory below ``within`` when given (a board cache), so that other benches on this machine don't count."""

    def __init__(self, directory: Path, *, marker: str = "edgekd-runner", idle_mw: int = 1200,
                 busy_mw: int = 3400, period_s: float = 0.005, rail: str = "VDD_IN", within: str = "") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rail_name_0").write_text(f"{rail}\n")
        (self.dir / "in_power0_input").write_text(f"{idle_mw}\n")
        self.args = [sys.executable, "-c", _HELPER, str(self.dir), marker, str(idle_mw), str(busy_mw), str(period_s),
                     within]
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeSensor:
        self.proc = subprocess.Popen(self.args)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


STAND_IN_RUNNER = r"""#!/bin/sh
# A stand-in edgekd-runner (shell): honours --output-file, prints the runner's JSON contract.
# MODE (baked in): ok | crash | hang. Used where a test is about transport, timeouts or crashes.
MODE=@MODE@
out=""
while [ $# -gt 0 ]; do
  case $1 in --output-file) out=$2; shift ;; esac
  shift
done
[ "$MODE" = crash ] && { echo "edgekd-runner: model.so: cannot load: simulated crash" >&2; exit 3; }
[ "$MODE" = hang ] && { sleep 1000; exit 0; }
start=$(date +%s.%N)
sleep @SECONDS@
end=$(date +%s.%N)
cp reference_output.bin "$out"
cat <<JSON
{"runner_version": "stand-in", "tvm_runtime": "none", "threads": 1, "affinity": [0],
 "init_ms": 1.0, "first_inference_ms": 2.0, "warmup_runs": 1, "runs": @RUNS@,
 "latency_ms": {"mean": @LAT@, "std": 0.0, "min": @LAT@, "p50": @LAT@, "p90": @LAT@, "p95": @LAT@, "p99": @LAT@,
                "max": @LAT@},
 "rss_kb": {"before_load": 1000, "after_load": 2000, "peak": 3000},
 "output": {"shape": [1, 10], "file": "out.bin"},
 "timestamps": {"timed_start_unix": $start, "timed_end_unix": $end}}
JSON
"""


def stand_in_artifact(directory: Path, *, mode: str = "ok", seconds: float = 0.2, runs: int = 10,
                      arch: str = "x86_64", target: str = "host", payload_bytes: int = 0) -> Path:
    """A manifest-conformant artifact whose runner is a shell script (transport/fault tests only)."""
    import json

    import numpy as np

    from edgekd.compile.artifact import hash_files

    directory.mkdir(parents=True, exist_ok=True)
    script = (STAND_IN_RUNNER.replace("@MODE@", mode).replace("@SECONDS@", str(seconds))
              .replace("@RUNS@", str(runs)).replace("@LAT@", f"{seconds * 1000 / runs:.6f}"))
    runner = directory / "edgekd-runner"
    runner.write_text(script)
    runner.chmod(0o755)
    rng = np.random.default_rng(0)
    rng.standard_normal(3 * 32 * 32).astype(np.float32).tofile(directory / "input.bin")
    rng.standard_normal(10).astype(np.float32).tofile(directory / "reference_output.bin")
    (directory / "model.so").write_bytes(os.urandom(max(payload_bytes, 64)))
    (directory / "lib").mkdir(exist_ok=True)
    (directory / "lib" / "libtvm_runtime.so").write_bytes(b"stand-in runtime " + mode.encode())
    manifest = {
        "schema_version": 1,
        "model": {"name": "stand-in", "source": "test"},
        "target": {"name": target, "arch": arch, "glibc_floor": None, "tvm_target": {"kind": "llvm"}},
        "input": {"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32", "file": "input.bin"},
        "output": {"shape": [1, 10], "dtype": "float32", "file": "reference_output.bin"},
        "library": "model.so", "runner": "edgekd-runner", "runtime_libs": ["lib/libtvm_runtime.so"],
        "onnx": None, "versions": {"edgekd": "test"}, "files": hash_files(directory),
        "created": "2026-01-01T00:00:00Z",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def cache_is_clean(cache_dir: Path) -> list[str]:
    """Problems in a board cache: temporaries left over, or entries whose content is not their name."""
    from edgekd.atomic import sha256_file

    problems = []
    if not cache_dir.exists():
        return problems
    for path in cache_dir.iterdir():
        if path.name.startswith(".tmp-") or path.name.startswith(".run-"):
            problems.append(f"leftover {path.name}")
        elif path.is_file() and len(path.name) == 64 and sha256_file(path) != path.name:
            problems.append(f"corrupt {path.name}")
    return problems


def loopback_board(work: Path, name: str = "loopback"):
    """A started loopback sshd (this host as a board: real timings) and the trusted ``Device`` that reaches it,
    with its key, known_hosts and board cache under ``work``. The caller stops the sshd (``server.stop()``)."""
    from edgekd.config.devices import Device

    work.mkdir(parents=True, exist_ok=True)
    key = work / "id" if (work / "id").exists() else keygen(work / "id")
    server = Sshd(work / "sshd", key).start()
    (work / "known_hosts").write_text(server.known_hosts_line())
    device = Device(name=name, target="host", host="127.0.0.1", port=server.port, user="root", key=key,
                    known_hosts=work / "known_hosts", cache_dir=str(work / "cache"))
    return server, device
