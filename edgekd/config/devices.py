"""Devices: the boards edgekd benchmarks on, kept in a user YAML file.

Input: ``$EDGEKD_DEVICES`` or ``<config_dir>/devices.yaml`` (a mapping ``devices: {NAME: {...}}``).
Output: validated :class:`Device` entries. The file is written atomically and never holds a
password: authentication is by key file, ``~/.ssh/config`` ``IdentityFile`` or ssh-agent.

Precedence for connection settings (applied by :mod:`edgekd.device.ssh`): the fields stored here
(explicit ``--port/--user/--key``) beat ``~/.ssh/config`` entries for ``host``, which beat defaults.

A built-in device named ``local`` (the host itself, no SSH) always exists and cannot be stored.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgekd.atomic import atomic_write_text
from edgekd.config.loading import load_yaml, validate
from edgekd.config.target import PowerSensor
from edgekd.errors import ConfigError
from edgekd.paths import cache_dir, config_dir

LOCAL = "local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Device(BaseModel):
    """One board. ``host`` may be an ``~/.ssh/config`` alias; ``None`` fields defer to it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    target: str
    host: str
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    key: Path | None = None  # private key file; never a password
    exec_prefix: list[str] = Field(default_factory=list)  # e.g. qemu-aarch64 -L /usr/aarch64-linux-gnu
    cache_dir: str = ".cache/edgekd"  # on the board; relative paths are under the login's home
    known_hosts: Path | None = None  # default: <config_dir>/known_hosts
    emulated: bool = False  # timings are not device latency
    # power sensors on this board; when empty the target profile's power_sensors are used
    sensors: list[PowerSensor] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)")
        return name

    @field_validator("exec_prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @property
    def is_local(self) -> bool:
        """True for the built-in ``local`` device (subprocess, no SSH)."""
        return self.name == LOCAL

    def measures_here(self, profile) -> bool:
        """True when tuning for ``profile`` (a TargetProfile) on this device times candidates on this machine as a
        plain compile does, into this machine's database: the built-in ``local`` device, without an exec prefix,
        for a host target."""
        return self.is_local and not self.exec_prefix and profile.is_host

    def known_hosts_path(self) -> Path:
        """The edgekd known_hosts file this device's host keys are checked against."""
        return Path(self.known_hosts or (config_dir() / "known_hosts")).expanduser()

    def dump(self) -> dict[str, Any]:
        """The YAML form (without the name, which is the mapping key; defaults omitted)."""
        data = self.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
        data["target"] = self.target
        data["host"] = self.host
        return data


def local_device() -> Device:
    """The built-in ``local`` device: the host, running the runner as a subprocess."""
    return Device(name=LOCAL, target="host", host="localhost", cache_dir=str(cache_dir() / "device-cache"))


def devices_path() -> Path:
    """``$EDGEKD_DEVICES`` or ``<config_dir>/devices.yaml``."""
    return Path(os.environ.get("EDGEKD_DEVICES") or (config_dir() / "devices.yaml")).expanduser()


class DeviceStore:
    """The user's devices file. Reads validate every entry; writes are atomic.

    Args:
        path: the YAML file; default :func:`devices_path`.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else devices_path()

    def load(self) -> dict[str, Device]:
        """All stored devices by name (empty when the file does not exist).

        Raises:
            ConfigError: malformed file or entry (names file and field).
        """
        if not self.path.exists():
            return {}
        raw = load_yaml(self.path)
        entries = raw.get("devices") or {}
        extra = sorted(set(raw) - {"devices"})
        if extra:
            raise ConfigError.at(str(self.path), extra[0], raw[extra[0]], "unknown field; accepted: devices")
        if not isinstance(entries, dict):
            raise ConfigError.at(str(self.path), "devices", entries, "expected a mapping NAME: {...}")
        out = {}
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                raise ConfigError.at(str(self.path), f"devices.{name}", entry, "expected a mapping of fields")
            if name == LOCAL:
                raise ConfigError.at(str(self.path), f"devices.{name}", name, "'local' is built in")
            out[name] = validate(Device, {**entry, "name": name}, f"{self.path}: devices.{name}")
        return out

    def save(self, devices: dict[str, Device]) -> None:
        """Write all devices atomically (the file is private: mode 0600)."""
        data = {"devices": {name: dev.dump() for name, dev in sorted(devices.items())}}
        atomic_write_text(self.path, yaml.safe_dump(data, sort_keys=False))
        os.chmod(self.path, 0o600)

    def get(self, name: str) -> Device:
        """A stored device or the built-in ``local`` one.

        Raises:
            ConfigError: unknown name (lists the known ones).
        """
        if name == LOCAL:
            return local_device()
        devices = self.load()
        if name not in devices:
            known = ", ".join([LOCAL, *sorted(devices)])
            raise ConfigError(f"device {name!r}: not found in {self.path}; known: {known}")
        return devices[name]

    def add(self, device: Device, *, replace: bool = False) -> Device:
        """Store ``device``; an existing name is refused unless ``replace``."""
        if device.is_local:
            raise ConfigError(f"device {LOCAL!r} is built in; choose another name")
        devices = self.load()
        if device.name in devices and not replace:
            raise ConfigError(f"device {device.name!r} already exists in {self.path}; use --replace")
        devices[device.name] = device
        self.save(devices)
        return device

    def remove(self, name: str) -> None:
        """Delete a stored device.

        Raises:
            ConfigError: unknown name or ``local``.
        """
        devices = self.load()
        if name not in devices:
            raise ConfigError(f"device {name!r}: not found in {self.path}")
        del devices[name]
        self.save(devices)
