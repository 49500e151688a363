"""A tuned latency profile on this host (``local``, a real board): the lattice's kernels are tuned into the target's
database before they are timed, the whole networks are compiled as deployed ones are, and a second profile reuses
every tuned task and every measured point."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.compile.tuning import database_dir, read_ledger
from edgekd.config.devices import DeviceStore
from edgekd.config.target import load_target
from edgekd.latency.model import NetworkKey
from edgekd.latency.profile import ProfileOptions, profile_network
from edgekd.latency.store import staleness, tuning_digest
from edgekd.testing.targets import host_profile_copy


class _Residual(nn.Module):
    """A 1x1 projection (no activation) with ``x + branch`` fused after it, as MobileNetV2's blocks have."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.conv(x))


def _small_network() -> nn.Module:
    """Two prunable groups (16 and 24 channels) through a conv + ReLU6, a projection without activation and a
    residual block: a lattice of a few points with each of a compile's epilogues."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24),
        _Residual(24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10)).eval()


@pytest.mark.slow
def test_a_tuned_profile_tunes_its_kernels_and_resumes_without_tuning_again(tmp_path):
    torch.manual_seed(0)
    profile = load_target(host_profile_copy(tmp_path, "host-tuned"))  # its own tuning database
    device = DeviceStore().get("local")
    key = NetworkKey(name="small", input_shape=[1, 3, 8, 8])
    options = ProfileOptions(mode="tuned", levels=2, calibration=1, heldout=1, rounds=1, runs=5, min_seconds=0.1,
                             tune_trials=1)
    model = profile_network(_small_network(), (1, 3, 8, 8), device, profile, key, options, on_progress=lambda *a: None)

    directory = database_dir(profile.name)
    ledger = read_ledger(directory)
    assert model.provenance.mode == "tuned" and model.provenance.records == str(directory)
    assert model.provenance.tuning_digest == tuning_digest(directory, model.provenance.tuned_tasks) is not None
    assert model.stats["tasks_tuned"] > 0 and model.stats["kernels_untuned"] == 0  # every kernel has a schedule
    # the coarse grid: 16 channels at 8 and 16, 24 at 16 and 24 — and every kernel of every network on it is a
    # lattice point, the epilogues included (their compiles tune only pooling)
    assert model.multiples and sorted(model.multiples.values()) == [8, 16]
    assert model.stats["network_kernels_missed"] == 0
    assert {tuple(t.a_out) for t in model.tables.values()} >= {(8, 16), (16, 24)}
    assert ledger and all(entry["trials"] >= 1 for entry in ledger.values())
    assert model.validation.configurations == 1 and model.validation.rows[0]["measured_ms"] > 0
    assert model.stats["tune_s"] == pytest.approx(model.stats["tune_lattice_s"] + model.stats["tune_networks_s"],
                                                  abs=0.2)  # the cost split by phase
    [calibrated] = model.calibration.rows  # kept with its widths: scripts/rescore_latency_profile.py re-predicts it
    assert calibrated["measured_ms"] > 0 and calibrated["widths"] and calibrated["raw_ms"] > 0
    assert set(model.provenance.tuned_tasks) <= set(ledger) and staleness(model, model.provenance.runtime) is None

    again = profile_network(_small_network(), (1, 3, 8, 8), device, profile, key, options, on_progress=lambda *a: None)
    assert again.stats["tasks_tuned"] == 0  # resumed through the ledger: nothing tuned twice
    assert again.stats["points_cached"] == again.stats["points"] > 0  # the same schedules: the same measurements
    assert read_ledger(directory) == ledger
