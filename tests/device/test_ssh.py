"""Pure-logic tests of the SSH connection's settings (no network; real-sshd tests live in integration/)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from edgekd.device import ssh
from edgekd.device.commands import build_command
from edgekd.device.ssh import Connection, known_hosts_entry, parse_target
from edgekd.errors import ConfigError

CONF = Path(__file__).parent / "ssh_config" / "proxyjump.conf"


class TestBuildCommand:
    def test_every_word_is_quoted(self):
        line = build_command(["echo", "a b", "$(reboot)", "x;rm -rf /"])
        assert shlex.split(line) == ["exec", "echo", "a b", "$(reboot)", "x;rm -rf /"]

    def test_cwd_env_prefix_timeout(self):
        line = build_command(["./r", "--x"], cwd="/d ir", env={"N": "2 3"}, prefix=["qemu", "-L", "/s"], timeout=5)
        assert line.startswith("cd '/d ir' && exec timeout -k 2 5 env 'N=2 3' qemu -L /s ./r --x")

    def test_bad_env_name(self):
        with pytest.raises(ValueError):
            build_command(["x"], env={"A;B": "1"})


class TestSettings:
    def test_defaults(self):
        conn = Connection("10.1.2.3")
        assert (conn.hostname, conn.port, conn.gateway) == ("10.1.2.3", 22, None)

    def test_shorthand(self):
        conn = Connection("pi@10.1.2.3:2200")
        assert (conn.user, conn.hostname, conn.port) == ("pi", "10.1.2.3", 2200)

    def test_shorthand_and_explicit_conflict(self):
        with pytest.raises(ConfigError):
            Connection("pi@10.1.2.3", user="root")

    def test_ssh_config_alias(self):
        conn = Connection("board", ssh_config_path=CONF)
        assert (conn.hostname, conn.port, conn.user) == ("10.0.0.5", 2222, "nvidia")
        assert conn.key_filenames == [str(Path("~/.ssh/tx2_key").expanduser())]
        assert conn.gateway.hostname == "bastion.example" and conn.gateway.user == "ops"

    def test_explicit_beats_ssh_config(self):
        conn = Connection("board", ssh_config_path=CONF, port=22, user="me", key_filename="/k")
        assert (conn.port, conn.user, conn.key_filenames) == (22, "me", ["/k"])

    def test_proxyjump_chain_is_nested(self):
        conn = Connection("chain", ssh_config_path=CONF)
        assert conn.gateway.hostname == "second" and conn.gateway.port == 2200
        assert conn.gateway.gateway.hostname == "first"

    def test_proxyjump_through_itself_refused(self):
        with pytest.raises(ConfigError, match="points at the host itself"):
            Connection("loop", ssh_config_path=CONF)

    def test_real_ssh_config_is_blocked(self):
        assert not ssh.DEFAULT_SSH_CONFIG.exists()


def test_known_hosts_entry():
    assert known_hosts_entry("h", 22) == "h"
    assert known_hosts_entry("127.0.0.1", 2200) == "[127.0.0.1]:2200"


def test_parse_target_bad_port():
    with pytest.raises(ConfigError):
        parse_target("h:abc")
