"""Managing the boards edgekd benchmarks on: store them, trust their host keys, probe and set them up.

What ``edgekd device add|list|remove|trust|probe|setup`` does, as functions over plain values that return
typed results; rendering and the interactive "trust this key?" question are the caller's. Devices live in
the user's devices file (:class:`~edgekd.config.devices.DeviceStore`); ``local`` is built in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.config.devices import Device, DeviceStore, local_device
from edgekd.config.loading import validate
from edgekd.config.target import TargetProfile, load_target
from edgekd.device import connect
from edgekd.device.cache import ensure_dir, sftp_like
from edgekd.device.probe import ProbeResult, check_fits, probe
from edgekd.errors import DeviceError

__all__ = [
    "REQUIRED_TOOLS", "DeviceProbe", "DeviceSetup", "HostKey", "StoredDevice", "add_device", "fetch_host_key",
    "get_device", "list_devices", "probe_device", "remove_device", "setup_device", "trust_host_key",
]

#: What the board needs besides the runner (push, cache lock, timeouts): checked by :func:`setup_device`.
REQUIRED_TOOLS = ("sh", "sha256sum", "flock", "timeout", "mktemp", "ln", "date")


@dataclass(frozen=True)
class StoredDevice:
    """A device as stored, and the devices file it is stored in."""

    device: Device
    path: Path


@dataclass(frozen=True)
class HostKey:
    """The SSH host key a board presents (fetched, not yet trusted); pass it to :func:`trust_host_key`."""

    device: str
    address: str  # host:port as connected
    key_type: str  # e.g. ssh-ed25519
    fingerprint: str  # SHA256:...
    _conn: Any = field(default=None, repr=False, compare=False)
    _key: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DeviceProbe:
    """A board's facts and whether it can run its target's binaries (``problem`` says why not; None = fits)."""

    device: str
    target: str
    facts: ProbeResult
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "target": self.target, **self.facts.to_dict(), "problem": self.problem}


@dataclass(frozen=True)
class DeviceSetup:
    """A board made ready: its cache directory exists, the tools are there, and its probe."""

    device: str
    cache_dir: str
    tools: tuple[str, ...]
    probe: DeviceProbe

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "cache_dir": self.cache_dir, "tools": list(self.tools),
                "probe": self.probe.to_dict()}


def add_device(name: str, *, target: str, host: str, port: int | None = None, user: str | None = None,
               key: str | Path | None = None, exec_prefix: str | list[str] | None = None,
               cache_dir: str | None = None, known_hosts: str | Path | None = None, emulated: bool = False,
               replace: bool = False) -> StoredDevice:
    """Validate and store a device (then trust its host key with :func:`fetch_host_key` / :func:`trust_host_key`).

    ``exec_prefix`` is a shell-quoted string or a list (e.g. ``qemu-aarch64 -L /sysroot``); ``key`` is a
    private key file (no passwords are stored), resolved to an absolute path.

    Raises:
        ConfigError: an invalid field (one line naming it), an existing name without ``replace``, ``local``.
    """
    fields = {"name": name, "target": target, "host": host, "port": port, "user": user,
              "key": str(Path(key).expanduser().resolve()) if key else None,
              "exec_prefix": exec_prefix or [], "cache_dir": cache_dir,
              "known_hosts": str(known_hosts) if known_hosts else None, "emulated": emulated}
    device = validate(Device, {k: v for k, v in fields.items() if v is not None}, "edgekd device add")
    store = DeviceStore()
    store.add(device, replace=replace)
    return StoredDevice(device, store.path)


def list_devices() -> list[Device]:
    """Every device: the built-in ``local`` first, then the stored ones."""
    return [local_device(), *DeviceStore().load().values()]


def get_device(name: str) -> Device:
    """A stored device or ``local``. Raises ConfigError for an unknown name (the message lists the known ones)."""
    return DeviceStore().get(name)


def remove_device(name: str) -> Path:
    """Delete a stored device; returns the devices file. Raises ConfigError for an unknown name or ``local``."""
    store = DeviceStore()
    store.remove(name)
    return store.path


def fetch_host_key(name: str, *, connect_timeout: float = 10.0) -> HostKey:
    """The host key the device presents (nothing is authenticated or recorded).

    Raises:
        DeviceError: the local device, an unreachable host or no SSH server.
    """
    from edgekd.device.ssh import fingerprint

    device = get_device(name)
    if device.is_local:
        raise DeviceError("the local device has no host key")
    conn = connect(device, connect_timeout=connect_timeout)
    key = conn.fetch_host_key()
    return HostKey(name, f"{conn.hostname}:{conn.port}", key.get_name(), fingerprint(key), _conn=conn, _key=key)


def trust_host_key(host_key: HostKey, *, expect: str | None = None) -> Path:
    """Record ``host_key`` in the device's known_hosts file (replacing that host's entries); returns the file.

    Raises:
        DeviceError: ``expect`` (a ``SHA256:...`` fingerprint) differs from the key's; nothing is recorded.
    """
    if expect and expect != host_key.fingerprint:
        raise DeviceError(f"fingerprint mismatch for {host_key.device}: board has {host_key.fingerprint}, "
                          f"expected {expect}; not recorded")
    return host_key._conn.record_host_key(host_key._key)


def probe_device(name: str) -> DeviceProbe:
    """Probe a device (architecture, CPU, governor, memory, OS/glibc, free disk, power sensors) and check that it
    can run its target's binaries (a misfit is reported in ``problem``, not raised).

    Raises:
        ConfigError: unknown device or target. DeviceError: the board cannot be reached or probed.
    """
    device = get_device(name)
    profile = load_target(device.target)
    with connect(device) as conn:
        facts = probe(conn, cache_dir=device.cache_dir, emulated=device.emulated)
    return _fits(name, profile, facts)


def setup_device(name: str) -> DeviceSetup:
    """Create the device's cache directory, check the tools edgekd needs there (:data:`REQUIRED_TOOLS`), probe it.

    Raises:
        DeviceError: the cache directory cannot be created, a tool is missing, the board is unreachable.
    """
    device = get_device(name)
    profile = load_target(device.target)
    with connect(device) as conn:
        try:
            ensure_dir(sftp_like(conn), device.cache_dir)
        except OSError as err:
            raise DeviceError(f"cannot create {device.cache_dir!r} on {name}: {err.strerror or err}") from None
        script = f'for t in {" ".join(REQUIRED_TOOLS)}; do command -v "$t" >/dev/null || echo "$t"; done'
        missing = conn.check(["sh", "-c", script], what="tool check").stdout.split()
        if missing:
            raise DeviceError(f"{name} lacks {', '.join(missing)}; install coreutils/util-linux on the board")
        facts = probe(conn, cache_dir=device.cache_dir, emulated=device.emulated)
    return DeviceSetup(name, device.cache_dir, REQUIRED_TOOLS, _fits(name, profile, facts))


def _fits(name: str, profile: TargetProfile, facts: ProbeResult) -> DeviceProbe:
    try:
        check_fits(facts, device=name, target=profile.name, arch=profile.arch, glibc_floor=profile.glibc_floor)
    except DeviceError as err:
        return DeviceProbe(name, profile.name, facts, problem=str(err))
    return DeviceProbe(name, profile.name, facts)
