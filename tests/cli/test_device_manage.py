"""Device management through the API (what ``edgekd device ...`` calls), on the store and the local device."""

from __future__ import annotations

import json

import pytest

from edgekd import api
from edgekd.cli import main
from edgekd.errors import ConfigError, DeviceError


@pytest.fixture(autouse=True)
def _private_store(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EDGEKD_DEVICES", str(tmp_path / "config" / "devices.yaml"))


def test_add_list_remove(tmp_path):
    stored = api.add_device("pi", target="raspberry-pi-4", host="pi.lan", exec_prefix="qemu-aarch64 -L /s",
                            key=tmp_path / "id_ed25519")
    assert stored.path == tmp_path / "config" / "devices.yaml"
    assert stored.device.exec_prefix == ["qemu-aarch64", "-L", "/s"] and stored.device.key.is_absolute()
    assert [d.name for d in api.list_devices()] == ["local", "pi"]
    with pytest.raises(ConfigError, match="already exists"):
        api.add_device("pi", target="host", host="x")
    assert api.add_device("pi", target="host", host="x", replace=True).device.host == "x"
    assert api.remove_device("pi") == stored.path
    assert [d.name for d in api.list_devices()] == ["local"]


def test_the_local_device_has_no_host_key():
    with pytest.raises(DeviceError, match="no host key"):
        api.fetch_host_key("local")


def test_setup_and_probe_local(capsys):
    done = api.setup_device("local")
    assert done.probe.device == "local" and done.probe.problem is None and "flock" in done.tools
    assert main(["device", "setup", "local", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["probe"]["target"] == "host" and doc["cache_dir"] == done.cache_dir


@pytest.mark.parametrize("as_json", [True, False])
def test_a_misfit_is_shown_then_refused(as_json, monkeypatch, capsys):
    """``device probe`` prints the facts of a board that cannot run its target's binaries, then exits 2."""
    facts = api.probe_device("local").facts
    misfit = api.DeviceProbe("arm", "jetson-tx2", facts, problem="device 'arm' runs x86_64 binaries but ...")
    monkeypatch.setattr(api, "probe_device", lambda name: misfit)
    assert main(["device", "probe", "arm", *(["--json"] if as_json else [])]) == 2
    captured = capsys.readouterr()
    assert captured.err == "edgekd: error: device 'arm' runs x86_64 binaries but ...\n"
    if as_json:
        assert json.loads(captured.out)["problem"] == misfit.problem
    else:
        assert captured.out.startswith("arm (jetson-tx2)\narchitecture")
