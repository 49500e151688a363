"""``edgekd compile`` / ``edgekd targets``: JSON on stdout, one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekd.cli import main
from edgekd.compile import verify_artifact
from edgekd.compile.build import run_library
from edgekd.models import create_model
from edgekd.models.io import ModelArch, save_model
from edgekd.testing.models import randomise_bn


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run directory holding a resnet20_cifar model.pt with calibrated BatchNorm statistics."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    model = randomise_bn(create_model("resnet20_cifar", num_classes=10))
    save_model(run / "model.pt", model, ModelArch("resnet20_cifar"))
    return run


def test_targets_list_json(capsys):
    assert main(["targets", "list", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"jetson-tx2", "raspberry-pi-4", "raspberry-pi-5", "android-arm64", "host"} <= names


def test_targets_show(capsys):
    assert main(["targets", "show", "jetson-tx2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tvm_target"]["num-cores"] == 4 and shown["glibc_floor"] == "2.27"


def test_compile_run_directory_json(saved_run, capsys):
    assert main(["compile", str(saved_run), "--target", "host", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) >= {"artifact", "target", "files", "tuned"}
    assert document["target"] == "host" and document["tuned"] is False
    artifact = saved_run / "artifacts" / "host"
    assert document["artifact"] == str(artifact)
    manifest = verify_artifact(artifact)
    assert sorted(manifest.files) == document["files"]
    assert manifest.model.name == "resnet20_cifar" and manifest.model.sha256
    example = np.fromfile(artifact / "input.bin", np.float32).reshape(manifest.input.shape)
    reference = np.fromfile(artifact / "reference_output.bin", np.float32).reshape(manifest.output.shape)
    np.testing.assert_allclose(run_library(artifact / "model.so", example), reference, atol=1e-4, rtol=0)
    assert np.abs(run_library(artifact / "model.so", -example) - reference).max() > 1e-3


@pytest.mark.parametrize("argv, expected", [
    (["compile", "{run}", "--target", "no-such-board"], "edgekd: error: target 'no-such-board': not found"),
    (["compile", "{tmp}/missing", "--target", "host"], "edgekd: error: {tmp}/missing: no model.pt found"),
    (["targets", "show", "no-such-board"], "edgekd: error: target 'no-such-board': not found"),
])
def test_errors_are_one_line_exit_2(argv, expected, saved_run, tmp_path, capsys):
    argv = [arg.format(run=saved_run, tmp=tmp_path) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected.format(tmp=tmp_path)) and err.count("\n") == 1
