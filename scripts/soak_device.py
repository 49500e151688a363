"""Device soak (docs/benchmarks.md, "## Device soak"): many benches against a loopback board with faults.

Starts its own loopback sshd (:class:`edgekd.testing.boards.Sshd`) and benches a cached stand-in artifact
(shell runner, :func:`edgekd.testing.boards.stand_in_artifact`) ``--benches`` times, each on a fresh
connection, storing each measurement in its own results store with a unique ``soak_tag``. A seeded RNG
injects faults while a bench runs:

* ``drop``: SIGKILL the per-connection sshd processes (the listener stays up);
* ``restart``: stop the whole sshd (listener and sessions) and start it again on the same port;
* ``full``: the bench's cache directory cannot take the upload (a 16 KiB tmpfs when mounting works here,
  else a directory under /sys, which refuses writes even to root).

It ends by checking that every completed bench is stored exactly once (and no failed one at all), that
the board cache is consistent (every blob hashes to its name, the artifact's stage matches its manifest,
no temporaries) and that the board lock is free. Not part of the test suite.

Usage: ``.venv/bin/python scripts/soak_device.py [--benches 200] [--max-minutes 20] [--seed 14]``
(needs openssh-server; ``--docs ''`` skips writing the section).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.atomic import sha256_file  # noqa: E402
from edgekd.compile.artifact import read_manifest  # noqa: E402
from edgekd.config.devices import Device  # noqa: E402
from edgekd.device import connect  # noqa: E402
from edgekd.device.bench import BenchOptions, bench  # noqa: E402
from edgekd.device.cache import stage_id, verify_cache  # noqa: E402
from edgekd.device.lock import board_lock  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.results.markdown import write_section  # noqa: E402
from edgekd.results.store import ResultsStore  # noqa: E402
from edgekd.testing.boards import Sshd, loopback_board, stand_in_artifact  # noqa: E402

SECTION = "## Device soak"
OPTIONS = BenchOptions(runs=5, min_seconds=0.0, warmup_seconds=0.0, warmup_runs=1, timeout_s=30, power=False,
                       idle_seconds=0.0, lock_timeout_s=60)


def session_pids(server: Sshd) -> list[int]:
    """The per-connection sshd processes (direct children of the listener)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    pairs = (line.split() for line in out.splitlines())
    return [int(pid) for pid, ppid in pairs if server.proc is not None and int(ppid) == server.proc.pid]


def drop(server: Sshd) -> int:
    killed = 0
    for pid in session_pids(server):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def restart(server: Sshd) -> None:
    server.stop()
    time.sleep(0.1)
    server.start()


def full_cache(work: Path) -> tuple[str, str]:
    """A cache directory that cannot take the upload: (path, how)."""
    mount = work / "tiny-tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode == 0:
        return str(mount / "cache"), "16 KiB tmpfs"
    return "/sys/edgekd-soak-cache", "a directory under /sys (mounting a tmpfs failed here)"


def normalise(message: str) -> str:
    """A failure message with paths, addresses and numbers blanked, to count failures by kind."""
    text = message.splitlines()[0] if message else "(empty)"
    text = re.sub(r"'?/[^\s':]+'?", "<path>", text)
    text = re.sub(r"root@127\.0\.0\.1:\d+", "<board>", text)
    text = re.sub(r"\b\d+(\.\d+)?\b", "N", text)
    return text[:200]


def check_cache(device: Device, artifact: Path) -> dict:
    """Board-side consistency: blobs hash to their names, the stage matches the manifest, no leftovers."""
    cache_dir = Path(device.cache_dir)
    files = dict(read_manifest(artifact).files)
    with connect(device) as conn:
        found = verify_cache(conn, device.cache_dir)
        with board_lock(conn, device, what="soak check", timeout=10, on_wait=None):
            lock_free = True
    stage = cache_dir / "stage" / stage_id(files)
    stage_bad = [rel for rel, sha in files.items() if not (stage / rel).is_file() or sha256_file(stage / rel) != sha]
    names = [p.name for p in cache_dir.iterdir()]
    return {
        "blobs_checked": len(found.checked), "blobs_bad": len(found.bad), "stage_mismatches": len(stage_bad),
        "leftover_tmp": sum(n.startswith(".tmp-") for n in names),
        "leftover_run_dirs": sum(n.startswith(".run-") for n in names),
        "lock_free_at_end": lock_free,
    }


def soak(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="edgekd-soak-"))
    server, device = loopback_board(work, "soak")
    full_dir, full_how = full_cache(work)
    full_device = device.model_copy(update={"cache_dir": full_dir})
    artifact = stand_in_artifact(work / "artifact", seconds=0.05, runs=5, payload_bytes=64 * 1024)
    store = ResultsStore(work / "results.jsonl")
    injected: collections.Counter = collections.Counter()
    hit: collections.Counter = collections.Counter()
    failures: collections.Counter = collections.Counter()
    completed: list[str] = []
    seconds: list[float] = []
    started = time.perf_counter()
    deadline = started + args.max_minutes * 60
    try:
        with connect(device) as conn:  # the cached artifact: the soak benches find it on the board
            bench(conn, device, artifact, OPTIONS)
        attempted = 0
        for index in range(args.benches):
            if time.perf_counter() > deadline:
                break
            attempted += 1
            tag = f"soak-{args.seed}-{index}"
            roll = rng.random()
            kind = ("drop" if roll < args.drop_rate else
                    "restart" if roll < args.drop_rate + args.restart_rate else
                    "full" if roll < args.drop_rate + args.restart_rate + args.full_rate else None)
            target = full_device if kind == "full" else device
            timer = None
            if kind in ("drop", "restart"):
                delay = rng.uniform(0.0, 0.25)
                timer = threading.Timer(delay, drop if kind == "drop" else restart, args=(server,))
                timer.start()
            if kind:
                injected[kind] += 1

            def keep(result, tag=tag) -> None:
                store.append({**result.to_row(), "soak_tag": tag})

            t0 = time.perf_counter()
            outcome = "ok"
            try:
                with connect(target) as conn:
                    bench(conn, target, artifact, OPTIONS, on_result=keep)
                completed.append(tag)
            except Exception as err:  # noqa: BLE001 - a non-edgekd exception is a finding: counted, named
                outcome = normalise(str(err))
                if not isinstance(err, EdgekdError):
                    outcome = f"UNEXPECTED {type(err).__name__} (not a one-line DeviceError): {outcome}"
                failures[f"{kind or 'no fault'}: {outcome}"] += 1
                if kind:
                    hit[kind] += 1
            finally:
                if timer is not None:
                    timer.join()
            seconds.append(time.perf_counter() - t0)
            if args.verbose:
                print(f"{index} {kind or '-'} {seconds[-1]:.2f} s {outcome}", flush=True)
            if (index + 1) % 25 == 0:
                print(f"{index + 1} benches, {len(completed)} completed, {time.perf_counter() - started:.0f} s",
                      flush=True)
        wall = time.perf_counter() - started
        rows = store.rows()
        per_tag = collections.Counter(r.get("soak_tag") for r in rows)
        done = set(completed)
        consistency = check_cache(device, artifact)
    finally:
        server.stop()
        if full_how.startswith("16 KiB"):
            subprocess.run(["umount", str(Path(full_dir).parent)], check=False)
    return {
        "command": args.command, "seed": args.seed, "benches_requested": args.benches, "benches_attempted": attempted,
        "benches_completed": len(completed), "faults_injected": dict(injected), "faults_that_failed_a_bench": dict(hit),
        "failures": dict(failures.most_common()), "rows_stored": len(rows),
        "completed_stored_once": sum(per_tag[t] == 1 for t in done),
        "completed_missing": sum(per_tag[t] == 0 for t in done),
        "duplicates": sum(n > 1 for n in per_tag.values()),
        "rows_of_failed_benches": sum(n for t, n in per_tag.items() if t not in done),
        "full_cache": full_how, "wall_s": round(wall, 1),
        "bench_s_median": round(sorted(seconds)[len(seconds) // 2], 2) if seconds else None,
        "bench_s_max": round(max(seconds), 2) if seconds else None, **consistency,
    }


def render(report: dict) -> str:
    faults = ", ".join(f"{k} {v}" for k, v in sorted(report["faults_injected"].items())) or "none"
    hits = ", ".join(f"{k} {v}" for k, v in sorted(report["faults_that_failed_a_bench"].items())) or "none"
    lines = [
        "`scripts/soak_device.py`: benches of a cached stand-in artifact (shell runner, 64 KiB model.so) against "
        "a loopback sshd the script starts itself, each bench on a fresh connection and stored in the soak's own "
        "results store with a unique tag; faults from a seeded RNG while a bench runs: `drop` kills the "
        "per-connection sshd processes, `restart` stops and starts sshd on the same port, `full` benches into a "
        f"cache directory that cannot take the upload ({report['full_cache']}). A fault that lands after the "
        "bench finished fails nothing.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| benches attempted / completed | {report['benches_attempted']} / {report['benches_completed']} |",
        f"| faults injected | {faults} |",
        f"| faults that failed a bench | {hits} |",
        f"| rows stored | {report['rows_stored']} |",
        f"| completed benches stored exactly once | {report['completed_stored_once']} |",
        f"| completed benches missing from the store | {report['completed_missing']} |",
        f"| duplicate rows (tags stored more than once) | {report['duplicates']} |",
        f"| rows of failed benches | {report['rows_of_failed_benches']} |",
        f"| cache blobs checked / bad | {report['blobs_checked']} / {report['blobs_bad']} |",
        f"| stage files not matching the manifest | {report['stage_mismatches']} |",
        f"| leftover `.tmp-` uploads / `.run-` directories | {report['leftover_tmp']} / "
        f"{report['leftover_run_dirs']} |",
        f"| board lock free at the end | {'yes' if report['lock_free_at_end'] else 'no'} |",
        f"| wall time | {report['wall_s']} s (per bench: median {report['bench_s_median']} s, "
        f"max {report['bench_s_max']} s) |",
        "",
        "Failures by message (paths and numbers blanked):",
        "",
        "| count | fault: message |",
        "|---|---|",
    ]
    lines += [f"| {n} | `{msg.replace('|', '/')}` |" for msg, n in report["failures"].items()] or ["| 0 | (none) |"]
    unexpected = sum(n for msg, n in report["failures"].items() if "UNEXPECTED" in msg)
    lines += ["", "Fault outcomes depend on timing, so the counts vary between runs of one seed. Any exception that "
              "leaves `bench` as something other than a one-line `DeviceError` (the CLI would print a traceback) "
              f"is counted as `UNEXPECTED`: {unexpected} in this run. (Early runs of this script found paramiko's "
              "`SSHException` and `ConnectionResetError` escaping while SFTP was opened; `edgekd/device/ssh.py` now "
              "turns every link-level error into one line.)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benches", type=int, default=200)
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--drop-rate", type=float, default=0.1)
    parser.add_argument("--restart-rate", type=float, default=0.05)
    parser.add_argument("--full-rate", type=float, default=0.05)
    parser.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="'' = do not write docs")
    parser.add_argument("--verbose", action="store_true", help="One line per bench.")
    parser.add_argument("--json", type=Path, help="Also write the report as JSON here.")
    args = parser.parse_args()
    args.command = ".venv/bin/python scripts/soak_device.py " + shlex.join(sys.argv[1:])
    report = soak(args)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.docs:
        write_section(args.docs, SECTION, render(report))
    bad = (report["completed_missing"] or report["duplicates"] or report["rows_of_failed_benches"]
           or report["blobs_bad"] or report["stage_mismatches"] or not report["lock_free_at_end"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
