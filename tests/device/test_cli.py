"""The device CLI's store commands (network commands are covered in tests/integration)."""

from __future__ import annotations

import json

from edgekd.cli import main


def test_add_list_remove(capsys):
    assert main(["device", "add", "tx2", "--target", "jetson-tx2", "--host", "tx2.lan", "--user", "nvidia",
                 "--exec-prefix", "qemu-aarch64 -L /s", "--emulated"]) == 0
    capsys.readouterr()
    assert main(["device", "list", "--json"]) == 0
    devices = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert devices["tx2"]["exec_prefix"] == ["qemu-aarch64", "-L", "/s"] and devices["tx2"]["emulated"]
    assert "local" in devices
    assert main(["device", "add", "tx2", "--target", "jetson-tx2", "--host", "x"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["device", "remove", "tx2"]) == 0


def test_bad_port_is_one_line(capsys):
    assert main(["device", "add", "b", "--target", "host", "--host", "h", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgekd: error: edgekd device add: port=0") and err.count("\n") == 1
