"""The documented precedence of the data root (README "Precedence", edgekd.config.recipe):
recipe file → EDGEKD_DATA → --data → --set, lowest to highest — each level beats every level below it,
through the library (``load_recipe``) and through the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from edgekd.cli import main
from edgekd.config.recipe import load_recipe

LEVELS = ("file", "env", "data", "set")  # lowest to highest
SUBSETS = [combo for n in range(len(LEVELS) + 1) for combo in itertools.combinations(LEVELS, n)]


def _recipe(directory: Path, root: str | None) -> Path:
    path = directory / "precedence.yaml"
    lines = ["name: precedence", "teacher:", "  model: {name: resnet20_cifar}", "data:", "  dataset: cifar10"]
    if root is not None:
        lines.append(f"  root: {root}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _roots(tmp_path: Path) -> dict[str, str]:
    """A distinct (missing) directory per level, so a resolved root names the level it came from."""
    return {level: str(tmp_path / f"from-{level}") for level in LEVELS}


@pytest.mark.parametrize("given", SUBSETS, ids=lambda combo: "+".join(combo) or "none")
def test_load_recipe_takes_the_highest_level_given(given, tmp_path, monkeypatch):
    roots = _roots(tmp_path)
    path = _recipe(tmp_path, roots["file"] if "file" in given else None)
    if "env" in given:
        monkeypatch.setenv("EDGEKD_DATA", roots["env"])
    recipe = load_recipe(str(path), overrides=[f"data.root={roots['set']}"] if "set" in given else None,
                         data_root=roots["data"] if "data" in given else None)
    expected = roots[given[-1]] if given else None  # combinations keep LEVELS' order: the last is the highest
    assert recipe.data.root == expected


def test_set_overrides_apply_in_order_and_keep_the_rest_of_the_file(tmp_path):
    path = _recipe(tmp_path, str(tmp_path / "from-file"))
    recipe = load_recipe(str(path), overrides=["data.root=/first", "data.root=/second"], data_root="/data")
    assert recipe.data.root == "/second" and recipe.data.dataset == "cifar10"


def _show(capsys, *argv: str) -> dict:
    assert main(["recipes", "show", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_show_file_then_env_then_set(tmp_path, monkeypatch, capsys):
    roots = _roots(tmp_path)
    path = str(_recipe(tmp_path, roots["file"]))
    assert _show(capsys, path)["data"]["root"] == roots["file"]
    monkeypatch.setenv("EDGEKD_DATA", roots["env"])
    assert _show(capsys, path)["data"]["root"] == roots["env"]
    assert _show(capsys, path, "--set", f"data.root={roots['set']}")["data"]["root"] == roots["set"]


@pytest.mark.parametrize("highest", ["data", "set"])
def test_cli_data_beats_env_and_set_beats_data(highest, tmp_path, monkeypatch, capsys):
    """``train`` resolves the recipe, then fails to find CIFAR-10 under the winning root and names it."""
    roots = _roots(tmp_path)
    path = str(_recipe(tmp_path, roots["file"]))
    monkeypatch.setenv("EDGEKD_DATA", roots["env"])
    argv = ["train", "--recipe", path, "--data", roots["data"], "--out", str(tmp_path / "run")]
    if highest == "set":
        argv += ["--set", f"data.root={roots['set']}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"data.root={roots[highest]!r}" in err, err
    assert not (tmp_path / "run").exists()
