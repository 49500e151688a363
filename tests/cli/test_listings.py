"""Listings print their data on stdout (a plain table when piped, rich on a terminal; --json: one JSON
document), and an invalid user recipe or target profile is listed as invalid without hiding the others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgekd.cli import common, main
from edgekd.paths import shipped_dir

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))
SHIPPED_TARGETS = sorted(p.stem for p in (REPO / "targets").glob("*.yaml"))


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    """A private $EDGEKD_CONFIG_DIR (the session-wide one is shared with other tests)."""
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EDGEKD_DEVICES", str(tmp_path / "config" / "devices.yaml"))
    return tmp_path / "config"


def _edgekd(*argv: str) -> subprocess.CompletedProcess:
    """``python -m edgekd ...`` with stdout a pipe (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "edgekd", *argv], capture_output=True, text=True, timeout=180)


def test_recipes_list_through_a_pipe_is_one_line_per_recipe():
    done = _edgekd("recipes", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum("quickstart" in line for line in lines) == 1  # `edgekd recipes list | grep -c quickstart` = 1
    assert lines[0].split() == ["name", "teacher", "model", "description", "path"]
    assert sorted(line.split()[0] for line in lines[1:]) == SHIPPED_RECIPES
    assert "─" not in done.stdout and "│" not in done.stdout  # no rich box drawing in a pipe


def test_targets_list_json_is_one_document_of_the_shipped_targets():
    done = _edgekd("targets", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(row["name"] for row in rows) == SHIPPED_TARGETS
    assert all(row["error"] is None and Path(row["path"]).is_file() for row in rows)


@pytest.mark.parametrize("argv", [["recipes", "list"], ["targets", "list"], ["device", "list"]])
def test_listings_are_plain_on_stdout_and_json_with_json(argv, user_dir, capsys):
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() and captured.err == ""
    assert all(line == line.rstrip() for line in captured.out.splitlines())
    assert main([*argv, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_shows_print_the_document_on_stdout(capsys):
    assert main(["recipes", "show", "quickstart"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "quickstart"
    assert main(["targets", "show", "host"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ") and yaml.safe_load(out)["name"] == "host"


def test_device_probe_local_lists_the_facts(user_dir, capsys):
    assert main(["device", "probe", "local", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"] == "local" and doc["target"] == "host" and doc["problem"] is None and doc["arch"]
    assert main(["device", "probe", "local"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "local (host)" and out[1].split()[0] == "architecture"


def test_a_terminal_gets_a_rich_table(monkeypatch, capsys):
    monkeypatch.setattr(common, "stdout_is_terminal", lambda: True)
    common.print_table(("name", "value"), [("a", 1), ("b", None)], title="t")
    out = capsys.readouterr().out
    assert "┃" in out or "│" in out
    monkeypatch.setattr(common, "stdout_is_terminal", lambda: False)
    common.print_table(("name", "value"), [("a", 1), ("bb", None), ("c", "two\nlines")])
    assert capsys.readouterr().out.splitlines() == ["name  value", "a     1", "bb    -", "c     two lines"]


def test_an_invalid_user_target_is_listed_and_hides_nothing(user_dir, capsys):
    targets = user_dir / "targets"
    targets.mkdir(parents=True)
    (targets / "broken.yaml").write_text("name: broken\ndescription: no arch\n")
    (targets / "garbled.yaml").write_text("name: [\n")
    assert main(["targets", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {*SHIPPED_TARGETS, "broken", "garbled"}
    assert rows["broken"]["path"] == str(targets / "broken.yaml") and "\n" not in rows["broken"]["error"]
    assert "broken.yaml: arch=<missing>: required field" in rows["broken"]["error"]
    assert "<yaml>=malformed" in rows["garbled"]["error"]
    assert all(rows[name]["error"] is None for name in SHIPPED_TARGETS)

    assert main(["targets", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "INVALID: " in lines["broken"] and "arch=<missing>" in lines["broken"]
    assert set(lines) == {*SHIPPED_TARGETS, "broken", "garbled"}
    assert main(["targets", "show", "jetson-tx2", "--json"]) == 0  # the others stay usable
    assert json.loads(capsys.readouterr().out)["name"] == "jetson-tx2"
    assert main(["targets", "show", "broken"]) == 2
    assert "arch=<missing>" in capsys.readouterr().err


def test_an_invalid_user_recipe_is_listed_and_hides_nothing(user_dir, capsys):
    recipes = user_dir / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "mine.yaml").write_text("name: mine\nteacher: {model: {name: resnet57_cifar}}\n")
    assert main(["recipes", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {*SHIPPED_RECIPES, "mine"}
    assert "teacher.model.name=resnet57_cifar" in rows["mine"]["error"] and rows["mine"]["model"] is None
    assert rows["quickstart"]["error"] is None and rows["quickstart"]["model"]


def test_shipped_configs_come_from_the_package_data():
    assert sorted(p.stem for p in shipped_dir("recipes").glob("*.yaml")) == SHIPPED_RECIPES
    assert sorted(p.stem for p in shipped_dir("targets").glob("*.yaml")) == SHIPPED_TARGETS


def test_the_installed_package_finds_its_configs_from_anywhere(tmp_path):
    """Outside the checkout, ``edgekd`` is the installed package (editable or wheel) and still lists every target."""
    done = subprocess.run([sys.executable, "-m", "edgekd", "targets", "list", "--json"], capture_output=True,
                          text=True, timeout=180, cwd=tmp_path)
    if done.returncode and "No module named edgekd" in done.stderr:
        pytest.skip("edgekd is not installed in this environment (only importable from the checkout)")
    assert done.returncode == 0, done.stderr
    assert sorted(row["name"] for row in json.loads(done.stdout)) == SHIPPED_TARGETS
