"""Target profiles: shipped ones validate, user profiles override, bad files fail in one line (and do not hide
the others from the listing), roofline priors are optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edgekd.compile import CompileOptions, compile_model, verify_artifact
from edgekd.config.target import list_targets, load_target, scan_targets, target_search_dirs
from edgekd.errors import ConfigError

SHIPPED = {"jetson-tx2", "raspberry-pi-4", "raspberry-pi-5", "android-arm64", "host"}


def _user_targets() -> Path:
    directory = Path(os.environ["EDGEKD_CONFIG_DIR"]) / "targets"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_shipped_profiles_all_load():
    names = {profile.name for profile in list_targets()}
    assert names >= SHIPPED
    assert all(entry.error is None for entry in scan_targets() if entry.name in SHIPPED)


def test_jetson_tx2_profile_facts():
    tx2 = load_target("jetson-tx2")
    assert tx2.arch == "aarch64" and tx2.glibc_floor == "2.27"
    assert tx2.tvm_target.as_tvm_dict() == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a57",
                                            "mattr": ["+neon"], "num-cores": 4}
    assert tx2.runtime.platform == "manylinux_2_28_aarch64"
    assert tx2.threads.affinity == [0, 3, 4, 5]
    assert any("GPU" in note and "NOT" in note for note in tx2.notes)
    assert {sensor.rail for sensor in tx2.power_sensors} >= {"VDD_IN", "VDD_SYS_CPU"}


def test_host_mcpu_resolves_to_the_given_cpu():
    host = load_target("host")
    assert host.is_host and host.tvm_target.as_tvm_dict(host_cpu="znver4")["mcpu"] == "znver4"


def test_user_directory_comes_first_and_overrides():
    assert target_search_dirs()[0] == Path(os.environ["EDGEKD_CONFIG_DIR"]) / "targets"
    data = yaml.safe_load((target_search_dirs()[1] / "raspberry-pi-4.yaml").read_text())
    data["description"] = "my overclocked pi"
    path = _user_targets() / "raspberry-pi-4.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        assert load_target("raspberry-pi-4").description == "my overclocked pi"
        assert [p for p in list_targets() if p.name == "raspberry-pi-4"][0].source == str(path)
    finally:
        path.unlink()


def test_unknown_target_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"target 'no-such-board': not found in .*available: .*jetson-tx2"):
        load_target("no-such-board")


def test_invalid_field_names_file_and_field(tmp_path):
    data = yaml.safe_load((target_search_dirs()[1] / "jetson-tx2.yaml").read_text())
    data["threads"]["default"] = 0
    path = tmp_path / "jetson-tx2.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_target(str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "threads.default=0" in message


def test_unknown_field_is_refused(tmp_path):
    data = yaml.safe_load((target_search_dirs()[1] / "host.yaml").read_text())
    data["gpu"] = "yes"
    path = tmp_path / "host.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="gpu=yes: unknown field"):
        load_target(str(path))


def test_triple_must_match_arch(tmp_path):
    data = yaml.safe_load((target_search_dirs()[1] / "raspberry-pi-5.yaml").read_text())
    data["arch"] = "x86_64"
    data["toolchain"] = "host-cc"
    path = tmp_path / "raspberry-pi-5.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="does not match arch"):
        load_target(str(path))


def test_a_broken_user_profile_hides_no_shipped_one(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path / "config"))
    data = yaml.safe_load((target_search_dirs()[1] / "host.yaml").read_text()) | {"name": "broken"}
    data["threads"]["default"] = 0
    (_user_targets() / "broken.yaml").write_text(yaml.safe_dump(data))
    (_user_targets() / "garbled.yaml").write_text("name: [\n")
    assert {profile.name for profile in list_targets()} == SHIPPED
    entries = {entry.name: entry for entry in scan_targets()}
    assert entries["broken"].value is None and "threads.default=0" in entries["broken"].error
    assert entries["garbled"].path == _user_targets() / "garbled.yaml" and "malformed" in entries["garbled"].error
    assert load_target("jetson-tx2").name == "jetson-tx2"
    with pytest.raises(ConfigError, match="threads.default=0"):
        load_target("broken")


def test_a_user_profile_without_roofline_loads_and_compiles(tmp_path, monkeypatch):
    """``roofline`` is optional: a copy of the shipped host profile without it compiles a small net."""
    from edgekd.testing.models import small_net

    monkeypatch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path / "config"))
    data = yaml.safe_load((target_search_dirs()[1] / "host.yaml").read_text()) | {"name": "host-no-roofline"}
    del data["roofline"]
    (_user_targets() / "host-no-roofline.yaml").write_text(yaml.safe_dump(data))
    profile = load_target("host-no-roofline")
    assert profile.roofline is None and profile.is_host
    out = tmp_path / "artifact"
    compile_model(small_net(), "host-no-roofline", out, CompileOptions(model_name="smallnet", onnx=False))
    manifest = verify_artifact(out)
    assert manifest.target.name == "host-no-roofline" and not manifest.tuned
