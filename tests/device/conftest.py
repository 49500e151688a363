"""Unit-test isolation: never read the real ~/.ssh/config, user devices or an ssh-agent."""

from __future__ import annotations

import pytest

from edgekd.device import ssh


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh, "DEFAULT_SSH_CONFIG", tmp_path / "no-ssh-config")
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EDGEKD_DEVICES", str(tmp_path / "config" / "devices.yaml"))
    monkeypatch.setenv("EDGEKD_RESULTS", str(tmp_path / "results.jsonl"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
