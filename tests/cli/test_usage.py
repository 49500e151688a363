"""A mistyped command or option prints the usage and the error and exits 2: no traceback (issue 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.cli import main

TYPOS = {
    "command": (["trian"], "No such command 'trian'"),
    "option": (["train", "--recipee", "x"], "No such option: --recipee"),
    "sub-command": (["recipes", "lst"], "No such command 'lst'"),
    "missing option value": (["train", "--recipe"], "requires an argument"),
    "bad option value": (["bench", "art", "--repeat", "zero"], "Invalid value for '--repeat'"),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_usage_error_exits_2_with_usage(case, capsys):
    argv, message = TYPOS[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Usage: edgekd" in captured.err and message in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_help_exits_0_on_stdout(capsys):
    assert main(["--help"]) == 0
    assert "Usage: edgekd" in capsys.readouterr().out


def _console_script() -> Path:
    script = Path(sys.executable).with_name("edgekd")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (edgekd not installed in this environment)")
    return script


@pytest.mark.parametrize("argv", [["trian"], ["train", "--recipee", "x"]], ids=["command", "option"])
def test_console_script_typo_is_a_usage_message(argv):
    done = subprocess.run([str(_console_script()), *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "usage" in done.stderr.lower() and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""


def test_latency_profile_help_states_the_profiler_defaults():
    """The CLI does not import the profiler (torch) to render its help, so the defaults it states are literals:
    they must be ProfileOptions' own."""
    import inspect
    import re

    from edgekd.cli import latency_cmd
    from edgekd.latency.profile import LEVELS, ProfileOptions

    params = inspect.signature(latency_cmd.profile).parameters
    for name in ("refine", "tune_trials"):
        stated = re.search(r"\[default: (\d+)\]", params[name].default.help)
        assert stated and int(stated.group(1)) == getattr(ProfileOptions, name), name
    stated = re.search(r"\[default: (\d+) untuned, (\d+) tuned\]", " ".join(params["levels"].default.help.split()))
    assert stated and {"untuned": int(stated.group(1)), "tuned": int(stated.group(2))} == LEVELS
    for name in ("calibration", "heldout", "rounds"):
        assert params[name].default.default == getattr(ProfileOptions, name), name
