"""Content-addressed upload of artifact files into a cache on the board, and staging of a run directory.

Layout on the board (``device.cache_dir``; relative = under the login's home)::

    <cache>/<sha256>               verified file contents, mode 0555, mtime SEAL_MTIME, never partial
    <cache>/.tmp-<random>          an upload in flight (swept by the next push, under the lock)
    <cache>/.lock                  flock(1) held by the one pushing session
    <cache>/.hashed-<stage-id>     stamp: when every blob of that stage was last hashed on the board
    <cache>/stage/<stage-id>/...   the artifact's tree, read-only hard links into the cache (renamed into place)
    <cache>/.run-<random>/         one run's output files (removed after the fetch)

A push that finds every file and the stage already present uses SFTP only (no remote process) and
uploads nothing. Otherwise it takes the lock, sweeps stale temporaries, uploads each missing file to
a temporary name, verifies its sha256 on the board with ``sha256sum``, renames it into place and
builds the stage directory — all in one remote script whose arguments are quoted.

The cache is not trusted forever. Every push compares each needed blob's size with the local file (a
truncated blob is uploaded again) and its mtime with :data:`SEAL_MTIME`, which a blob gets once its hash
was checked: a write through a staged hard link changes the mtime, so that blob is hashed on the board
and replaced if it differs. Every :data:`REHASH_EVERY_S` a stage's blobs are all hashed again, and
:func:`verify_cache` (``edgekd device verify``) hashes every blob on demand. Blobs and stage directories
are read-only (a-w); a replaced blob's stage is rebuilt. Manifest names are checked again here (no
absolute, ``..`` or odd names; sha256s are 64 hex digits) before any byte moves.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.compile.artifact import SHA256_HEX, file_problem, sha256_problem
from edgekd.errors import DeviceError

_VERIFY_AND_STAGE = r"""
cache=$1; stage=$2; rebuild=$3; stamp=$4; n=$5; shift 5
i=0
while [ "$i" -lt "$n" ]; do
  tmp=$1; sha=$2; shift 2
  got=$(sha256sum "$cache/$tmp" | cut -d' ' -f1) || exit 5
  if [ "$got" != "$sha" ]; then
    rm -f "$cache/$tmp"; echo "checksum mismatch after upload: expected $sha, board has $got" >&2; exit 4
  fi
  chmod 555 "$cache/$tmp" && mv -f "$cache/$tmp" "$cache/$sha" || exit 5
  i=$((i+1))
done
[ "$n" -gt 0 ] && { sync 2>/dev/null || true; }
[ "$stamp" = 1 ] && : > "$cache/.hashed-$stage"
[ -d "$cache/stage/$stage" ] && [ "$rebuild" = 0 ] && exit 0
work=$(mktemp -d "$cache/stage/.tmp-XXXXXX") || exit 5
while [ $# -gt 0 ]; do
  mkdir -p "$work/$(dirname "$1")" || exit 5
  ln -f "$cache/$2" "$work/$1" 2>/dev/null || cp "$cache/$2" "$work/$1" || exit 5
  shift 2
done
chmod -R a-w "$work" || exit 5
if [ -d "$cache/stage/$stage" ]; then
  old=$(mktemp -d "$cache/stage/.old-XXXXXX") && rmdir "$old" && mv "$cache/stage/$stage" "$old" || exit 5
  mv "$work" "$cache/stage/$stage" || exit 5
  chmod -R u+w "$old"; rm -rf "$old"
else
  mv "$work" "$cache/stage/$stage" || { chmod -R u+w "$work"; rm -rf "$work"; exit 5; }
fi
"""

#: Hash the named blobs; remove and print (one per line) those whose content is not their name.
_HASH_CHECK = r"""
cache=$1; shift
for sha; do
  got=$(sha256sum < "$cache/$sha" 2>/dev/null | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then rm -f "$cache/$sha" || exit 5; echo "$sha"; fi
done
"""

#: After bad blobs were dropped: remove every stage (their links may hold the bad content) and stamp.
_DROP_STAGES = r"""
cache=$1
[ -d "$cache/stage" ] && { chmod -R u+w "$cache/stage" && rm -rf "$cache/stage" || exit 5; }
rm -f "$cache"/.hashed-*
"""

#: Remove the whole cache (read-only blobs and stages included).
_CLEAN = r"""chmod -R u+w "$1" 2>/dev/null; rm -rf "$1" """

#: The mtime a blob gets once its hash was checked; any other mtime means it may have been written since.
SEAL_MTIME = 946684800  # 2000-01-01T00:00:00Z
#: Seconds after which a stage's blobs are all hashed again on the next push.
REHASH_EVERY_S = 24 * 3600

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


@dataclass
class _Attr:
    filename: str
    st_size: int
    st_mtime: int
    st_mode: int


@dataclass
class CacheCheck:
    """What :func:`verify_cache` found: the blobs hashed, the bad ones (removed) and the bytes read."""

    cache_dir: str
    checked: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    bytes_checked: int = 0
    seconds: float = 0.0


class _LocalFs:
    """The subset of SFTPClient the cache uses, on local paths (relative = under $HOME, as over SSH)."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def _p(self, path: str) -> Path:
        return self._conn._path(path)

    def listdir(self, path: str) -> list[str]:
        return [p.name for p in self._p(path).iterdir()]

    def listdir_attr(self, path: str) -> list:
        out = []
        for p in self._p(path).iterdir():
            st = p.lstat()
            out.append(_Attr(p.name, st.st_size, int(st.st_mtime), st.st_mode))
        return out

    def utime(self, path: str, times: tuple[float, float]) -> None:
        os.utime(self._p(path), times)

    def stat(self, path: str):
        return self._p(path).stat()

    def mkdir(self, path: str) -> None:
        self._p(path).mkdir()

    def remove(self, path: str) -> None:
        self._p(path).unlink()

    def rmdir(self, path: str) -> None:
        self._p(path).rmdir()


def ensure_dir(fs, path: str) -> None:
    """mkdir -p over SFTP; a directory another session created meanwhile is fine (EEXIST is no error)."""
    parts = [p for p in path.split("/") if p]
    current = "/" if path.startswith("/") else ""
    for part in parts:
        current = posixpath.join(current, part) if current else part
        try:
            fs.stat(current)
        except FileNotFoundError:
            try:
                fs.mkdir(current)
            except OSError:
                # two first pushes race: SFTP reports the loser's EEXIST as a bare "Failure"
                try:
                    if stat.S_ISDIR(fs.stat(current).st_mode):
                        continue
                except OSError:
                    pass
                raise


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
        DeviceError: an unsafe name or sha256 in ``files`` (before any byte moves), unwritable cache, upload
            failure, checksum mismatch, lock timeout.
    """
    _check_files(artifact_dir, files)
    start = time.perf_counter()
    fs = sftp_like(conn)
    sid = stage_id(files)
    stage_dir = posixpath.join(cache, "stage", sid)
    try:
        sizes = {sha: (Path(artifact_dir) / rel).stat().st_size for rel, sha in files.items()}
    except OSError as err:
        raise DeviceError(f"cannot push {artifact_dir}: {err.filename}: {err.strerror or err}") from None
    try:
        ensure_dir(fs, posixpath.join(cache, "stage"))
        present = {a.filename: a for a in fs.listdir_attr(cache)}
        staged = sid in set(fs.listdir(posixpath.join(cache, "stage")))
    except OSError as err:
        raise _not_writable(conn, cache, err) from None
    # a blob of the wrong size (truncated by a power cut) is as good as missing
    missing = {rel: sha for rel, sha in files.items() if sha not in present or present[sha].st_size != sizes[sha]}
    stamp = present.get(f".hashed-{sid}")
    stale = stamp is None or time.time() - (stamp.st_mtime or 0) > REHASH_EVERY_S
    suspects = sorted({sha for rel, sha in files.items()
                       if rel not in missing and (stale or present[sha].st_mtime != SEAL_MTIME)})
    report = PushReport(stage_dir, skipped=sorted(set(files) - set(missing)))
    if not missing and staged and not suspects:
        report.seconds = time.perf_counter() - start
        return report
    lock = _acquire_lock(conn, cache, lock_timeout)
    try:
        _sweep(fs, cache)
        bad = set(_hash_check(conn, cache, suspects)) if suspects else set()
        missing.update({rel: sha for rel, sha in files.items() if sha in bad})
        report.skipped = sorted(set(files) - set(missing))
        tmps = _upload(conn, fs, artifact_dir, missing, cache, report)
        _verify_and_stage(conn, fs, cache, sid, tmps, files, rebuild=bool(missing), stamp=stale)
        _seal(fs, cache, {sha for _, sha in tmps} | (set(suspects) - bad))
    finally:
        lock.stop()
    report.seconds = time.perf_counter() - start
    return report


def _check_files(artifact_dir: Path, files: dict[str, str]) -> None:
    """Refuse a name that could leave the artifact or the stage, or a sha256 that is not a plain blob name."""
    for rel, sha in files.items():
        problem = file_problem(Path(artifact_dir), rel) or sha256_problem(sha)
        if problem:
            raise DeviceError(f"refusing to push {artifact_dir}: file {rel!r}: {problem}")


def _hash_check(conn, cache: str, shas: list[str]) -> list[str]:
    """Hash ``shas`` on the board; remove and return the ones whose content is not their name."""
    result = conn.run(["sh", "-c", _HASH_CHECK, "sh", cache, *shas], timeout=600)
    if not result.ok:
        raise DeviceError(f"checking the board cache {cache!r} on {conn.label} failed: {result.last_error_line()}")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def _seal(fs, cache: str, shas: set[str]) -> None:
    """Mark blobs whose hash was just checked (:data:`SEAL_MTIME`); unsealed blobs are hashed next time."""
    for sha in sorted(shas):
        with contextlib.suppress(OSError):
            fs.utime(posixpath.join(cache, sha), (SEAL_MTIME, SEAL_MTIME))


def verify_cache(conn, cache: str, *, lock_timeout: float = 60.0) -> CacheCheck:
    """Hash every blob in the board cache; remove bad ones (and every stage, rebuilt by the next push).

    Raises:
        DeviceError: the cache cannot be listed or locked, or the check fails on the board.
    """
    start = time.perf_counter()
    fs = sftp_like(conn)
    report = CacheCheck(cache)
    try:
        entries = fs.listdir_attr(cache)
    except FileNotFoundError:
        return report
    except OSError as err:
        raise _not_writable(conn, cache, err) from None
    blobs = {a.filename: a.st_size for a in entries if SHA256_HEX.fullmatch(a.filename)}
    report.checked = sorted(blobs)
    report.bytes_checked = sum(blobs.values())
    if blobs:
        lock = _acquire_lock(conn, cache, lock_timeout)
        try:
            report.bad = sorted(_hash_check(conn, cache, report.checked))
            if report.bad:
                result = conn.run(["sh", "-c", _DROP_STAGES, "sh", cache], timeout=300)
                if not result.ok:
                    raise DeviceError(f"removing the stages in {cache!r} on {conn.label} failed: "
                                      f"{result.last_error_line()}")
            _seal(fs, cache, set(report.checked) - set(report.bad))
        finally:
            lock.stop()
    report.seconds = time.perf_counter() - start
    return report


def clean_cache(conn, cache: str) -> bool:
    """Remove the board cache directory (blobs, stages, stamps); returns whether there was one.

    Raises:
        DeviceError: ``cache`` is the home directory or ``/``, or the removal fails.
    """
    if posixpath.normpath(cache) in ("/", ".", "~", "") or cache.strip("/") == "":
        raise DeviceError(f"refusing to remove {cache!r} on {conn.label}: not a cache directory")
    fs = sftp_like(conn)
    try:
        fs.stat(cache)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise _not_writable(conn, cache, err) from None
    result = conn.run(["sh", "-c", _CLEAN, "sh", cache], timeout=300)
    if not result.ok:
        raise DeviceError(f"removing {cache!r} on {conn.label} failed: {result.last_error_line()}")
    return True


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


def _verify_and_stage(conn, fs, cache: str, sid: str, tmps: list, files: dict[str, str], *,
                      rebuild: bool = False, stamp: bool = False) -> None:
    args = [cache, sid, "1" if rebuild else "0", "1" if stamp else "0", str(len(tmps))]
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
