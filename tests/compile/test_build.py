"""Host compile: the TVM library computes what PyTorch computes, and the artifact follows its contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from compile_helpers import read_float32
from torch import nn

from edgekd.compile import CompileOptions, compile_model, read_manifest, verify_artifact
from edgekd.compile.build import run_library
from edgekd.errors import CheckpointError, CompileError
from edgekd.testing.models import randomise_bn, small_net

TOLERANCE = 1e-4


def test_host_library_matches_pytorch(host_artifact):
    manifest = read_manifest(host_artifact)
    example = read_float32(host_artifact / manifest.input.file, manifest.input.shape)
    reference = read_float32(host_artifact / manifest.output.file, manifest.output.shape)
    expected = small_net()(torch.from_numpy(example)).detach().numpy()
    np.testing.assert_allclose(reference, expected, atol=1e-6)
    got = run_library(host_artifact / manifest.library, example)
    np.testing.assert_allclose(got, reference, atol=TOLERANCE, rtol=0)


def test_host_library_output_depends_on_input(host_artifact):
    """Guards against the vacuous case (a network whose output ignores its input)."""
    manifest = read_manifest(host_artifact)
    first = run_library(host_artifact / manifest.library, np.zeros(manifest.input.shape, np.float32))
    second = run_library(host_artifact / manifest.library, np.ones(manifest.input.shape, np.float32))
    assert np.abs(first - second).max() > 1e-2
    expected = small_net()(torch.ones(manifest.input.shape)).detach().numpy()
    np.testing.assert_allclose(second, expected, atol=TOLERANCE, rtol=0)


def test_manifest_lists_every_file_with_its_hash(host_artifact):
    manifest = verify_artifact(host_artifact)
    on_disk = {p.relative_to(host_artifact).as_posix() for p in host_artifact.rglob("*") if p.is_file()}
    assert set(manifest.files) == on_disk - {"manifest.json"}
    assert {"model.so", "edgekd-runner", "lib/libtvm_runtime.so", "lib/libtvm_ffi.so", "input.bin",
            "reference_output.bin", "model.onnx"} <= set(manifest.files)
    assert manifest.input.shape == [1, 3, 32, 32] and manifest.output.shape == [1, 10]
    assert manifest.target.name == "host" and manifest.target.tvm_target["mcpu"] != "host"
    assert manifest.versions["tvm"].startswith("0.27") and not manifest.tuned
    raw = json.loads((host_artifact / "manifest.json").read_text())
    assert set(raw) >= {"schema_version", "model", "target", "input", "output", "library", "runner",
                        "runtime_libs", "onnx", "versions", "tuned", "tuning", "files", "created"}


def test_verify_detects_a_modified_file(host_artifact, tmp_path):
    copy = tmp_path / "artifact"
    shutil.copytree(host_artifact, copy)
    with open(copy / "input.bin", "r+b") as handle:
        handle.write(b"\x00\x00\x80\x7f")
    with pytest.raises(CheckpointError, match="input.bin does not match its sha256"):
        verify_artifact(copy)


def test_onnx_export_matches_pytorch(host_artifact):
    manifest = read_manifest(host_artifact)
    example = read_float32(host_artifact / manifest.input.file, manifest.input.shape)
    session = ort.InferenceSession(str(host_artifact / manifest.onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": example})
    np.testing.assert_allclose(got, read_float32(host_artifact / manifest.output.file, manifest.output.shape),
                               atol=TOLERANCE, rtol=0)


class _Unsupported(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x).sum(dim=(2, 3))


def test_unimportable_model_names_the_operator(tmp_path):
    with pytest.raises(CompileError, match=r"cannot import operator\(s\) special_bessel_j0\.default"):
        compile_model(_Unsupported(), "host", tmp_path / "out", CompileOptions(onnx=False, runner=False))
    assert not (tmp_path / "out").exists()


def test_recompile_replaces_the_artifact_atomically(tmp_path):
    out = tmp_path / "art"
    options = CompileOptions(onnx=False, runner=False)
    compile_model(small_net(0), "host", out, options)
    first = read_manifest(out).files["reference_output.bin"]
    compile_model(small_net(1), "host", out, options)
    assert read_manifest(out).files["reference_output.bin"] != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging leftovers


@pytest.mark.slow
def test_mobilenetv2_cifar_matches_pytorch(tmp_path):
    from edgekd.models import create_model

    torch.manual_seed(0)
    model = randomise_bn(create_model("mobilenetv2_cifar", num_classes=10, width_mult=0.5))
    artifact = compile_model(model, "host", tmp_path / "mbv2", CompileOptions(onnx=False, runner=False))
    manifest = artifact.manifest
    example = read_float32(artifact.path / manifest.input.file, manifest.input.shape)
    reference = read_float32(artifact.path / manifest.output.file, manifest.output.shape)
    got = run_library(artifact.path / manifest.library, example)
    np.testing.assert_allclose(got, reference, atol=TOLERANCE, rtol=0)
    other = run_library(artifact.path / manifest.library, -example)
    assert np.abs(other - got).max() > 1e-3


@pytest.mark.slow
def test_border_corrected_pruned_resnet_compiles_and_matches(tmp_path):
    """A pruned network with border-corrected convs (edgekd.models.layers) through TVM and ONNX."""
    from edgekd.models import create_model
    from edgekd.models.layers import BorderCorrectedConv2d
    from edgekd.structure.groups import trace_groups
    from edgekd.structure.prune import final_masks, prune_model
    from edgekd.testing.models import kill_channels

    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20_cifar", num_classes=10))
    graph = trace_groups(model)
    kill_channels(graph, 0.4)
    pruned = prune_model(model, graph, final_masks(graph, 1e-2)).model
    assert any(isinstance(m, BorderCorrectedConv2d) for m in pruned.modules())
    artifact = compile_model(pruned, "host", tmp_path / "pruned", CompileOptions(runner=False))
    manifest = artifact.manifest
    example = read_float32(artifact.path / manifest.input.file, manifest.input.shape)
    reference = read_float32(artifact.path / manifest.output.file, manifest.output.shape)
    got = run_library(artifact.path / manifest.library, example)
    np.testing.assert_allclose(got, reference, atol=TOLERANCE, rtol=0)
    assert np.abs(run_library(artifact.path / manifest.library, -example) - got).max() > 1e-3
    session = ort.InferenceSession(str(artifact.path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: example})[0]
    np.testing.assert_allclose(onnx_out, reference, atol=TOLERANCE, rtol=0)
