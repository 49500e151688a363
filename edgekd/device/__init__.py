"""Device stage: connect to a board (SSH or the built-in ``local``), probe it, push artifacts into a
content-addressed cache, run the runner, sample power, and compare outputs with PyTorch.

Input: a :class:`~edgekd.config.devices.Device` and a compiled artifact directory.
Output: :class:`~edgekd.device.bench.BenchResult` records (stored by :mod:`edgekd.results.store`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.config.devices import Device
    from edgekd.device.local import LocalConnection
    from edgekd.device.ssh import Connection


def connect(device: Device, *, connect_timeout: float = 10.0) -> Connection | LocalConnection:
    """An unopened connection for ``device`` (the only place connections are built from devices)."""
    if device.is_local:
        from edgekd.device.local import LocalConnection

        return LocalConnection(exec_prefix=device.exec_prefix)
    from edgekd.device.ssh import Connection

    return Connection(
        device.host,
        user=device.user,
        port=device.port,
        key_filename=device.key,
        known_hosts=device.known_hosts_path(),
        connect_timeout=connect_timeout,
        exec_prefix=device.exec_prefix,
        name=device.name,
    )
