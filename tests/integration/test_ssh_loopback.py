"""The SSH connection against a real OpenSSH server on loopback: commands, host keys, auth, ProxyJump."""

from __future__ import annotations

import os

import pytest

from edgekd.cli import main
from edgekd.config.devices import DeviceStore
from edgekd.device import connect
from edgekd.device.ssh import Connection
from edgekd.errors import DeviceError
from edgekd.testing.boards import Sshd, keygen


def test_run_quotes_every_word(x86_board):
    with connect(x86_board) as conn:
        result = conn.run(["printf", "%s|", "a b", "$HOME", "`id`", "x;y"])
        assert result.ok and result.stdout == "a b|$HOME|`id`|x;y|"
        assert conn.client.get_transport().packetizer._Packetizer__keepalive_interval == 15


def test_nonzero_exit_is_returned_not_raised(x86_board):
    with connect(x86_board) as conn:
        result = conn.run(["sh", "-c", "echo boom >&2; exit 7"])
        assert (result.exit_code, result.last_error_line()) == (7, "boom")


def test_timeout_kills_on_the_board(x86_board):
    duration = f"{30 + os.getpid() % 1000 / 1000:.3f}"  # a command line no other process on this machine has
    with connect(x86_board) as conn:
        result = conn.run(["sleep", duration], timeout=0.5)
        # returned before the command could have finished on its own (a logical bound, not a speed one)
        assert result.timed_out and result.seconds < float(duration)
        alive = conn.run(["ps", "-eo", "args"]).stdout.splitlines()
        assert f"sleep {duration}" not in [line.strip() for line in alive]


def test_unknown_host_key_refused(make_device, sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    device = make_device(sshd, "nokey", known_hosts=empty)
    with pytest.raises(DeviceError, match=r"unknown host key .* run `edgekd device trust nokey`"):
        connect(device).open()


def test_changed_host_key_refused(make_device, sshd, tmp_path):
    other = Sshd(tmp_path / "other", keygen(tmp_path / "k2"))  # a different host key, never started
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(other.known_hosts_line().replace(f"]:{other.port} ", f"]:{sshd.port} "))
    device = make_device(sshd, "changed", known_hosts=wrong)
    with pytest.raises(DeviceError, match=r"host key for .* has CHANGED .*edgekd device trust changed"):
        connect(device).open()


def test_authentication_failure(make_device, sshd, tmp_path):
    device = make_device(sshd, "badkey", key=keygen(tmp_path / "stranger"))
    with pytest.raises(DeviceError, match="authentication failed for root@127.0.0.1"):
        connect(device).open()


def test_unreachable(make_device, sshd):
    from edgekd.testing.boards import free_port

    device = make_device(sshd, "gone", port=free_port())
    with pytest.raises(DeviceError, match="cannot reach"):
        connect(device, connect_timeout=2).open()


def test_trust_records_fingerprint_then_connects(make_device, sshd, tmp_path, capsys):
    known = tmp_path / "cfg_known_hosts"
    device = make_device(sshd, "fresh", known_hosts=known)
    DeviceStore().add(device)
    with pytest.raises(DeviceError):
        connect(device).open()
    assert main(["device", "trust", "fresh", "--yes"]) == 0
    assert "SHA256:" in capsys.readouterr().out
    with connect(device) as conn:
        assert conn.run(["true"]).ok


def test_trust_expect_mismatch_records_nothing(make_device, sshd, tmp_path, capsys):
    known = tmp_path / "kh2"
    DeviceStore().add(make_device(sshd, "fp", known_hosts=known))
    assert main(["device", "trust", "fp", "--expect", "SHA256:nope"]) == 2
    assert "fingerprint mismatch" in capsys.readouterr().err and not known.exists()


def test_proxyjump_through_a_second_sshd(tmp_path, user_key, sshd):
    jump = Sshd(tmp_path / "jump", user_key).start()
    try:
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host jumpbox\n  HostName 127.0.0.1\n  Port {jump.port}\n  User root\n  IdentityFile {user_key}\n"
            f"Host board\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n  IdentityFile {user_key}\n"
            "  ProxyJump jumpbox\n"
        )
        known = tmp_path / "kh"
        known.write_text(jump.known_hosts_line() + sshd.known_hosts_line())
        with Connection("board", ssh_config_path=config, known_hosts=known) as conn:
            assert conn.gateway is not None and conn.gateway.port == jump.port
            assert conn.run(["echo", "via jump"]).stdout == "via jump\n"
        assert "direct-tcpip" in jump.log.read_text() or "Accepted publickey" in jump.log.read_text()
    finally:
        jump.stop()
