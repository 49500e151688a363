import json

import pytest

from edgekd.cli import main

TINY = ["--set", "training.epochs=1", "--set", "data.train_subset=128", "--set", "data.val_size=64",
        "--set", "data.test_subset=64", "--set", "data.batch_size=32"]


@pytest.mark.slow
def test_train_then_distill_json(tmp_path, capsys):
    assert main(["train", "--recipe", "quickstart", "--out", str(tmp_path / "t"), "--json", *TINY]) == 0
    teacher = json.loads(capsys.readouterr().out)
    for key in ("run_dir", "test_acc", "flops", "params"):
        assert key in teacher
    assert teacher["data"]["test"] == 64 and teacher["flops"] > teacher["params"] > 0
    assert main(["distill", "--recipe", "quickstart", "--teacher", teacher["run_dir"], "--out", str(tmp_path / "s"),
                 "--json", *TINY]) == 0
    student = json.loads(capsys.readouterr().out)
    assert student["flops"] < teacher["flops"]
    assert len(student["teacher"]["sha256"]) == 64
    lines = (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kd"] > 0


def test_second_run_into_same_dir_is_refused(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert main(["train", "--recipe", "quickstart", "--out", str(tmp_path), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
