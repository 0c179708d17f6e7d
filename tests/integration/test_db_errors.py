from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crm_sync.db import DatabaseUnavailable, create_pool, describe_dsn, dsn_with_database


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nothing_listening_gives_a_one_line_error_without_the_password() -> None:
    port = _free_port()
    with pytest.raises(DatabaseUnavailable) as info:
        await create_pool(f"postgresql://hotline:s3cret-Pa55@127.0.0.1:{port}/hotline")
    message = str(info.value)
    assert "s3cret-Pa55" not in message
    assert f"127.0.0.1:{port}" in message and "hotline" in message
    assert "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_missing_socket_is_named(tmp_path: Path) -> None:
    dsn = f"postgresql://hotline:s3cret-Pa55@/hotline?host={tmp_path}"
    with pytest.raises(DatabaseUnavailable, match=f"socket:{tmp_path}/hotline") as info:
        await create_pool(dsn)
    assert "s3cret-Pa55" not in str(info.value)


def test_dsn_helpers_never_show_the_password() -> None:
    dsn = "postgresql://app:pw@db.example:6432/hotline?sslmode=require"
    assert describe_dsn(dsn) == "app@db.example:6432/hotline"
    assert dsn_with_database(dsn, "other") == "postgresql://app:pw@db.example:6432/other?sslmode=require"
