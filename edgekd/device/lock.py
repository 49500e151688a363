"""A run lock *on the board*: one bench (or tuning run) at a time per board, whoever the host.

Two hosts may share one board, so the lock lives on the board, in its cache directory:
``<cache>/.board.lock`` is ``flock``-ed by a process that this session starts on the board (a second
channel of the connection) and that holds it until the lock is released or the connection dies: the
kernel drops a flock with the process that held it, so a lock of a killed host process, a dropped
connection or a crashed board shell is never stale. ``<cache>/.board.owner`` says who holds it (the
holder's pid on the board, then host, pid, what, since) for the one "waiting for" message a second run
prints; an owner line whose board pid is dead is ignored.

    with board_lock(conn, device, what="bench resnet8", timeout=600):
        ...  # timed runs here see no other edgekd load on the board
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import posixpath
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from edgekd.errors import DeviceError

LOCK_NAME = ".board.lock"
OWNER_NAME = ".board.owner"

#: $1 cache dir, $2 seconds to wait ("" = forever), $3 owner line. Prints ``busy`` + the owner file + ``end``
#: when someone holds it, ``locked`` once held; then holds the lock until its stdin ends (channel closed).
_HOLD = r"""
cache=$1; wait_s=$2; owner=$3
mkdir -p "$cache" 2>/dev/null || [ -d "$cache" ] || { echo "error: cannot create the directory"; exit 3; }
{ exec 9>>"$cache/.board.lock"; } 2>/dev/null || { echo "error: cannot create $cache/.board.lock"; exit 3; }
command -v flock >/dev/null 2>&1 || { echo "error: flock(1) is missing on the board"; exit 4; }
live_owner() {  # the owner line, once it names a live process (the holder writes it just after locking)
  read -r pid rest 2>/dev/null < "$cache/.board.owner" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
if ! flock -n -x 9; then
  got=0; i=0
  while ! live_owner && [ "$i" -lt 20 ]; do
    sleep 0.05 2>/dev/null || sleep 1
    i=$((i + 1))
    if flock -n -x 9; then got=1; break; fi
  done
  if [ "$got" = 0 ]; then
    echo busy; live_owner && cat "$cache/.board.owner"; echo; echo end
    if [ -n "$wait_s" ]; then flock -x -w "$wait_s" 9 || exit 75; else flock -x 9 || exit 75; fi
  fi
fi
tmp="$cache/.board.owner.$$"
printf '%s %s\n' "$$" "$owner" > "$tmp" && mv -f "$tmp" "$cache/.board.owner"
echo locked
cat >/dev/null
rm -f "$cache/.board.owner"
"""


def _describe(owner_text: str) -> tuple[str, str, str]:
    """(who, what, since) from the owner file's JSON line (unknown parts say so)."""
    try:
        doc = json.loads(owner_text.strip().splitlines()[0].split(" ", 1)[1])  # "<board pid> <json>"
    except (ValueError, IndexError):
        return "another session", "something", "an unknown time"
    who = f"{doc.get('host', '?')} pid {doc.get('pid', '?')}"
    return who, str(doc.get("what", "something")), str(doc.get("since", "an unknown time"))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def board_lock(conn, device, *, what: str = "a bench", timeout: float | None = 3600.0,
               on_wait: Callable[[str], None] | None = _stderr) -> Iterator[None]:
    """Hold the board's run lock for the ``with`` block.

    Args:
        conn: an SSH or local connection to ``device``.
        device: the device entry (its ``name`` for messages, ``cache_dir`` for the lock file).
        what: what this session runs (shown to a session that has to wait: "bench resnet8").
        timeout: seconds to wait for another holder; ``None`` waits for as long as it takes.
        on_wait: called once with ``"waiting for <board>: <who> is running <what> since <time>"`` when
            the board is busy (default: printed on stderr); ``None`` says nothing.

    Raises:
        DeviceError: one line: the board stayed busy past ``timeout``, or the lock cannot be taken
            (cache directory not creatable, no ``flock`` on the board, connection lost).
    """
    name = getattr(device, "name", None) or conn.label
    cache = device.cache_dir
    owner = json.dumps({"host": platform.node(), "pid": os.getpid(), "what": what,
                        "since": datetime.now(UTC).isoformat(timespec="seconds")})
    wait_arg = "" if timeout is None else f"{max(timeout, 0.0):g}"
    proc = conn.spawn(["sh", "-c", _HOLD, "sh", cache, wait_arg, owner])
    deadline = None if timeout is None else time.monotonic() + timeout + 15
    told = False
    holder = ("another session", "something", "an unknown time")
    try:
        while True:
            text = proc.peek()
            if not told and text.startswith("busy\n") and "\nend\n" in text:
                body = text.split("busy\n", 1)[1].split("\nend\n", 1)[0]
                holder = _describe(body)
                told = True
                if on_wait is not None:
                    who, held, since = holder
                    on_wait(f"waiting for {name}: {who} is running {held} since {since}")
            if "locked\n" in text:
                break
            if proc.finished():
                raise _failure(name, cache, conn, holder, timeout, text)
            if deadline is not None and time.monotonic() > deadline:
                raise _timeout(name, holder, timeout)
            time.sleep(0.01)
    except BaseException:
        proc.stop()
        raise
    try:
        yield
    finally:
        proc.stop()


def _timeout(name: str, holder: tuple[str, str, str], timeout: float | None) -> DeviceError:
    who, what, since = holder
    return DeviceError(f"{name} stayed busy for {timeout:g} s ({who} is running {what} since {since}); "
                       "try again later or raise --lock-timeout")


def _failure(name, cache, conn, holder, timeout, text) -> DeviceError:
    if text.startswith("busy\n"):
        return _timeout(name, holder, timeout)
    errors = [line[len("error: "):] for line in text.splitlines() if line.startswith("error: ")]
    if errors and "flock" not in errors[0]:
        return DeviceError(f"board cache directory {cache!r} on {conn.label} is not writable ({errors[0]}); "
                           f"pick another with `edgekd device add {name} ... --cache-dir DIR --replace`")
    reason = errors[0] if errors else "the connection was lost"
    return DeviceError(f"cannot take the run lock {posixpath.join(cache, LOCK_NAME)!r} on {conn.label} ({reason})")


__all__ = ["LOCK_NAME", "OWNER_NAME", "board_lock"]
