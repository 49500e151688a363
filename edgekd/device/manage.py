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
    "CacheVerify", "verify_device_cache", "clean_device_cache",
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
    """The SSH host key a host presents (fetched, not yet trusted); pass it to :func:`trust_host_key`.

    For a board behind ``ProxyJump`` hosts, :func:`fetch_host_key` gives the first jump host's key; once it is
    trusted, :meth:`fetch_next` gives the next host's (reached through the trusted ones), the board's last.
    """

    device: str
    address: str  # host:port as connected
    key_type: str  # e.g. ssh-ed25519
    fingerprint: str  # SHA256:...
    host: str = ""  # the host (ssh_config alias or address) this key is for
    jump: bool = False  # a ProxyJump host on the way to the device, not the device itself
    _conn: Any = field(default=None, repr=False, compare=False)
    _key: Any = field(default=None, repr=False, compare=False)
    _rest: tuple = field(default=(), repr=False, compare=False)

    def fetch_next(self) -> HostKey | None:
        """The next host's key in the chain (None after the device); trust this one first.

        Raises:
            DeviceError: a jump host is not trusted, unreachable, or refuses the login.
        """
        if not self._rest:
            return None
        return _host_key_of(self.device, self._rest)


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
    """The host key the device presents, or with ``ProxyJump`` the first jump host's (``jump`` is True: trust
    it, then call :meth:`HostKey.fetch_next`). Nothing is recorded; only jump hosts are logged into.

    Raises:
        DeviceError: the local device, an unreachable host or no SSH server.
        ConfigError: a ProxyJump cycle or an unsupported ssh_config option (ProxyCommand).
    """
    device = get_device(name)
    if device.is_local:
        raise DeviceError("the local device has no host key")
    return _host_key_of(name, tuple(connect(device, connect_timeout=connect_timeout).hops()))


def _host_key_of(name: str, hops: tuple) -> HostKey:
    from edgekd.device.ssh import fingerprint

    conn = hops[0]
    key = conn.fetch_host_key()
    return HostKey(name, f"{conn.hostname}:{conn.port}", key.get_name(), fingerprint(key), host=conn.alias,
                   jump=len(hops) > 1, _conn=conn, _key=key, _rest=hops[1:])


def trust_host_key(host_key: HostKey, *, expect: str | None = None) -> Path:
    """Record ``host_key`` in the device's known_hosts file (replacing that host's entries, keeping every other
    line); returns the file.

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


@dataclass(frozen=True)
class CacheVerify:
    """``edgekd device verify``: every blob in the board cache hashed; ``bad`` ones were removed (and the
    stages, which the next bench rebuilds)."""

    device: str
    cache_dir: str
    checked: int
    bad: tuple[str, ...]
    bytes_checked: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "cache_dir": self.cache_dir, "checked": self.checked, "bad": list(self.bad),
                "bytes_checked": self.bytes_checked, "seconds": round(self.seconds, 3)}


def verify_device_cache(name: str) -> CacheVerify:
    """Hash every blob in the device's cache, drop the bad ones (the next bench uploads them again).

    Raises:
        ConfigError: unknown device. DeviceError: the board cannot be reached, or the cache listed or locked.
    """
    from edgekd.device.cache import verify_cache

    device = get_device(name)
    with connect(device) as conn:
        found = verify_cache(conn, device.cache_dir)
    return CacheVerify(name, device.cache_dir, len(found.checked), tuple(found.bad), found.bytes_checked,
                       found.seconds)


def clean_device_cache(name: str) -> bool:
    """Remove the device's cache directory (the next bench uploads everything); returns whether there was one.

    Raises:
        ConfigError: unknown device. DeviceError: the board cannot be reached or the removal fails.
    """
    from edgekd.device.cache import clean_cache

    device = get_device(name)
    with connect(device) as conn:
        return clean_cache(conn, device.cache_dir)
