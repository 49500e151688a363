"""Content-addressed upload of artifact files into a cache on the board, and staging of a run directory.

Layout on the board (``device.cache_dir``; relative = under the login's home)::

    <cache>/<sha256>               verified file contents, mode 0755, never partial
    <cache>/.tmp-<random>          an upload in flight (swept by the next push, under the lock)
    <cache>/.lock                  flock(1) held by the one pushing session
    <cache>/stage/<stage-id>/...   the artifact's tree, hard links into the cache (renamed into place)
    <cache>/.run-<random>/         one run's output files (removed after the fetch)

A push that finds every file and the stage already present uses SFTP only (no remote process) and
uploads nothing. Otherwise it takes the lock, sweeps stale temporaries, uploads each missing file to
a temporary name, verifies its sha256 on the board with ``sha256sum``, renames it into place and
builds the stage directory — all in one remote script whose arguments are quoted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import posixpath
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import DeviceError

_VERIFY_AND_STAGE = r"""
cache=$1; stage=$2; n=$3; shift 3
i=0
while [ "$i" -lt "$n" ]; do
  tmp=$1; sha=$2; shift 2
  got=$(sha256sum "$cache/$tmp" | cut -d' ' -f1) || exit 5
  if [ "$got" != "$sha" ]; then
    rm -f "$cache/$tmp"; echo "checksum mismatch after upload: expected $sha, board has $got" >&2; exit 4
  fi
  chmod 755 "$cache/$tmp" && mv -f "$cache/$tmp" "$cache/$sha" || exit 5
  i=$((i+1))
done
[ -d "$cache/stage/$stage" ] && exit 0
work=$(mktemp -d "$cache/stage/.tmp-XXXXXX") || exit 5
while [ $# -gt 0 ]; do
  mkdir -p "$work/$(dirname "$1")" || exit 5
  ln -f "$cache/$2" "$work/$1" 2>/dev/null || cp "$cache/$2" "$work/$1" || exit 5
  shift 2
done
mv "$work" "$cache/stage/$stage" || { rm -rf "$work"; exit 5; }
"""

_LOCK = r'exec 9>>"$1" || exit 3; flock -x -w "$2" 9 || exit 75; echo locked; exec cat'


@dataclass
class PushReport:
    """What a push did: the staged directory, which files were uploaded or found, and how long it took."""

    stage_dir: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    seconds: float = 0.0


def stage_id(files: dict[str, str]) -> str:
    """The stage directory name: a hash of the (path, sha256) list."""
    text = "".join(f"{rel}\0{sha}\n" for rel, sha in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _not_writable(conn, cache: str, err: OSError) -> DeviceError:
    reason = err.strerror or str(err) or errno.errorcode.get(err.errno or 0, "error")
    return DeviceError(
        f"board cache directory {cache!r} on {conn.label} is not writable ({reason}); "
        f"pick another with `edgekd device add {conn.name} ... --cache-dir DIR --replace`"
    )


def sftp_like(conn):
    """SFTP for SSH connections; for the local device a tiny shim with the same calls."""
    if conn.is_local:
        return _LocalFs(conn)
    return conn.sftp


class _LocalFs:
    """The subset of SFTPClient the cache uses, on local paths (relative = under $HOME, as over SSH)."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def _p(self, path: str) -> Path:
        return self._conn._path(path)

    def listdir(self, path: str) -> list[str]:
        return [p.name for p in self._p(path).iterdir()]

    def stat(self, path: str):
        return self._p(path).stat()

    def mkdir(self, path: str) -> None:
        self._p(path).mkdir()

    def remove(self, path: str) -> None:
        self._p(path).unlink()

    def rmdir(self, path: str) -> None:
        self._p(path).rmdir()


def ensure_dir(fs, path: str) -> None:
    """mkdir -p over SFTP."""
    parts = [p for p in path.split("/") if p]
    current = "/" if path.startswith("/") else ""
    for part in parts:
        current = posixpath.join(current, part) if current else part
        try:
            fs.stat(current)
        except FileNotFoundError:
            fs.mkdir(current)


def push(conn, artifact_dir: Path, files: dict[str, str], cache: str, *, lock_timeout: float = 60.0) -> PushReport:
    """Make ``files`` (relative path -> sha256, from the manifest) available as a staged tree on the board.

    Args:
        conn: an SSH or local connection.
        artifact_dir: local directory holding the files.
        files: relative path -> expected sha256.
        cache: the board's cache directory.
        lock_timeout: seconds to wait for another session's push.

    Returns:
        PushReport (``uploaded`` is empty when everything was already on the board).

    Raises:
        DeviceError: unwritable cache, upload failure, checksum mismatch, lock timeout.
    """
    start = time.perf_counter()
    fs = sftp_like(conn)
    sid = stage_id(files)
    stage_dir = posixpath.join(cache, "stage", sid)
    try:
        ensure_dir(fs, posixpath.join(cache, "stage"))
        present = set(fs.listdir(cache))
        staged = sid in set(fs.listdir(posixpath.join(cache, "stage")))
    except OSError as err:
        raise _not_writable(conn, cache, err) from None
    missing = {rel: sha for rel, sha in files.items() if sha not in present}
    report = PushReport(stage_dir, skipped=sorted(set(files) - set(missing)))
    if not missing and staged:
        report.seconds = time.perf_counter() - start
        return report
    lock = _acquire_lock(conn, cache, lock_timeout)
    try:
        _sweep(fs, cache)
        tmps = _upload(conn, fs, artifact_dir, missing, cache, report)
        _verify_and_stage(conn, fs, cache, sid, tmps, files)
    finally:
        lock.stop()
    report.seconds = time.perf_counter() - start
    return report


def _acquire_lock(conn, cache: str, timeout: float):
    """Hold ``<cache>/.lock`` (flock) on a second channel until ``.stop()``; one pusher per board cache."""
    proc = conn.spawn(["sh", "-c", _LOCK, "sh", posixpath.join(cache, ".lock"), f"{timeout:g}"])
    deadline = time.monotonic() + timeout + 5
    while time.monotonic() < deadline:
        text = proc.peek()
        if "locked" in text:
            return proc
        if proc.finished():
            proc.stop()
            raise DeviceError(
                f"cannot lock the board cache {cache!r} on {conn.label} "
                "(another push holds it, or flock(1) is missing)"
            )
        time.sleep(0.005)
    proc.stop()
    raise DeviceError(f"timed out waiting for the board cache lock {cache!r} on {conn.label}")


def _sweep(fs, cache: str) -> None:
    """Remove temporaries left by interrupted sessions (safe: we hold the lock)."""
    for name in fs.listdir(cache):
        if name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                fs.remove(posixpath.join(cache, name))


def _upload(conn, fs, artifact_dir: Path, missing: dict[str, str], cache: str, report: PushReport) -> list:
    """Upload each distinct missing blob to ``.tmp-<random>``; on failure remove what was written."""
    tmps: list[tuple[str, str]] = []
    by_sha = {sha: rel for rel, sha in sorted(missing.items())}
    try:
        for sha, rel in by_sha.items():
            tmp = f".tmp-{secrets.token_hex(8)}"
            tmps.append((tmp, sha))
            try:
                conn.put(artifact_dir / rel, posixpath.join(cache, tmp))
            except DeviceError as err:
                if "ermission denied" in str(err) or "ead-only" in str(err):
                    raise _not_writable(conn, cache, OSError(errno.EACCES, str(err).rsplit(": ", 1)[-1])) from None
                raise
            report.uploaded.append(rel)
            report.bytes_uploaded += (artifact_dir / rel).stat().st_size
    except BaseException:
        _remove_quietly(fs, cache, [tmp for tmp, _ in tmps])
        raise
    return tmps


def _verify_and_stage(conn, fs, cache: str, sid: str, tmps: list, files: dict[str, str]) -> None:
    args = [cache, sid, str(len(tmps))]
    for tmp, sha in tmps:
        args += [tmp, sha]
    for rel, sha in sorted(files.items()):
        args += [rel, sha]
    result = conn.run(["sh", "-c", _VERIFY_AND_STAGE, "sh", *args], timeout=300)
    if not result.ok:
        _remove_quietly(fs, cache, [tmp for tmp, _ in tmps])
        raise DeviceError(f"storing the upload in {cache!r} on {conn.label} failed: {result.last_error_line()}")


def _remove_quietly(fs, cache: str, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            fs.remove(posixpath.join(cache, name))


def run_dir(conn, cache: str) -> str:
    """Create a fresh ``<cache>/.run-<random>`` directory for one run's outputs."""
    fs = sftp_like(conn)
    path = posixpath.join(cache, f".run-{secrets.token_hex(6)}")
    try:
        fs.mkdir(path)
    except OSError as err:
        raise _not_writable(conn, cache, err) from None
    return path


def remove_tree(conn, path: str) -> None:
    """Remove a flat directory (a run directory) over SFTP, ignoring what is already gone."""
    fs = sftp_like(conn)
    try:
        for name in fs.listdir(path):
            _remove_quietly(fs, path, [name])
        fs.rmdir(path)
    except OSError:
        pass


def is_regular(fs, path: str) -> bool:
    try:
        return stat.S_ISREG(fs.stat(path).st_mode)
    except OSError:
        return False
