"""A fabric-style, lazily opened SSH connection over paramiko.

Settings are resolved once, in the constructor, in one order: explicit arguments (or the
``user@host:port`` shorthand; giving both is refused) > the host's ``~/.ssh/config`` entry
(``HostName``, ``Port``, ``User``, ``IdentityFile``, ``IdentitiesOnly``, ``ProxyJump``; the path is
injectable) > defaults. ``ProxyJump`` becomes a chain of nested :class:`Connection` gateways reached over
``direct-tcpip`` (a cycle is a ConfigError); ``ProxyCommand`` is refused as unsupported.

Deadlines: connecting, opening a channel or SFTP session and starting a command must be answered within
``connect_timeout`` seconds, and every SFTP call must see the board answer at least that often; otherwise
the connection is closed and one line says which board stopped answering during which step.

Security: host keys are checked against edgekd's own known_hosts file with paramiko's
``RejectPolicy``; unknown or changed keys are refused until ``edgekd device trust NAME`` records
them. Updates of that file keep every other line byte for byte, write through a symlink and are
serialised by a lock file. Authentication uses the key file, ``IdentityFile`` entries and ssh-agent
(not with ``IdentitiesOnly yes``) — never passwords.
Every remote command is built from a list and each word is ``shlex.quote``'d.

Failures become one-line :class:`~edgekd.errors.DeviceError` s that say what to do.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import getpass
import hashlib
import os
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import paramiko

from edgekd.atomic import atomic_write
from edgekd.device.commands import KILL_GRACE_S, Result, build_command
from edgekd.errors import ConfigError, DeviceError

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")  # tests redirect this (autouse fixture)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_entry(hostname: str, port: int) -> str:
    """The known_hosts host field: ``host`` for port 22, ``[host]:port`` otherwise."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def parse_target(text: str) -> tuple[str | None, str, int | None]:
    """Split ``[user@]host[:port]`` into its parts."""
    user, _, rest = text.rpartition("@")
    host, port = rest, None
    if rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        if not port_text.isdigit():
            raise ConfigError(f"{text!r}: port must be a number")
        port = int(port_text)
    return (user or None), host, port


class RemoteProcess:
    """A command left running on a channel (e.g. a power sampler); :meth:`stop` returns its stdout."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = self._channel.recv(65536)
            except (OSError, EOFError, paramiko.SSHException):
                return
            if not data:
                return
            self._chunks.append(data)

    def peek(self) -> str:
        """What the command printed so far."""
        return b"".join(self._chunks).decode(errors="replace")

    def finished(self) -> bool:
        """True once the command's output ended (it exited or the channel closed)."""
        return not self._thread.is_alive()

    def stop(self) -> str:
        """Close the channel (the remote loop dies of SIGPIPE on its next write) and return the output."""
        self._channel.close()
        self._thread.join(timeout=5)
        return b"".join(self._chunks).decode(errors="replace")


class Connection:
    """A lazily opened SSH connection; use as a context manager or call :meth:`open`/:meth:`close`.

    Args:
        host: ``~/.ssh/config`` alias or address, optionally ``user@host:port``.
        user, port, key_filename: explicit settings (beat ssh_config).
        known_hosts: edgekd's known_hosts file (host keys are checked against it only).
        ssh_config_path: ssh_config to read (default ``~/.ssh/config``; missing file = none).
        gateway: a Connection to tunnel through (overrides ``ProxyJump``).
        connect_timeout: TCP connect, banner and auth timeout in seconds, and how long the board may leave
            any request (opening a channel or SFTP, starting a command, each SFTP call, a keepalive) unanswered.
        keepalive: seconds between keepalives, each of which must be answered (0 disables).
        exec_prefix: words put before commands run with ``prefixed=True`` (e.g. qemu-user).
        name: the device name used in messages (``edgekd device trust NAME``).

    Raises:
        ConfigError: conflicting shorthand/explicit settings, a ProxyJump through itself or in a cycle, or
            ``ProxyCommand`` (not supported).
    """

    is_local = False

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        key_filename: str | os.PathLike | None = None,
        known_hosts: str | os.PathLike | None = None,
        ssh_config_path: str | os.PathLike | None = None,
        gateway: Connection | None = None,
        connect_timeout: float = 10.0,
        keepalive: int = 15,
        exec_prefix: Sequence[str] = (),
        name: str | None = None,
        _chain: tuple[str, ...] = (),
    ) -> None:
        short_user, alias, short_port = parse_target(host)
        if (short_user and user) or (short_port and port):
            raise ConfigError(f"{host!r}: user/port given both in the shorthand and explicitly")
        self.alias = alias
        self.name = name or alias
        self.ssh_config_path = Path(ssh_config_path or DEFAULT_SSH_CONFIG).expanduser()
        entry = self._ssh_config_entry(alias)
        self.hostname: str = entry.get("hostname", alias)
        self.port: int = int(short_port or port or entry.get("port", 22))
        self.user: str = short_user or user or entry.get("user") or getpass.getuser()
        explicit_key = [str(Path(key_filename).expanduser())] if key_filename else []
        self.key_filenames = explicit_key or [str(Path(k).expanduser()) for k in entry.get("identityfile", [])]
        self._key_source = "--key" if explicit_key else "IdentityFile"
        self.identities_only = str(entry.get("identitiesonly", "no")).lower() == "yes"
        proxy_command = str(entry.get("proxycommand", "none")).strip()
        if gateway is None and not entry.get("proxyjump") and proxy_command.lower() != "none":
            raise ConfigError(f"{alias}: ProxyCommand in {self.ssh_config_path} is not supported by edgekd; "
                              "use ProxyJump (or add the board by its address)")
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.exec_prefix = list(exec_prefix)
        self.gateway = gateway or self._gateway_from(entry.get("proxyjump"), (*_chain, alias))
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._silent = False  # set when the keepalive watch found the board not answering

    # ---------------------------------------------------------------- settings
    def _ssh_config_entry(self, alias: str) -> dict:
        if not self.ssh_config_path.is_file():
            return {}
        try:
            return dict(paramiko.SSHConfig.from_path(str(self.ssh_config_path)).lookup(alias))
        except (OSError, paramiko.SSHException, ValueError) as err:
            raise ConfigError(f"{self.ssh_config_path}: cannot read ssh_config: {err}") from None

    def _gateway_from(self, proxyjump: str | None, chain: tuple[str, ...]) -> Connection | None:
        if not proxyjump or proxyjump.strip().lower() == "none":
            return None
        gateway: Connection | None = None
        for hop in (part.strip() for part in proxyjump.split(",") if part.strip()):
            hop_alias = parse_target(hop)[1]
            if hop_alias in chain:
                raise ConfigError(f"ProxyJump cycle: {' -> '.join((*chain, hop_alias))} (in {self.ssh_config_path})")
            if len(chain) > 8:
                raise ConfigError(f"ProxyJump chain too long: {' -> '.join((*chain, hop_alias))}")
            gateway = Connection(
                hop,
                known_hosts=self.known_hosts,
                ssh_config_path=self.ssh_config_path,
                gateway=gateway,
                connect_timeout=self.connect_timeout,
                keepalive=self.keepalive,
                name=self.name,
                _chain=chain,
            )
            if (gateway.hostname, gateway.port) == (self.hostname, self.port):
                raise ConfigError(f"{self.alias}: ProxyJump {proxyjump!r} points at the host itself")
        return gateway

    def hops(self) -> list[Connection]:
        """The chain to this host, outermost jump host first, this connection last."""
        chain: list[Connection] = [self]
        while chain[0].gateway is not None:
            chain.insert(0, chain[0].gateway)
        return chain

    @property
    def label(self) -> str:
        """``user@hostname:port`` for messages."""
        return f"{self.user}@{self.hostname}:{self.port}"

    # ---------------------------------------------------------------- lifecycle
    @property
    def is_connected(self) -> bool:
        transport = self.client.get_transport() if self.client else None
        return bool(transport and transport.is_active())

    def open(self) -> Connection:
        """Connect and authenticate (no-op when connected).

        Raises:
            DeviceError: unknown or changed host key, authentication failure, unreachable host.
        """
        if self.is_connected:
            return self
        if self.client is not None:  # dropped: start over (never reuse its SFTP session)
            self.close()
        key_filenames = self._usable_keys()
        client = paramiko.SSHClient()
        if self.known_hosts and self.known_hosts.is_file():
            _load_host_keys(client.get_host_keys(), self.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            sock = self._open_gateway() or self._open_socket()
            client.connect(
                self.hostname,
                port=self.port,
                username=self.user,
                key_filename=key_filenames or None,
                look_for_keys=not key_filenames,
                allow_agent=not self.identities_only,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                sock=sock,
            )
        except DeviceError:
            client.close()
            raise
        except Exception as err:  # paramiko raises many types; each becomes one line
            client.close()
            raise self._connect_error(err) from None
        transport = client.get_transport()
        if transport and self.keepalive:
            transport.set_keepalive(self.keepalive)
            self._silent = False
            threading.Thread(target=self._watch, args=(transport,), daemon=True).start()
        self.client = client
        return self

    def _watch(self, transport: paramiko.Transport) -> None:
        """Every ``keepalive`` s, ask the board for an answer; none within ``connect_timeout``: close (so
        whatever waits on this connection, e.g. a command without a timeout, ends)."""
        while transport.is_active():
            time.sleep(self.keepalive)
            answered = threading.Event()
            threading.Thread(target=_ping, args=(transport, answered), daemon=True).start()
            if not answered.wait(self.connect_timeout) and transport.is_active():
                self._silent = True
                transport.close()
                return

    def _usable_keys(self) -> list[str]:
        """The key files that exist; a missing ``--key`` (or only missing ``IdentityFile`` s) is one line."""
        present = [k for k in self.key_filenames if os.path.isfile(k)]
        if self.key_filenames and not present:
            if self._key_source == "--key":
                raise DeviceError(f"key file {self.key_filenames[0]} does not exist (the --key of {self.name}); "
                                  f"fix it with `edgekd device add {self.name} ... --key FILE --replace`")
            raise DeviceError(f"IdentityFile {', '.join(self.key_filenames)} does not exist (host {self.alias} "
                              f"in {self.ssh_config_path}); fix the ssh_config entry or give the device a --key")
        return present

    def _open_socket(self) -> socket.socket:
        """A TCP socket with Nagle off (each command is a few small packets: saves ~40 ms a round trip)."""
        sock = socket.create_connection((self.hostname, self.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _open_gateway(self) -> paramiko.Channel | None:
        if self.gateway is None:
            return None
        self.gateway.open()
        transport = self.gateway.client.get_transport()
        try:
            return transport.open_channel(
                "direct-tcpip", (self.hostname, self.port), ("127.0.0.1", 0), timeout=self.connect_timeout
            )
        except (paramiko.SSHException, OSError) as err:
            raise DeviceError(
                f"cannot reach {self.hostname}:{self.port} through {self.gateway.label}: {err or type(err).__name__}"
            ) from None

    def _connect_error(self, err: Exception) -> DeviceError:
        trust = f"run `edgekd device trust {self.name}`"
        if isinstance(err, paramiko.BadHostKeyException):
            return DeviceError(
                f"host key for {self.label} has CHANGED (board sent {fingerprint(err.key)}, "
                f"{self.known_hosts} has {fingerprint(err.expected_key)}); this may be an attack; "
                f"if the board was reinstalled, check the new key and {trust}"
            )
        if isinstance(err, paramiko.AuthenticationException):
            keys = ", ".join(self.key_filenames) or "default keys"
            return DeviceError(
                f"authentication failed for {self.label} (tried {keys} and ssh-agent); "
                "check the device's --key and the board's authorized_keys"
            )
        if isinstance(err, paramiko.SSHException) and "not found in known_hosts" in str(err):
            return DeviceError(
                f"unknown host key for {self.label} (not in {self.known_hosts}); "
                f"check the board's fingerprint and {trust}"
            )
        if isinstance(err, (OSError, socket.timeout, paramiko.ssh_exception.NoValidConnectionsError)):
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            return DeviceError(f"cannot reach {self.label}: {reason}; check that the board is up and sshd runs")
        return DeviceError(f"SSH to {self.label} failed: {_reason(err)}; check the board / network and run again")

    @contextlib.contextmanager
    def _deadline(self, step: str, *, watchdog: bool = False):
        """No answer from the board within ``connect_timeout`` during ``step``: close, raise one line.

        Timeouts of the channel (SFTP calls) count; with ``watchdog`` a timer also closes the transport
        when the whole step (a single request and its answer) takes longer, which ends paramiko's untimed waits.
        """
        transport = self.client.get_transport() if self.client else None
        fired = threading.Event()
        timer = None
        if watchdog and transport is not None:
            def expire() -> None:
                fired.set()
                transport.close()

            timer = threading.Timer(self.connect_timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            yield
        except (OSError, EOFError, paramiko.SSHException) as err:
            if fired.is_set() or isinstance(err, TimeoutError) or "Timeout opening channel" in str(err):
                self.close()
                raise DeviceError(
                    f"board {self.name}: no answer for {self.connect_timeout:g} s during {step} "
                    f"({self.label}); check the board / network"
                ) from None
            if isinstance(err, (EOFError, paramiko.SSHException, ConnectionError)):  # the link, not a file
                self.close()
                raise DeviceError(f"connection to {self.label} lost during {step}: {_reason(err)}; "
                                  "check the board / network and run again") from None
            raise  # a file-level error (no such file, permission): the caller decides
        finally:
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        """Close SFTP, the connection and any gateway."""
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.gateway is not None:
            self.gateway.close()

    def __enter__(self) -> Connection:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- commands
    def run(
        self,
        cmd: Sequence[str],
        *,
        timeout: float | None = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        prefixed: bool = False,
    ) -> Result:
        """Run a command (a word list, quoted here) and wait; never raises for a non-zero exit.

        Args:
            cmd: program and arguments.
            timeout: seconds; the board kills the command (``timeout -k``) and the host stops waiting
                shortly after. ``None`` = no limit.
            cwd: directory on the board.
            env: extra environment variables.
            prefixed: put the device's exec prefix (e.g. qemu-user) before ``cmd``.

        Raises:
            DeviceError: the connection failed or dropped.
        """
        self.open()
        line = build_command(cmd, cwd=cwd, env=env, prefix=self.exec_prefix if prefixed else (), timeout=timeout)
        start = time.perf_counter()
        try:
            channel = self._start(cmd, line)
            out, err, code, abandoned = _collect(channel, None if timeout is None else timeout + KILL_GRACE_S + 3)
            if code == -1 and not abandoned and not self.is_connected:  # no exit status: the connection died
                raise EOFError("connection closed before the command exited")
        except (paramiko.SSHException, OSError, EOFError) as error:
            if self._silent:
                raise DeviceError(f"board {self.name}: no answer for {self.connect_timeout:g} s during run of "
                                  f"{cmd[0]} ({self.label}); check the board / network") from None
            raise DeviceError(f"connection to {self.label} lost while running {cmd[0]}: {_reason(error)}") from None
        seconds = time.perf_counter() - start
        timed_out = abandoned or (timeout is not None and code in (124, 137))
        return Result(line, code, out, err, seconds, timed_out)

    def check(self, cmd: Sequence[str], *, what: str, **kwargs) -> Result:
        """:meth:`run` that turns a failure into ``DeviceError("<what> failed on <label>: <stderr>")``."""
        result = self.run(cmd, **kwargs)
        if not result.ok:
            reason = "timed out" if result.timed_out else f"exit {result.exit_code}: {result.last_error_line()}"
            raise DeviceError(f"{what} failed on {self.label} ({reason})")
        return result

    def spawn(self, cmd: Sequence[str]) -> RemoteProcess:
        """Start a command on a second channel of this connection and return without waiting."""
        self.open()
        return RemoteProcess(self._start(cmd, build_command(cmd)))

    def _start(self, cmd: Sequence[str], line: str) -> paramiko.Channel:
        """Open a session and start ``line`` on it, both within the deadline."""
        with self._deadline(f"start of {cmd[0]}", watchdog=True):
            channel = self.client.get_transport().open_session(timeout=self.connect_timeout)
            channel.exec_command(line)
        return channel

    # ---------------------------------------------------------------- files
    @property
    def sftp(self) -> _GuardedSftp:
        """The (lazily opened) SFTP session; each call must be answered within the deadline (or DeviceError)."""
        return _GuardedSftp(self, self._sftp_client("opening SFTP"))

    def _sftp_client(self, step: str) -> paramiko.SFTPClient:
        self.open()
        if self._sftp is not None and self._sftp.get_channel().closed:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        if self._sftp is None:
            with self._deadline(step, watchdog=True):
                channel = self.client.get_transport().open_session(timeout=self.connect_timeout)
                channel.settimeout(self.connect_timeout)  # every later SFTP read/write: no answer = timeout
                channel.invoke_subsystem("sftp")
                self._sftp = paramiko.SFTPClient(channel)
        return self._sftp

    def put(self, local: str | os.PathLike, remote: str) -> None:
        """Upload a file (SFTP; the size is confirmed)."""
        step = f"upload of {Path(local).name}"
        try:
            with self._deadline(step):
                self._sftp_client(step).put(str(local), remote, confirm=True)
        except (OSError, paramiko.SSHException, EOFError) as err:
            reason = str(err).strip() or type(err).__name__
            raise DeviceError(
                f"upload of {Path(local).name} to {self.label}:{remote} failed ({reason}); run it again: "
                "verified files are kept, partial ones are discarded"
            ) from None

    def get(self, remote: str, local: str | os.PathLike) -> None:
        """Download a file (SFTP)."""
        step = f"download of {remote}"
        try:
            with self._deadline(step):
                self._sftp_client(step).get(remote, str(local))
        except (OSError, paramiko.SSHException, EOFError) as err:
            raise DeviceError(f"download of {self.label}:{remote} failed: {err}") from None

    # ---------------------------------------------------------------- host keys
    def fetch_host_key(self) -> paramiko.PKey:
        """The key the server presents (no authentication, nothing recorded).

        Raises:
            DeviceError: unreachable host or no SSH server.
        """
        sock = None
        try:
            sock = self._open_gateway() or self._open_socket()
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=self.connect_timeout)
                return transport.get_remote_server_key()
            finally:
                transport.close()
                if self.gateway is not None:
                    self.gateway.close()
        except DeviceError:
            raise
        except Exception as err:
            raise self._connect_error(err) from None

    def record_host_key(self, key: paramiko.PKey) -> Path:
        """Replace this host's entries in the edgekd known_hosts file with ``key``.

        Every other line (comments, ``@revoked``/``@cert-authority``, other hosts, hashed names) is kept byte
        for byte; a line naming this host among others loses only this host's name. The update writes
        through a symlink, holds ``<file>.lock`` (flock) and replaces the file atomically, keeping its mode.
        """
        if self.known_hosts is None:
            raise ConfigError("no known_hosts file configured")
        target = Path(os.path.realpath(self.known_hosts))
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = known_hosts_entry(self.hostname, self.port)
        new_line = f"{entry} {key.get_name()} {key.get_base64()}\n".encode()
        with open(target.with_name(target.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                old, mode = target.read_bytes(), target.stat().st_mode & 0o7777
            except FileNotFoundError:
                old, mode = b"", 0o600
            kept = [line for line in (_without_host(raw, entry) for raw in old.splitlines(keepends=True)) if line]
            if kept and not kept[-1].endswith(b"\n"):
                kept[-1] += b"\n"
            data = b"".join(kept) + new_line

            def write(handle) -> None:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)

            atomic_write(target, write)
        return self.known_hosts


class _GuardedSftp:
    """The SFTP client, each call under the connection's deadline (a silent board = one-line DeviceError)."""

    def __init__(self, conn: Connection, client: paramiko.SFTPClient) -> None:
        self._conn = conn
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._conn._deadline(f"SFTP {name}"):
                return attr(*args, **kwargs)

        return call


def _host_matches(name: str, entry: str) -> bool:
    if name.startswith("|1|"):
        with contextlib.suppress(Exception):
            return paramiko.HostKeys.hash_host(entry, name) == name
        return False
    return name == entry


def _without_host(raw: bytes, entry: str) -> bytes | None:
    """A known_hosts line with ``entry`` taken out of its host list (None: nothing left of it)."""
    text = raw.decode(errors="surrogateescape")
    fields = text.split()
    if not fields or fields[0].startswith(("#", "@")):
        return raw
    names = fields[0].split(",")
    rest = [name for name in names if not _host_matches(name, entry)]
    if len(rest) == len(names):
        return raw
    if not rest:
        return None
    start = text.index(fields[0])
    return (text[:start] + ",".join(rest) + text[start + len(fields[0]):]).encode(errors="surrogateescape")


def _load_host_keys(host_keys: paramiko.HostKeys, path: Path) -> None:
    """Load known_hosts entries, skipping comments, markers (``@revoked``, ``@cert-authority``) and bad lines."""
    for line in path.read_text(errors="replace").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "@")):
            continue
        try:
            parsed = paramiko.hostkeys.HostKeyEntry.from_line(stripped)
        except Exception:  # noqa: BLE001 - one bad line must not hide the others
            continue
        if parsed is not None:
            for name in parsed.hostnames:
                host_keys.add(name, parsed.key.get_name(), parsed.key)


def _reason(err: BaseException) -> str:
    """What went wrong, never empty (paramiko raises some exceptions without a message)."""
    return str(err).strip() or f"{type(err).__name__} (the connection closed)"


def _ping(transport: paramiko.Transport, answered: threading.Event) -> None:
    """A keepalive that waits for its answer (any reply, even a refusal, proves the board is alive)."""
    with contextlib.suppress(Exception):
        transport.global_request("keepalive@openssh.com", wait=True)
    answered.set()


def _collect(channel: paramiko.Channel, deadline_s: float | None) -> tuple[str, str, int, bool]:
    """Read stdout/stderr until exit (or the deadline: then close the channel and report abandoned)."""
    out, err = bytearray(), bytearray()
    end = None if deadline_s is None else time.monotonic() + deadline_s
    while True:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        if not channel.exit_status_ready() and (channel.closed or not channel.get_transport().is_active()):
            raise EOFError("channel closed before the command exited")
        if end is not None and time.monotonic() > end:
            channel.close()
            return out.decode(errors="replace"), err.decode(errors="replace"), -1, True
        select.select([channel], [], [], 0.01)
    code = channel.recv_exit_status()
    # drain what arrived with the exit status
    while channel.recv_ready():
        out += channel.recv(65536)
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)
    channel.close()
    return out.decode(errors="replace"), err.decode(errors="replace"), code, False
