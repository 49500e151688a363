"""The compile stage with tuning measured on a board: ``edgekd compile MODEL --target T --device D --tune-trials N``.

Glues the device floor (connection, probe, run lock, :class:`~edgekd.device.tuning_runner.BoardMeasurer`) to the
compile floor (:func:`~edgekd.compile.api.compile_model`, which takes the measurer as a runner factory and
never imports ``device``). Order: connect → probe (the board must run the target's binaries: architecture,
glibc floor) → take the board's run lock for the whole compile (a bench and a tuning never time the same board
at once) → compile, its tuning timed on the board → release. Records go to the database of the target and
the board's CPU (:func:`edgekd.compile.tuning.board_key`; ``emulated-…`` for an emulated board).

Without tuning trials the device plays no part (the compile is the same as without ``--device``); the built-in
``local`` device without an exec prefix measures a host target as a plain compile does (this machine's database).
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgekd.compile.api import Artifact, CompileOptions, compile_model
from edgekd.compile.tuning import board_key
from edgekd.config.devices import Device, DeviceStore
from edgekd.config.target import TargetProfile, load_target
from edgekd.device import connect
from edgekd.device.lock import board_lock
from edgekd.device.probe import check_fits, probe
from edgekd.device.tuning_runner import BoardMeasurer, EvaluatorSettings

__all__ = ["compile_on_device"]


def compile_on_device(model: object, target: str | Path | TargetProfile, out_dir: str | Path,
                      options: CompileOptions | None = None, *, device: str | Device,
                      settings: EvaluatorSettings | None = None, lock_timeout: float | None = 3600.0,
                      connect_timeout: float = 10.0, on_batch=None) -> Artifact:
    """:func:`~edgekd.compile.api.compile_model` whose tuning candidates are timed on ``device`` over SSH.

    Raises:
        ConfigError: unknown device or target. DeviceError: the board is unreachable, untrusted, cannot run the
        target's binaries, or stays busy past ``lock_timeout``. Everything ``compile_model`` raises.
    """
    options = options or CompileOptions()
    profile = target if isinstance(target, TargetProfile) else load_target(target)
    entry = device if isinstance(device, Device) else DeviceStore().get(device)
    if options.tune_trials <= 0 or entry.measures_here(profile):
        return compile_model(model, profile, out_dir, options, on_batch=on_batch)
    with connect(entry, connect_timeout=connect_timeout) as conn:
        facts = probe(conn, cache_dir=entry.cache_dir, emulated=entry.emulated)
        check_fits(facts, device=entry.name, target=profile.name, arch=profile.arch,
                   glibc_floor=profile.glibc_floor)
        key = board_key(facts.arch, facts.cpu_model, facts.emulated, facts.cpu_count)
        measurer = BoardMeasurer(conn, entry, profile, settings, relock=True,
                                 lock_timeout=60.0 if lock_timeout is None else min(lock_timeout, 60.0))
        with board_lock(conn, entry, what=f"tuning for {profile.name}", timeout=lock_timeout):
            try:
                artifact = compile_model(model, profile, out_dir, options, measure=measurer.runner, board=key,
                                         on_batch=on_batch)
            finally:
                measurer.close()
    if measurer.lost:
        print(f"edgekd: tuning on {entry.name} ended early ({measurer.lost}); the records measured before are "
              f"kept and used, and a later compile tunes the rest", file=sys.stderr)
    return artifact
