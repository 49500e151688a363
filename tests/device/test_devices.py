"""Device store: validation, atomic save, env override, the built-in local device."""

from __future__ import annotations

import os

import pytest

from edgekd.config.devices import Device, DeviceStore, devices_path
from edgekd.errors import ConfigError


def test_env_overrides_path(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_DEVICES", str(tmp_path / "d.yaml"))
    assert devices_path() == tmp_path / "d.yaml"


def test_round_trip_and_private_mode():
    store = DeviceStore()
    store.add(Device(name="tx2", target="jetson-tx2", host="tx2", exec_prefix="qemu-aarch64 -L /x"))
    loaded = store.get("tx2")
    assert loaded.exec_prefix == ["qemu-aarch64", "-L", "/x"] and loaded.port is None
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"
    assert "password" not in store.path.read_text()


def test_duplicate_refused_unless_replace():
    store = DeviceStore()
    store.add(Device(name="a", target="host", host="h"))
    with pytest.raises(ConfigError, match="already exists"):
        store.add(Device(name="a", target="host", host="h2"))
    store.add(Device(name="a", target="host", host="h2"), replace=True)
    assert store.get("a").host == "h2"


def test_local_is_builtin():
    store = DeviceStore()
    assert store.get("local").is_local
    with pytest.raises(ConfigError):
        store.add(Device(name="local", target="host", host="h"))


def test_unknown_device_lists_known():
    DeviceStore().add(Device(name="a", target="host", host="h"))
    with pytest.raises(ConfigError, match="known: local, a"):
        DeviceStore().get("zz")


def test_bad_field_is_one_line(tmp_path):
    store = DeviceStore()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("devices:\n  a: {target: host, host: h, port: 99999}\n")
    with pytest.raises(ConfigError, match=r"devices.a: port=99999"):
        store.load()
    store.path.write_text("devices:\n  a: {target: host, host: h, password: x}\n")
    with pytest.raises(ConfigError, match="unknown field"):
        store.load()


def test_remove():
    store = DeviceStore()
    store.add(Device(name="a", target="host", host="h"))
    store.remove("a")
    assert store.load() == {}
    with pytest.raises(ConfigError):
        store.remove("a")
