"""Fixtures for real-network tests: loopback sshd boards (x86_64 and qemu-user aarch64) and a fake
power sensor. Everything is real except the sensor's hardware.

Reusable fixtures:
    user_key, sshd  (tests/conftest.py) the session's ed25519 user key and loopback sshd
    fresh_sshd      a function-scoped sshd that a test may kill
    known_hosts     a pinned edgekd known_hosts file holding ``sshd``'s key
    x86_board       Device for ``sshd`` (target host, cache in tmp_path)
    arm_board       Device for ``sshd`` with exec prefix ``qemu-aarch64 -L /usr/aarch64-linux-gnu``
    make_device     factory: make_device(sshd, **fields) -> Device
    fake_sensor     FakeSensor (1200 mW idle, 3400 mW while ``edgekd-runner`` runs)
"""

from __future__ import annotations

import shutil

import pytest
from support import require

from edgekd.config.devices import Device
from edgekd.device import ssh
from edgekd.testing.boards import FakeSensor, Sshd

QEMU_PREFIX = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]



@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Never read the real ~/.ssh/config, the user's devices or an ssh-agent."""
    monkeypatch.setattr(ssh, "DEFAULT_SSH_CONFIG", tmp_path / "no-ssh-config")
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EDGEKD_DEVICES", str(tmp_path / "config" / "devices.yaml"))
    monkeypatch.setenv("EDGEKD_RESULTS", str(tmp_path / "results.jsonl"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
def fresh_sshd(tmp_path, user_key):
    server = Sshd(tmp_path / "sshd", user_key).start()
    yield server
    server.stop()


@pytest.fixture
def make_device(tmp_path, user_key):
    def make(server: Sshd, name: str = "board", **fields) -> Device:
        known = tmp_path / f"known_hosts-{server.port}"
        if not known.exists():
            known.write_text(server.known_hosts_line())
        values = dict(
            name=name, target="host", host="127.0.0.1", port=server.port, user="root", key=user_key,
            known_hosts=known, cache_dir=str(tmp_path / f"board-cache-{name}"),
        )
        values.update(fields)
        return Device(**values)

    return make


@pytest.fixture
def known_hosts(tmp_path, sshd):
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line())
    return path


@pytest.fixture
def x86_board(make_device, sshd):
    return make_device(sshd, "x86")


@pytest.fixture
def arm_board(make_device, sshd):
    require(shutil.which("qemu-aarch64") is not None, "qemu-user (qemu-aarch64)")
    return make_device(sshd, "arm", target="jetson-tx2", exec_prefix=QEMU_PREFIX, emulated=True)


@pytest.fixture
def fake_sensor(tmp_path):
    # only runners in this test's board caches (make_device puts them below tmp_path) draw power
    sensor = FakeSensor(tmp_path / "ina3221x" / "iio:device1", period_s=0.01, within=str(tmp_path)).start()
    yield sensor
    sensor.stop()


@pytest.fixture(scope="session")
def warm_board(sshd, user_key, tiny_teacher, tmp_path_factory):
    """A loopback board whose target is a private copy of the host profile, its tuning database warm: the tiny
    quickstart teacher tuned on it with :data:`TUNE_TRIALS` trials (a tune test's dense reference then reuses
    them), and its half and three-quarter width networks with :data:`WARM_TRIALS_PER_TASK` trials a task, as a
    user's database is after compiling a family's networks. Yields the target profile's path; the database is
    removed at the end."""
    from support import TUNE_TRIALS, WARM_TRIALS_PER_TASK, host_profile_copy

    from edgekd.compile import CompileOptions
    from edgekd.compile.tuning import database_dir
    from edgekd.pipeline.compile import compile_on_device

    root = tmp_path_factory.mktemp("warm-board")
    profile = host_profile_copy(root)
    known = root / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    device = Device(name="warm", target=str(profile), host="127.0.0.1", port=sshd.port, user="root", key=user_key,
                    known_hosts=known, cache_dir=str(root / "board-cache"))
    warm = compile_on_device(str(tiny_teacher / "model.pt"), profile, root / "warm", device=device,
                             options=CompileOptions(tune_trials=TUNE_TRIALS, onnx=False, runner=False))
    tuning = warm.manifest.tuning
    assert tuning.tasks_tuned == tuning.tasks > 0 and tuning.trials >= 2 * tuning.tasks
    for fraction in (0.5, 0.75):
        model = _uniform_width(tiny_teacher / "model.pt", fraction, root / f"width-{fraction}" / "model.pt")
        narrow = compile_on_device(str(model), profile, root / f"width-{fraction}" / "artifact", device=device,
                                   options=CompileOptions(tune_trials_per_task=WARM_TRIALS_PER_TASK, onnx=False,
                                                          runner=False))
        assert narrow.manifest.tuning.tasks_tuned > 0
    yield profile
    for database in database_dir(profile.stem).parent.glob(f"{profile.stem}@*"):
        shutil.rmtree(database, ignore_errors=True)


def _uniform_width(model_file, fraction: float, out):
    """``model_file``'s network with every prunable group at ``fraction`` of its channels (multiples of 8, as the
    tune tests round), saved to ``out``."""
    from edgekd.latency.design import masks_for
    from edgekd.models.io import load_model, save_model
    from edgekd.structure.groups import trace_groups
    from edgekd.structure.prune import prune_model

    loaded = load_model(model_file)
    graph = trace_groups(loaded.model, loaded.input_shape)
    widths = {g.id: max(8, 8 * round(g.size * fraction / 8)) for g in graph.groups if g.prunable}
    pruned = prune_model(loaded.model, graph, masks_for(graph, widths)).model
    return save_model(out, pruned, loaded.arch)
