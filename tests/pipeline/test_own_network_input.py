"""Bringing one's own network: builder references, weight files, the default recipe and ``edgekd blocks``, and
bad input — each one line, exit 2, before any training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from edgekd.cli import main
from edgekd.errors import CheckpointError, ConfigError
from edgekd.models import create_model
from edgekd.models.user import parse_user_ref
from edgekd.models.weights import load_weights, read_weight_file, state_dict_of

USER_NET = Path(__file__).parents[1] / "integration" / "user_nets" / "usernet.py"


@pytest.fixture
def user_file(tmp_path) -> Path:
    shutil.copy2(USER_NET, tmp_path / "usernet.py")
    return tmp_path / "usernet.py"


def _one_line_error(capsys, argv: list[str], *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("edgekd: error:")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err
    err = errors[0]
    for text in expected:
        assert text in err, err
    return err


def _compress(model: str, data: Path, *extra: str) -> list[str]:
    return ["compress", "--model", model, "--data", str(data), "--budget", "flops=0.5", *extra]


def test_references_are_parsed():
    assert parse_user_ref("mobilenetv2_cifar") is None and parse_user_ref("tv:resnet18") is None
    assert parse_user_ref("timm:resnet10t").kind == "timm"
    assert parse_user_ref("nets/net.py:build").kind == "file"
    assert parse_user_ref("my_pkg.models:build").kind == "module"
    with pytest.raises(ConfigError, match="expected path/to/file.py:builder"):
        parse_user_ref("net.py:not-an-identifier")


def test_builder_gets_num_classes_and_kwargs(user_file):
    model = create_model(f"{user_file}:build", num_classes=5, width=8)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5) and model.stem[0].out_channels == 8


def test_timm_network_is_built_offline():
    model = create_model("timm:resnet10t", num_classes=7)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_model("timm:no_such_net")


def test_weight_files_of_every_kind_load_the_same(user_file, tmp_path):
    from safetensors.torch import save_file

    source = create_model(f"{user_file}:build", num_classes=10)
    state = source.state_dict()
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"epoch": 9, "state_dict": state}, tmp_path / "nested.pt")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "dataparallel.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    expected = source.eval()(x)
    for name in ("plain.pth", "nested.pt", "dataparallel.pth", "w.safetensors"):
        path = tmp_path / name
        model = create_model(f"{user_file}:build", num_classes=10)
        load_weights(model, state_dict_of(read_weight_file(path), path), path)
        assert torch.equal(model.eval()(x), expected), name


def test_mismatched_weights_name_the_first_parameter(user_file, tmp_path):
    torch.save(create_model(f"{user_file}:build", num_classes=10, width=8).state_dict(), tmp_path / "w8.pth")
    model = create_model(f"{user_file}:build", num_classes=10)
    with pytest.raises(CheckpointError, match=r"stem\.0\.weight is \(8, 3, 3, 3\) in the file but \(16, 3, 3, 3\)"):
        load_weights(model, state_dict_of(read_weight_file(tmp_path / "w8.pth"), "w8.pth"), "w8.pth")
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        state_dict_of(read_weight_file(tmp_path / "opt.pth"), "opt.pth")


def test_bad_builders_are_one_line(capsys, tmp_path, user_file, shared_data):
    _one_line_error(capsys, _compress(str(tmp_path / "missing.py") + ":build", shared_data), "does not exist")
    _one_line_error(capsys, _compress(f"{user_file}:nope", shared_data), "has no function 'nope'", "build")
    _one_line_error(capsys, _compress(f"{user_file}:build_broken", shared_data),
                    "the builder raised ValueError: width must be a multiple of 8")
    _one_line_error(capsys, _compress("no_such_pkg.nets:build", shared_data), "no module named 'no_such_pkg'")
    _one_line_error(capsys, ["compress", "--model", f"{user_file}:build", "--budget", "latency=2ms"],
                    "a latency budget goes in a recipe")


def test_weights_that_do_not_fit_and_a_head_that_does_not_fit_the_data(capsys, tmp_path, user_file, shared_data):
    torch.save(create_model(f"{user_file}:build", num_classes=10, width=8).state_dict(), tmp_path / "w8.pth")
    _one_line_error(capsys, _compress(f"{user_file}:build", shared_data, "--checkpoint", str(tmp_path / "w8.pth"),
                                      "--out", str(tmp_path / "a")),
                    "weights do not match the model: stem.0.weight")
    torch.save(create_model(f"{user_file}:build", num_classes=10).state_dict(), tmp_path / "w.pth")
    _one_line_error(capsys, _compress(f"{user_file}:build_seven_classes", shared_data, "--checkpoint",
                                      str(tmp_path / "w.pth"), "--out", str(tmp_path / "b")),
                    "outputs 1x7 but the data", "has 10 classes")


def test_default_recipe_is_saved_and_loads_as_a_recipe(tmp_path, user_file, shared_data):
    from edgekd import api
    from edgekd.pipeline.default_recipe import default_recipe, save_recipe

    recipe, raw = default_recipe(f"{user_file}:build", {"flops": 0.5}, data=str(shared_data),
                                 overrides=["structure.learn.epochs=1"])
    assert recipe.data.dataset == "cifar10" and recipe.data.image_size == 32
    assert [b.name for b in recipe.structure.blocks] == ["stem", "stage1", "stage2"]  # the head has no γ
    assert all(b.flops == 0.5 for b in recipe.structure.blocks)
    path = save_recipe(raw, tmp_path)
    again = api.load_recipe(str(path), data_root=str(shared_data))
    assert again.structure.blocks == recipe.structure.blocks and again.teacher.model == recipe.teacher.model


def test_blocks_lists_stages_with_fixed_groups(capsys, user_file):
    assert main(["blocks", "--model", f"{user_file}:build", "--input-shape", "1,3,32,32", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    stages = {b["name"]: b for b in listing["blocks"]}
    assert list(stages) == ["stem", "stage1", "stage2", "head"]
    assert stages["stage1"]["prunable_groups"] >= 2 and stages["stage1"]["flops"] > 0
    assert stages["head"]["prunable_groups"] == 0 and stages["head"]["fixed_groups"]
    assert main(["blocks", "--model", f"{user_file}:build", "--input-shape", "1,3,32"]) == 2


def test_wrong_surgery_is_refused_naming_the_module(capsys, tmp_path, user_file, shared_data, monkeypatch):
    """A pruned network that differs from the masked one (here: one pruned conv's weights corrupted) is refused
    in one line naming that conv, and no compact model is written."""
    from edgekd.pipeline import compress as stage

    real_prune = stage.prune_model

    def corrupting_prune(*args, **kwargs):
        result = real_prune(*args, **kwargs)
        with torch.no_grad():
            result.model.stage1.conv2.weight.mul_(-1.0)
        return result

    monkeypatch.setattr(stage, "prune_model", corrupting_prune)
    tiny = ["data.train_subset=128", "data.val_size=32", "data.test_subset=64", "data.batch_size=32",
            "data.workers=0", "structure.learn.epochs=1", "structure.finetune.epochs=1"]
    _one_line_error(capsys, _compress(f"{user_file}:build", shared_data, "--out", str(tmp_path / "run"),
                                      *[a for item in tiny for a in ("--set", item)]),
                    "first at stage1.conv2 (Conv2d)")
    assert not (tmp_path / "run" / "model.pt").exists()
