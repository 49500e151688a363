"""``compress`` end to end through the API and the CLI, on the tiny session runs of tests/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import TINY_OVERRIDES

from edgekd import api
from edgekd.cli import main
from edgekd.errors import ConfigError
from edgekd.learn.engine import evaluate
from edgekd.models.counting import count_model
from edgekd.models.io import load_model

pytestmark = pytest.mark.slow


def test_api_compress_writes_a_compact_model_that_meets_its_blocks(tiny_compress, tiny_teacher):
    run = Path(tiny_compress.run_dir)
    report = json.loads((run / "report.json").read_text())
    assert report == json.loads(json.dumps(tiny_compress.to_dict()))
    assert {b["name"] for b in report["blocks"]} == {"stage3", "stage4", "stage6"}
    for block in report["blocks"]:  # each budget is half the dense block's FLOPs
        assert block["budget"]["flops"] == pytest.approx(0.5 * block["dense_flops"])
        assert block["flops"] <= 0.6 * block["dense_flops"], block
        assert block["channels_after"] < block["channels_before"], block
    compact = load_model(run)  # loads from the file alone (no recipe)
    dense = load_model(tiny_teacher)
    assert count_model(compact.model).flops == report["student"]["flops"] < report["teacher"]["flops"]
    assert count_model(dense.model).flops == report["teacher"]["flops"]
    # ops no block covers are frozen: the stem keeps the teacher's width
    assert compact.model.features[0][0].weight.shape == dense.model.features[0][0].weight.shape
    # pruning is exact: the pruned network computes what the masked one did
    assert report["pruning"]["deviation"]["max_abs"] <= 1e-4 * max(1.0, report["pruning"]["deviation"]["output_scale"])
    assert report["pruning"]["pruned_test_acc"] == report["pruning"]["masked_test_acc"]
    for name in ("pruned/model.pt", "arch.json", "learn/metrics.jsonl", "finetune/metrics.jsonl", "recipe.yaml"):
        assert (run / name).is_file(), name
    # structure learning clips its gradients by default (the recipe sets no clip); finetuning does not
    learn = json.loads((run / "learn" / "metrics.jsonl").read_text().splitlines()[-1])
    finetune = json.loads((run / "finetune" / "metrics.jsonl").read_text().splitlines()[-1])
    assert learn["grad_norm"] > 0 and "grad_norm" not in finetune


def test_compress_report_accuracy_is_the_saved_model_s(tiny_compress, tiny_recipe):
    from edgekd.data import build_loaders

    loaders = build_loaders(tiny_recipe.data, tiny_recipe.seed)
    compact = load_model(tiny_compress.run_dir).model
    assert evaluate(compact, loaders.test).acc == pytest.approx(tiny_compress.student["test_acc"])


def test_cli_compress_json_is_one_document(tiny_teacher, tmp_path, capsys):
    sets = [arg for value in TINY_OVERRIDES for arg in ("--set", value)]
    code = main(["compress", "--recipe", "quickstart", "--teacher", str(tiny_teacher), "--out", str(tmp_path / "c"),
                 "--target", "host", "--json", *sets, "--set", "structure.learn.epochs=1",
                 "--set", "structure.finetune.epochs=0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)  # the whole of stdout is one JSON document
    assert document["run_dir"] == str(tmp_path / "c") and document["target"] == "host"
    assert document["phases"]["finetune"] == {"epochs": 0}
    assert (tmp_path / "c" / "model.pt").is_file()
    # the target's channel multiple (8 lanes of AVX2) rounds the widths; without a board nothing is measured
    assert document["round_to"] == 8 and document["measured"] is None
    assert json.loads((tmp_path / "c" / "arch.json").read_text())["channel_multiple"] == 8
    assert "widths rounded to multiples of 8; nothing was measured" in captured.err
    assert all(b["channels_after"] % 8 == 0 or b["channels_after"] == b["channels_before"]
               for b in document["blocks"])


def test_a_finetune_can_start_from_the_teachers_weights_on_the_learned_channels(tiny_teacher, tmp_path, capsys):
    sets = [arg for value in TINY_OVERRIDES for arg in ("--set", value)]
    runs = {}
    for start in ("learned", "teacher"):
        code = main(["compress", "--recipe", "quickstart", "--teacher", str(tiny_teacher), "--out",
                     str(tmp_path / start), "--json", *sets, "--set", "structure.learn.epochs=1",
                     "--set", "structure.finetune.epochs=0", "--set", f"structure.finetune_from={start}"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        runs[start] = json.loads(captured.out)
    teacher = load_model(tiny_teacher).model.state_dict()
    learned, restarted = (load_model(tmp_path / s).model for s in ("learned", "teacher"))
    assert [b["channels_after"] for b in runs["learned"]["blocks"]] == [b["channels_after"]
                                                                        for b in runs["teacher"]["blocks"]]
    stem = "features.0.0.weight"  # frozen: the teacher's width, trained while the structure was learnt
    assert torch.equal(restarted.state_dict()[stem], teacher[stem])
    assert not torch.equal(learned.state_dict()[stem], teacher[stem])
    pruning = runs["teacher"]["pruning"]
    assert pruning["finetune_from"] == "teacher" and 0 <= pruning["start_test_acc"] <= 1
    assert runs["teacher"]["student"]["test_acc"] == pruning["start_test_acc"]  # no finetune: the start itself
    learned_pruning = runs["learned"]["pruning"]
    assert learned_pruning["finetune_from"] == "learned"
    assert learned_pruning["start_test_acc"] == learned_pruning["pruned_test_acc"]
    assert load_model(tmp_path / "teacher" / "pruned").model.state_dict()[stem].equal(teacher[stem])


def test_taylor_saliency_chooses_channels_on_the_teacher_without_a_learn_phase(tiny_teacher, tmp_path, capsys):
    sets = [arg for value in TINY_OVERRIDES for arg in ("--set", value)]
    code = main(["compress", "--recipe", "quickstart", "--teacher", str(tiny_teacher), "--out", str(tmp_path / "t"),
                 "--json", *sets, "--set", "structure.finetune.epochs=0", "--set", "structure.saliency=taylor"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    learn = report["phases"]["learn"]
    assert learn["saliency"] == "taylor" and learn["steps"] == 0 and learn["batches"] > 0
    assert not (tmp_path / "t" / "learn").exists()  # nothing trained
    for block in report["blocks"]:  # fitted within each block's budget from the whole network
        assert block["flops"] <= block["budget"]["flops"] * (1 + 1e-9), block
        assert block["channels_after"] < block["channels_before"], block
    teacher = load_model(tiny_teacher).model.state_dict()
    stem = "features.0.0.weight"  # frozen: the teacher's, untouched
    assert torch.equal(load_model(tmp_path / "t").model.state_dict()[stem], teacher[stem])
    assert report["pruning"]["deviation"]["max_abs"] <= 1e-3 * max(1.0, report["pruning"]["deviation"]["output_scale"])
    # learnt weights have no place in a choice made on the teacher's: refused before a run directory exists
    recipe = api.load_recipe("quickstart", overrides=[*TINY_OVERRIDES, "structure.saliency=taylor"])
    with pytest.raises(ConfigError, match="saliency=taylor chooses channels on the teacher"):
        api.compress(recipe, out=tmp_path / "w", teacher=tiny_teacher, warm_start=tmp_path / "checkpoint.pt")
    assert not (tmp_path / "w").exists()


def test_an_unknown_target_or_device_is_one_line_before_anything_runs(tmp_path, capsys):
    for flag, value in (("--target", "nosuch-board"), ("--device", "nosuch-device")):
        code = main(["compress", "--recipe", "quickstart", "--out", str(tmp_path / "c"), flag, value])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and value in err[0], err
    assert not (tmp_path / "c").exists()


def test_compress_refuses_a_teacher_of_another_architecture(tiny_teacher, tmp_path, capsys):
    sets = [arg for value in TINY_OVERRIDES for arg in ("--set", value)]
    code = main(["compress", "--recipe", "quickstart", "--teacher", str(tiny_teacher), "--out", str(tmp_path / "c"),
                 *sets, "--set", "teacher.model.name=resnet20_cifar", "--set", "teacher.model.kwargs={}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "mobilenetv2_cifar" in err[0] and "resnet" in err[0], err


def test_compiled_compact_model_benches_locally_and_stores_each_repeat(tiny_compress, tmp_path):
    from edgekd import api
    from edgekd.models.io import save_model
    from edgekd.results.store import ResultsStore
    from edgekd.testing.models import randomise_bn

    # A one-epoch model's output barely depends on its input (|Δ| ~ 1e-4), which would make the PyTorch
    # comparison vacuous: the compact architecture gets random BatchNorm statistics instead.
    compact = load_model(tiny_compress.run_dir)
    model = randomise_bn(compact.model)
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        assert (model(x) - model(torch.zeros_like(x))).abs().max() > 1e-2
    save_model(tmp_path / "model.pt", model, compact.arch)
    artifact = api.compile_model(tmp_path / "model.pt", "host", tmp_path / "artifact", api.CompileOptions(onnx=False))
    options = api.BenchOptions(repeat=2, runs=10, min_seconds=0.05, warmup_seconds=0.02, idle_seconds=0.0,
                               threads=1, power=False)
    measured = api.bench(artifact.path, device="local", options=options, results=tmp_path / "results.jsonl")
    assert [m.repeat_index for m in measured] == [0, 1]
    for result in measured:
        assert result.max_abs_diff < 1e-4 and result.top1_agree == 1.0
        assert result.latency_valid and not result.emulated and result.threads == 1
    frame = ResultsStore(tmp_path / "results.jsonl").frame()
    assert len(frame) == 2 and set(frame["device"]) == {"local"}
    assert (frame["latency_ms_p50"] > 0).all() and frame["latency_valid"].all()
