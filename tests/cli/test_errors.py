"""Bad input exits with code 2 and one stderr line naming file, field, value and what is accepted."""

import subprocess
import sys

import pytest

from edgekd.cli import main


@pytest.fixture
def bad_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nteacher: {model: {name: resnet20_cifar}\ntraining: [\n")
    return path


@pytest.fixture
def unknown_model(tmp_path):
    path = tmp_path / "unknown.yaml"
    path.write_text("name: unknown\nteacher:\n  model: {name: resnet57_cifar}\n")
    return path


CASES = {
    "unknown model": (lambda p: ["train", "--recipe", str(p["unknown_model"])],
                      ["unknown.yaml", "teacher.model.name", "resnet57_cifar", "accepted:"]),
    "negative epochs": (lambda p: ["train", "--recipe", "resnet56", "--set", "training.epochs=-1"],
                        ["resnet56.yaml", "training.epochs=-1", "greater than or equal to 0"]),
    "missing data root": (lambda p: ["train", "--recipe", "resnet56", "--data", str(p["tmp"] / "nowhere")],
                          ["data.root=", "nowhere", "--data DIR"]),
    "malformed yaml": (lambda p: ["train", "--recipe", str(p["bad_yaml"])],
                       ["broken.yaml", "<yaml>=malformed", "line"]),
    "unknown override key": (lambda p: ["train", "--recipe", "mbv2", "--set", "training.epochz=3"],
                             ["mbv2.yaml", "training.epochz", "unknown field", "accepted there: amp"]),
    "unknown recipe": (lambda p: ["train", "--recipe", "mbv3"], ["recipe 'mbv3'", "available:", "quickstart"]),
    "bad budget": (lambda p: ["recipes", "show", "mbv2", "--set", "structure.global={flops: -3}"],
                   ["mbv2.yaml", "structure.global.flops", "positive"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_exit_2(case, capsys, tmp_path, bad_yaml, unknown_model):
    build, expected = CASES[case]
    argv = build({"tmp": tmp_path, "bad_yaml": bad_yaml, "unknown_model": unknown_model})
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("edgekd: error: ")
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_console_script_prints_no_traceback():
    argv = [sys.executable, "-m", "edgekd", "train", "--recipe", "resnet56", "--set", "training.epochs=-1"]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
