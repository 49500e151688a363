"""A user's own network (a file outside the repository, or a module of their package) with weights saved as a
plain state_dict goes through ``compress --model`` (real CIFAR-10, tiny scale) → compile → bench: the host
artifact on the ``local`` device, the aarch64 artifact on the qemu board; pruned ≡ masked (the compress guard,
on real images) and compiled ≡ PyTorch, non-vacuously. The compact ``model.pt2`` compiles and runs in a fresh
process that cannot import the user's code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.cli import main
from edgekd.device import connect
from edgekd.device.bench import BenchOptions, bench
from edgekd.models.io import load_model

pytestmark = pytest.mark.slow

USER_NET = Path(__file__).parent / "user_nets" / "usernet.py"
TINY = ["data.train_subset=512", "data.val_size=64", "data.test_subset=128", "data.batch_size=32",
        "data.workers=0", "structure.learn.epochs=2", "structure.learn.lr=0.01", "structure.update_every=1",
        "structure.finetune.epochs=1"]
FAST = BenchOptions(runs=10, min_seconds=0.1, warmup_seconds=0.05, timeout_s=180, idle_seconds=0.0)


def _user_weights(folder: Path, data: Path) -> Path:
    """The user's trained weights, as they would make them: a short plain-PyTorch training loop on CIFAR-10,
    then ``torch.save(model.state_dict(), 'w.pth')``."""
    from edgekd.models import create_model

    torch.manual_seed(0)
    model = create_model(f"{folder / 'usernet.py'}:build", num_classes=10).train()
    with np.load(data / "cifar10-mini.npz") as arrays:
        images = torch.from_numpy(arrays["train_images"][:2048]).permute(0, 3, 1, 2).float().div(255)
        labels = torch.from_numpy(arrays["train_labels"][:2048].astype(np.int64))
    images = (images - 0.5) / 0.25
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for start in range(0, len(labels), 64):
        loss = torch.nn.functional.cross_entropy(model(images[start:start + 64]), labels[start:start + 64])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), folder / "w.pth")
    return folder / "w.pth"


@pytest.fixture(scope="module", params=["file", "module"])
def user_run(request, tmp_path_factory, shared_data):
    """compress --model on the user's network, from a file path or from a package module."""
    home = tmp_path_factory.mktemp(f"user-{request.param}")
    code = home / "code"
    if request.param == "file":
        code.mkdir()
        shutil.copy2(USER_NET, code / "usernet.py")
        weights = _user_weights(code, shared_data)
        name = str(code / "usernet.py") + ":build"
    else:
        (code / "userpkg").mkdir(parents=True)
        (code / "userpkg" / "__init__.py").write_text("")
        shutil.copy2(USER_NET, code / "userpkg" / "nets.py")
        shutil.copy2(USER_NET, code / "usernet.py")  # only to make the weights
        weights = _user_weights(code, shared_data)
        (code / "usernet.py").unlink()
        sys.path.insert(0, str(code))
        name = "userpkg.nets:build"
    run = home / "run"
    argv = ["compress", "--model", name, "--checkpoint", str(weights), "--data", str(shared_data),
            "--budget", "flops=0.5", "--out", str(run), "--json", *[a for item in TINY for a in ("--set", item)]]
    assert main(argv) == 0
    yield {"kind": request.param, "name": name, "run": run, "code": code, "home": home}
    if request.param == "module":
        sys.path.remove(str(code))


def test_compress_prunes_the_user_network_and_checks_the_surgery(user_run):
    run = user_run["run"]
    report = json.loads((run / "report.json").read_text())
    assert report["student"]["flops"] < 0.8 * report["teacher"]["flops"]
    assert report["pruning"]["verified"]["max_abs_diff"] <= 1e-4  # pruned ≡ masked on real CIFAR-10 images
    recipe = (run / "generated-recipe.yaml").read_text()
    assert "stage1" in recipe and "flops: 0.5" in recipe
    loaded = load_model(run / "model.pt")
    assert loaded.arch.name.endswith(":build") and loaded.input_shape == (1, 3, 32, 32)


def _outputs_differ(model: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(x) - model(torch.zeros_like(x))).abs().max() > 1e-3  # non-vacuous: output follows input


def test_host_artifact_benches_on_local_and_matches_pytorch(user_run):
    from edgekd import api

    run = user_run["run"]
    _outputs_differ(load_model(run / "model.pt").model)
    [result] = api.bench(run / "model.pt", device="local", options=FAST, store=False)  # compiled for host first
    assert result.max_abs_diff <= 1e-4 and result.top1_agree == 1.0 and result.latency_valid
    assert (run / "artifacts" / "host" / "manifest.json").is_file()


def test_aarch64_artifact_runs_on_the_qemu_board(user_run, arm_board):
    from edgekd import api

    artifact = api.compile_model(user_run["run"], "jetson-tx2", user_run["home"] / "tx2",
                                 api.CompileOptions(onnx=False))
    with connect(arm_board) as conn:
        [result] = bench(conn, arm_board, artifact.path, BenchOptions(**{**FAST.__dict__, "threads": 1}))
    assert result.arch == "aarch64" and result.emulated and not result.latency_valid
    assert result.max_abs_diff <= 1e-4 and result.top1_agree == 1.0


def test_program_compiles_and_runs_without_the_user_code(user_run, tmp_path):
    run = user_run["run"]
    moved = user_run["home"] / "code-gone"
    user_run["code"].rename(moved)  # the builder can no longer be imported, by path or otherwise
    try:
        env = {**os.environ, "EDGEKD_PROGRESS": "0", "EDGEKD_RESULTS": str(tmp_path / "results.jsonl")}
        env.pop("PYTHONPATH", None)
        program = str(run / "model.pt2")
        script = ("import sys, json\n"
                  "from edgekd.cli import main\n"
                  f"assert main(['compile', {program!r}, '--target', 'host', '--out', 'art', '--no-onnx']) == 0\n"
                  "assert main(['bench', 'art', '--device', 'local', '--runs', '5', '--min-seconds', '0.1', '--json'])"
                  " == 0\n"
                  "assert not any('usernet' in m or m.startswith('userpkg') for m in sys.modules), 'user code'\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=400)
        assert done.returncode == 0, done.stderr[-3000:]
        measured = json.loads(done.stdout)
        assert measured["max_abs_diff"] <= 1e-4
        if user_run["kind"] == "file":  # (a module stays importable here: this process imported it already)
            # model.pt still needs the builder, and says so in one line
            assert main(["compile", str(run / "model.pt"), "--target", "host", "--out", str(tmp_path / "x")]) == 2
    finally:
        moved.rename(user_run["code"])
    reference = np.fromfile(tmp_path / "art" / "reference_output.bin", dtype=np.float32)
    assert reference.size == 10


def _generated_imagefolder(root: Path, size: int = 96) -> Path:
    """Three classes told apart by colour, 12 training and 4 validation images each, ``size`` pixels square."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for label, name in enumerate(("red", "green", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                image = rng.integers(0, 150, (size, size, 3), dtype=np.uint8)
                image[..., label] += 100
                Image.fromarray(image).save(folder / f"{index}.png")
    return root


def test_imagenet_size_torchvision_network_on_an_imagefolder(tmp_path):
    """tv:mobilenet_v3_small (squeeze-excite, hardswish) at the data's 96x96: compress → compile → bench."""
    from edgekd import api

    data = _generated_imagefolder(tmp_path / "images")
    tiny = ["data.val_size=6", "data.batch_size=6", "data.workers=0", "training.epochs=1",
            "training.max_steps_per_epoch=2", "structure.learn.epochs=1", "structure.learn.max_steps_per_epoch=3",
            "structure.update_every=1", "structure.finetune.epochs=1", "structure.finetune.max_steps_per_epoch=2"]
    run = tmp_path / "run"
    argv = ["compress", "--model", "tv:mobilenet_v3_small", "--data", str(data), "--budget", "flops=0.6",
            "--out", str(run), "--json", *[a for item in tiny for a in ("--set", item)]]
    assert main(argv) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["pruning"]["verified"]["max_abs_diff"] <= 1e-4
    assert load_model(run / "model.pt2").input_shape == (1, 3, 96, 96)  # from the data, not 224
    [result] = api.bench(run / "model.pt2", device="local", options=FAST, store=False)
    assert result.max_abs_diff <= 1e-4 and result.latency_valid
