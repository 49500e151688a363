"""SSH faults against real loopback sshd servers (issue 14): a frozen board, a missing key, a dropped
connection, and ProxyJump (trusting a chain, cycles, ProxyCommand, IdentitiesOnly). No mocks.

A "frozen board" is the sshd session serving our connection stopped with SIGSTOP (the listening daemon
keeps running); every test resumes and kills what it froze.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgekd.cli import main
from edgekd.config.devices import Device, DeviceStore
from edgekd.device import connect, ssh
from edgekd.device.manage import fetch_host_key, trust_host_key
from edgekd.device.ssh import Connection
from edgekd.errors import ConfigError, DeviceError
from edgekd.testing.boards import Sshd, _descendants, keygen, stand_in_artifact

DEADLINE = 2.0
MARGIN = 3.0


@contextlib.contextmanager
def frozen(server: Sshd):
    """SIGSTOP every process the sshd forked (the sessions), never the listener; then SIGCONT + SIGKILL."""
    pids = _descendants(server.proc.pid)
    assert pids, "no sshd session to freeze"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a short-lived helper may be gone already
            os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)


def ends_within(seconds: float, fn) -> BaseException | None:
    """Run ``fn`` in a thread; fail unless it ends within ``seconds``; return what it raised."""
    outcome: dict = {}

    def target():
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome["err"] = err
        outcome["done"] = True

    thread = threading.Thread(target=target, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert outcome.get("done"), f"still blocked after {time.monotonic() - start:.1f} s (no deadline)"
    return outcome.get("err")


def _freeze_when_created(server: Sshd, path: Path, stack: contextlib.ExitStack) -> threading.Thread:
    """Freeze the session as soon as the upload's remote file exists (the transfer has begun)."""

    def watch():
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.0005)
        stack.enter_context(frozen(server))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("when", ["mid-upload", "sftp-open", "before-sftp", "run"])
def test_frozen_board_ends_in_one_line(fresh_sshd, make_device, tmp_path, when):
    payload = tmp_path / "model.so"
    payload.write_bytes(os.urandom(64 << 20))  # far more than the channel window: the upload is mid-transfer
    remote = tmp_path / "up.so"
    conn = connect(make_device(fresh_sshd, "frozen"), connect_timeout=DEADLINE)
    conn.open()
    if when in ("sftp-open", "mid-upload"):
        conn.sftp.listdir(".")
    try:
        with contextlib.ExitStack() as stack:
            if when == "mid-upload":
                watcher = _freeze_when_created(fresh_sshd, remote, stack)
            else:
                stack.enter_context(frozen(fresh_sshd))
            if when == "run":
                err = ends_within(DEADLINE + MARGIN, lambda: conn.run(["true"]))
            else:
                err = ends_within(DEADLINE + MARGIN, lambda: conn.put(payload, str(remote)))
            if when == "mid-upload":
                watcher.join(5)
                assert remote.stat().st_size < payload.stat().st_size, "the upload finished before the freeze"
    finally:
        conn.close()
    assert isinstance(err, DeviceError), repr(err)
    message = str(err)
    assert "\n" not in message and "board frozen: no answer for 2 s during" in message
    assert ("start of true" if when == "run" else "upload of model.so") in message
    assert "check the board / network" in message


def test_frozen_board_during_a_command_without_timeout(fresh_sshd, make_device):
    """Keepalives must be answered: a board frozen while a command runs ends it (no command timeout here)."""
    conn = connect(make_device(fresh_sshd, "frozen"), connect_timeout=DEADLINE)
    conn.keepalive = 1
    conn.open()
    outcome: dict = {}

    def command():
        try:
            conn.run(["sleep", "61"], timeout=None)
        except DeviceError as err:
            outcome["err"] = err

    thread = threading.Thread(target=command, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "sleep 61" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.05)
        with frozen(fresh_sshd):  # the sleep is a descendant too: it stops as well
            thread.join(1 + DEADLINE + MARGIN)
            assert not thread.is_alive(), "still waiting on a frozen board"
    finally:
        conn.close()
    err = outcome.get("err")
    assert isinstance(err, DeviceError), repr(err)
    assert "board frozen: no answer for 2 s during run of sleep" in str(err)


def test_missing_key_is_not_an_unreachable_board(sshd, make_device, tmp_path):
    with pytest.raises(DeviceError, match=r"key file .*nope does not exist") as info:
        connect(make_device(sshd, "nokey", key=tmp_path / "nope")).open()
    assert "cannot reach" not in str(info.value)


def test_missing_identity_file_from_ssh_config(sshd, make_device, tmp_path):
    ssh.DEFAULT_SSH_CONFIG.write_text(f"Host b\n  HostName 127.0.0.1\n  IdentityFile {tmp_path / 'gone'}\n")
    with pytest.raises(DeviceError, match=r"IdentityFile .*gone does not exist") as info:
        connect(make_device(sshd, "cfgkey", host="b", key=None)).open()
    assert "cannot reach" not in str(info.value)


def test_reopened_connection_gets_a_fresh_sftp(fresh_sshd, make_device, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 100)
    with connect(make_device(fresh_sshd, "drop")) as conn:
        assert conn.sftp.listdir(str(tmp_path))
        for pid in _descendants(fresh_sshd.proc.pid):  # the session dies, the listener stays
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while conn.is_connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not conn.is_connected
        conn.put(small, str(tmp_path / "again.bin"))
    assert (tmp_path / "again.bin").read_bytes() == small.read_bytes()


# ---------------------------------------------------------------- ProxyJump
@pytest.fixture
def jump(tmp_path, user_key):
    server = Sshd(tmp_path / "jump", user_key).start()
    yield server
    server.stop()


def _chain_config(jump: Sshd, board: Sshd, user_key: Path) -> None:
    ssh.DEFAULT_SSH_CONFIG.write_text(
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {jump.port}\n  User root\n  IdentityFile {user_key}\n"
        f"Host board\n  HostName 127.0.0.1\n  Port {board.port}\n  User root\n  IdentityFile {user_key}\n"
        "  ProxyJump jumpbox\n"
    )


def test_trust_walks_the_proxyjump_chain(jump, sshd, user_key, tmp_path):
    _chain_config(jump, sshd, user_key)
    known = tmp_path / "chain_known_hosts"
    device = Device(name="behind", target="host", host="board", known_hosts=known)
    DeviceStore().add(device)
    first = fetch_host_key("behind")
    assert first.address == f"127.0.0.1:{jump.port}" and first.jump
    trust_host_key(first)
    second = first.fetch_next()
    assert second.address == f"127.0.0.1:{sshd.port}" and not second.jump
    trust_host_key(second)
    assert second.fetch_next() is None
    assert known.read_text() == jump.known_hosts_line() + sshd.known_hosts_line()
    with connect(device) as conn:
        assert conn.run(["echo", "behind the jump"]).stdout == "behind the jump\n"


def test_cli_trust_shows_the_jump_host_first(jump, sshd, user_key, tmp_path, capsys):
    _chain_config(jump, sshd, user_key)
    DeviceStore().add(Device(name="behind", target="host", host="board", known_hosts=tmp_path / "kh"))
    assert main(["device", "trust", "behind", "--yes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out if "SHA256:" in line][-2:] == [
        f"127.0.0.1:{jump.port}", f"127.0.0.1:{sshd.port}"]
    # the board behind the jump host then benches, through the CLI, with no other device added
    artifact = stand_in_artifact(tmp_path / "artifact")
    results = tmp_path / "behind-results.jsonl"
    assert main(["bench", str(artifact), "--device", "behind", "--runs", "5", "--min-seconds", "0",
                 "--warmup-seconds", "0", "--idle-seconds", "0", "--results", str(results), "--json"]) == 0
    row = json.loads(results.read_text().splitlines()[-1])
    assert row["device"] == "behind" and row["top1_agree"] == 1.0


def test_proxyjump_cycle_is_one_config_error():
    ssh.DEFAULT_SSH_CONFIG.write_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ConfigError, match=r"ProxyJump cycle: a -> b -> a"):
        Connection("a")


def test_proxycommand_is_refused_in_one_line():
    ssh.DEFAULT_SSH_CONFIG.write_text("Host pc\n  ProxyCommand nc %h %p\n")
    with pytest.raises(ConfigError, match=r"ProxyCommand .* not supported"):
        Connection("pc")


def test_identities_only_skips_the_agent(sshd, user_key, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(user_key)], check=True, capture_output=True)
        stranger = keygen(tmp_path / "stranger")
        known = tmp_path / "kh"
        known.write_text(sshd.known_hosts_line())
        base = f"Host b\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n  IdentityFile {stranger}\n"
        ssh.DEFAULT_SSH_CONFIG.write_text(base)
        with Connection("b", known_hosts=known) as conn:  # the agent's key gets in
            assert conn.run(["true"]).ok
        ssh.DEFAULT_SSH_CONFIG.write_text(base + "  IdentitiesOnly yes\n")
        with pytest.raises(DeviceError, match="authentication failed"):
            Connection("b", known_hosts=known).open()
    finally:
        agent.kill()
        agent.wait()
