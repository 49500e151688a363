"""Shared fixtures. In CI (``CI=true``) a missing component fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import TINY_LATENCY_GRID, TINY_OVERRIDES, host_profile_copy, require, tiny_profile_options

from edgekd.paths import project_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout: the real CIFAR-10 npz files."""
    path = Path(os.environ.get("EDGEKD_SHARED_DATA", project_root().parent / "shared" / "data"))
    require((path / "cifar10-mini.npz").is_file(), f"CIFAR-10 npz files in {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def _session_latency_models(tmp_path_factory):
    """Latency models the session saves stay in the session (session fixtures profile before any test's own
    set-up runs): a suite never reads another run's models, nor leaves its own in the user cache."""
    previous = os.environ.get("EDGEKD_LATENCY_DIR")
    os.environ["EDGEKD_LATENCY_DIR"] = str(tmp_path_factory.getbasetemp() / "latency-models")
    yield
    if previous is None:
        os.environ.pop("EDGEKD_LATENCY_DIR", None)
    else:
        os.environ["EDGEKD_LATENCY_DIR"] = previous


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Never read or write the real ~/.config/edgekd; keep the cache shared across the session (zig, wheels)."""
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "edgekd-config"))
    monkeypatch.setenv("EDGEKD_PROGRESS", "0")
    monkeypatch.delenv("EDGEKD_DATA", raising=False)


# Shared, session-scoped runs of the real pipeline, small enough for 2 cores: later tests add assertions,
# not minutes (TINY_OVERRIDES is in support.py).
@pytest.fixture(scope="session")
def tiny_recipe():
    """The quickstart recipe at test scale (see TINY_OVERRIDES)."""
    from edgekd import api

    return api.load_recipe("quickstart", overrides=TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_recipe, tmp_path_factory) -> Path:
    """A dense quickstart teacher trained for one tiny epoch (run directory)."""
    from edgekd import api

    return Path(api.train(tiny_recipe, out=tmp_path_factory.mktemp("tiny") / "teacher").run_dir)


@pytest.fixture(scope="session")
def tiny_compress(tiny_recipe, tiny_teacher, tmp_path_factory):
    """``api.compress`` of the tiny teacher under the quickstart's three 0.5-FLOP block budgets."""
    from edgekd import api

    return api.compress(tiny_recipe, out=tmp_path_factory.mktemp("tiny") / "compress", teacher=tiny_teacher)


@pytest.fixture(scope="session")
def tiny_latency(tiny_recipe):
    """The tiny quickstart family profiled on ``local`` (this host: a real board)."""
    from edgekd import api

    recipe = api.load_recipe("quickstart", overrides=[*TINY_OVERRIDES, *TINY_LATENCY_GRID])
    return api.profile_recipe(recipe, "local", tiny_profile_options())


@pytest.fixture(scope="session")
def user_key(tmp_path_factory) -> Path:
    """The session's ed25519 user key (``.pub`` beside it), authorised on :func:`sshd`."""
    from edgekd.testing.boards import keygen

    return keygen(tmp_path_factory.mktemp("userkey") / "id_ed25519")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, user_key):
    """One real OpenSSH server on 127.0.0.1:<free port> for the whole session (a loopback board)."""
    import shutil

    from edgekd.testing.boards import Sshd

    require(os.path.exists("/usr/sbin/sshd") and shutil.which("ssh-keygen") is not None, "openssh-server")
    server = Sshd(tmp_path_factory.mktemp("sshd"), user_key).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def warm_tuning(tmp_path_factory):
    """The session's one real MetaSchedule run: :func:`edgekd.testing.models.small_net` tuned with 8 trials for
    a private copy of the host profile (a YAML path, so any test's config directory finds it). Its database
    lives in the user cache, as a user's would, and is removed at the end; later tests compile or profile
    against this warm database instead of tuning again. Yields ``(profile_path, first_artifact)``."""
    import shutil

    from edgekd.compile import CompileOptions, compile_model
    from edgekd.compile.tuning import database_dir
    from edgekd.testing.models import small_net

    profile = host_profile_copy(tmp_path_factory.mktemp("warm-tuning"))
    artifact = compile_model(small_net(), str(profile), profile.parent / "first",
                             CompileOptions(tune_trials=8, onnx=False, runner=False))
    yield profile, artifact
    shutil.rmtree(database_dir(profile.stem), ignore_errors=True)
