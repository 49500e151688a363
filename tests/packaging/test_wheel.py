"""``pip install .`` (a wheel, not editable) ships the recipes and target profiles and runs from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))
SHIPPED_TARGETS = sorted(p.stem for p in (REPO / "targets").glob("*.yaml"))
USER_TINY = ["data.train_subset=256", "data.val_size=64", "data.test_subset=64", "data.batch_size=32",
             "data.workers=0", "structure.learn.epochs=1", "structure.update_every=1", "structure.finetune.epochs=1"]
TINY = ["data.train_subset=64", "data.val_size=32", "data.test_subset=32", "data.batch_size=32",
        "teacher.model.kwargs.width_mult=0.25", "training.epochs=1", "training.max_steps_per_epoch=2",
        "structure.learn.epochs=1", "structure.learn.max_steps_per_epoch=2", "structure.update_every=1",
        "structure.finetune.epochs=1", "structure.finetune.max_steps_per_epoch=2"]


def test_package_data_globs_all_match_files():
    """pyproject lists no package data that does not exist (and the shipped configs are among it)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = config["package-data"]
    for package, patterns in globs.items():
        base = REPO.joinpath(*package.split("."))
        for pattern in patterns:
            assert list(base.glob(pattern)), f"package-data {package!r}: {pattern!r} matches no file under {base}"
    assert {"shipped/recipes/*.yaml", "shipped/targets/*.yaml"} <= set(globs["edgekd"])


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """edgekd built as a wheel and installed (not editable) into its own site directory; ``run(*argv)`` runs
    ``python -m edgekd`` from a folder outside the checkout with only that site on the path."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    # Build from a copy: building writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("edgekd", "recipes", "targets"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)])
    [wheel] = (tmp_path / "dist").glob("edgekd-*.whl")
    site = tmp_path / "site"
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "EDGEKD_CONFIG_DIR": str(tmp_path / "config"),
           "EDGEKD_PROGRESS": "0", "EDGEKD_RESULTS": str(tmp_path / "results.jsonl")}
    env.pop("EDGEKD_DATA", None)

    def edgekd(*argv: str) -> subprocess.CompletedProcess:
        return _run([sys.executable, "-m", "edgekd", *argv], cwd=elsewhere, env=env)

    return SimpleNamespace(site=site, elsewhere=elsewhere, env=env, run=edgekd, tmp=tmp_path)


@pytest.mark.slow
def test_the_wheel_ships_recipes_and_targets_and_compresses_outside_the_checkout(installed):
    site, elsewhere, env, edgekd, tmp_path = (installed.site, installed.elsewhere, installed.env, installed.run,
                                              installed.tmp)
    where = _run([sys.executable, "-c", "import edgekd, edgekd.paths as p; print(edgekd.__file__); "
                  "print(p.shipped_dir('recipes'))"], cwd=elsewhere, env=env).stdout.split()
    assert where == [str(site / "edgekd" / "__init__.py"), str(site / "edgekd" / "shipped" / "recipes")]

    recipes = json.loads(edgekd("recipes", "list", "--json").stdout)
    assert sorted(r["name"] for r in recipes) == SHIPPED_RECIPES
    assert all(r["error"] is None and Path(r["path"]).is_relative_to(site) for r in recipes)
    targets = json.loads(edgekd("targets", "list", "--json").stdout)
    assert sorted(t["name"] for t in targets) == SHIPPED_TARGETS
    assert all(t["error"] is None and Path(t["path"]).is_relative_to(site) for t in targets)

    run = tmp_path / "run"
    overrides = [arg for item in TINY for arg in ("--set", item)]
    report = json.loads(edgekd("compress", "--recipe", "quickstart", *overrides, "--out", str(run), "--json").stdout)
    assert report["run_dir"] == str(run)
    assert (run / "model.pt").is_file() and (run / "report.json").is_file()
    assert json.loads((run / "report.json").read_text())["student"]["flops"] > 0


@pytest.mark.slow
def test_the_wheel_compresses_compiles_and_benches_a_user_network_outside_the_checkout(installed, shared_data):
    """A user's net.py and plain state_dict, in a folder of their own: compress --model → compile the .pt2 →
    bench on this host, all from the installed wheel."""
    code = installed.tmp / "user-code"
    code.mkdir()
    shutil.copy2(REPO / "tests" / "integration" / "user_nets" / "usernet.py", code / "usernet.py")
    make_weights = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import usernet; torch.manual_seed(0); "
                    "torch.save(usernet.build().state_dict(), sys.argv[1] + '/w.pth')")
    _run([sys.executable, "-c", make_weights, str(code)])
    run = installed.tmp / "user-run"
    tiny = [a for item in USER_TINY for a in ("--set", item)]
    report = json.loads(installed.run("compress", "--model", str(code / "usernet.py") + ":build", "--checkpoint",
                                      str(code / "w.pth"), "--data", str(shared_data), "--budget", "flops=0.5",
                                      "--out", str(run), *tiny, "--json").stdout)
    assert report["program"] == str(run / "model.pt2") and report["student"]["flops"] <= report["teacher"]["flops"]
    installed.run("compile", str(run / "model.pt2"), "--target", "host", "--out", "art", "--no-onnx")
    measured = json.loads(installed.run("bench", "art", "--device", "local", "--runs", "5", "--min-seconds", "0.1",
                                        "--json").stdout)
    assert measured["max_abs_diff"] <= 1e-4 and measured["latency_valid"]
    assert measured["versions"]["edgekd"]
