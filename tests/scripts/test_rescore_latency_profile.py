"""``scripts/rescore_latency_profile.py`` on a real saved profile (the tiny quickstart family on ``local``): the
re-score of its networks, and ``--kernels``, which times every network's own kernels on the board."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rescore_latency_profile.py"


@pytest.fixture(scope="module")
def rescore():
    spec = importlib.util.spec_from_file_location("rescore_latency_profile_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_saved_model_is_rescored_from_its_tables_and_from_its_networks_own_kernels(tiny_latency, rescore, capsys):
    from edgekd.latency.store import model_path

    path = model_path("local", tiny_latency.network, "untuned")
    networks = tiny_latency.calibration.samples + tiny_latency.validation.configurations
    reports = {}
    for extra in ([], ["--kernels", "local"]):
        capsys.readouterr()
        assert rescore.main([str(path), "--sizes", "2", "--draws", "5", "--json", *extra]) == 0
        [reports[bool(extra)]] = json.loads(capsys.readouterr().out)
    tables, kernels = reports[False], reports[True]
    assert tables["networks"] == kernels["networks"] == networks and kernels["kernels"] == "local"
    # the tables' pairs are the profile's own Σ; the kernels' are measured anew: same networks, same p50s
    assert [y for _x, y in tables["pairs"]] == [y for _x, y in kernels["pairs"]]
    assert all(x > 0 for x, _y in kernels["pairs"]) and [x for x, _ in kernels["pairs"]] != [x for x, _ in
                                                                                             tables["pairs"]]
    assert {r["rule"] for r in kernels["rows"]} == {"median", "mean", "origin", "line"}
