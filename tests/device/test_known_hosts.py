"""Recording a host key edits edgekd's known_hosts in place (issue 14): every other line is kept byte for
byte, a symlink stays a symlink, and concurrent recorders do not lose each other's entries."""

from __future__ import annotations

import threading

import paramiko
import pytest

from edgekd.device.ssh import Connection


@pytest.fixture(scope="module")
def key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def line_for(key, port: int) -> str:
    return f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n"


def test_other_lines_are_kept_byte_for_byte(tmp_path, key):
    hashed = paramiko.HostKeys.hash_host("[127.0.0.1]:2222")
    other = paramiko.ECDSAKey.generate()
    kept = [
        "# my hosts, by hand\n",
        "\n",
        f"@cert-authority *.lan {other.get_name()} {other.get_base64()}\n",
        f"@revoked [127.0.0.1]:2222 {other.get_name()} {other.get_base64()}  \n",
        f"otherhost,10.0.0.1   {other.get_name()} {other.get_base64()} a comment\n",
    ]
    known = tmp_path / "known_hosts"
    stale = [f"[127.0.0.1]:2222 {other.get_name()} {other.get_base64()}\n",
             f"{hashed} {other.get_name()} {other.get_base64()}\n"]
    known.write_text(kept[0] + stale[0] + "".join(kept[1:]) + stale[1])
    known.chmod(0o644)
    Connection("127.0.0.1", port=2222, known_hosts=known).record_host_key(key)
    assert known.read_text() == "".join(kept) + line_for(key, 2222)
    assert known.stat().st_mode & 0o777 == 0o644


def test_a_shared_line_loses_only_our_name(tmp_path, key):
    other = paramiko.ECDSAKey.generate()
    known = tmp_path / "known_hosts"
    known.write_text(f"a,[127.0.0.1]:2222,b {other.get_name()} {other.get_base64()}\n")
    Connection("127.0.0.1", port=2222, known_hosts=known).record_host_key(key)
    assert known.read_text() == f"a,b {other.get_name()} {other.get_base64()}\n" + line_for(key, 2222)


def test_a_symlink_is_written_through(tmp_path, key):
    real = tmp_path / "dotfiles" / "known_hosts"
    real.parent.mkdir()
    real.write_text("# kept\n")
    link = tmp_path / "known_hosts"
    link.symlink_to(real)
    Connection("127.0.0.1", port=2200, known_hosts=link).record_host_key(key)
    assert link.is_symlink() and real.read_text() == "# kept\n" + line_for(key, 2200)


def test_concurrent_recorders_both_land(tmp_path, key):
    known = tmp_path / "known_hosts"
    known.write_text("# shared\n")
    errors: list[BaseException] = []

    def record(ports):
        try:
            for port in ports:
                Connection("127.0.0.1", port=port, known_hosts=known).record_host_key(key)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=record, args=(range(base, base + 30),)) for base in (3000, 4000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    text = known.read_text()
    missing = [p for base in (3000, 4000) for p in range(base, base + 30) if line_for(key, p) not in text]
    assert not missing and text.startswith("# shared\n")
