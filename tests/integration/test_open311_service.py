"""Open311 against the running service, as a channel's server meets it: the
``hotline`` command migrates, makes and revokes keys, and runs the web role in a
process of its own; every call is real HTTP on a real port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.support.cli import run_hotline
from tests.support.databases import MakeDatabase
from tests.support.open311 import CREATED, REQUEST, report, xml_errors, xml_rows

BASE = "/open311/v2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Running:
    url: str
    database_url: str
    key: str  # the government contact centre's
    revoked: str  # the web site's, revoked before the service started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running(
    make_database: MakeDatabase, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    database_url = await make_database("open311_service")
    state = tmp_path_factory.mktemp("open311_state")
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "HOTLINE_SERVICE_STATE_DIR": str(state), "HOTLINE_WEB_PORT": str(port),
           "HOTLINE_WEB_SESSION_SECRET": uuid.uuid4().hex * 2}
    code, out, err = await run_hotline("migrate", env=env)
    assert code == 0, err
    code, key, err = await run_hotline("apikey", "add", "gov_contact_centre",
                                       "--label", "contact centre", env=env)
    assert code == 0, err
    assert "shown once" in err and key.strip() not in err
    code, other, err = await run_hotline("apikey", "add", "web", env=env)
    assert code == 0, err
    match = re.search(r"api key (\d+) for channel web", err)
    assert match, err
    code, out, err = await run_hotline("apikey", "revoke", match[1], env=env)
    assert (code, f"api key {match[1]} (web") == (0, out[:len(f"api key {match[1]} (web")])
    code, listing, _ = await run_hotline("apikey", "list", env=env)
    assert "gov_contact_centre" in listing and "revoked" in listing
    assert key.strip() not in listing
    code, _, err = await run_hotline("apikey", "add", "telegraph", env=env)
    assert code == 2 and err.startswith("hotline: error: channel:")

    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("HOTLINE_") and k not in ("DATABASE_URL", "REDIS_URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "run", "--role", "web", env=full_env | env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:
                assert proc.returncode is None, "the service exited"
                try:
                    async with http.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.2)
        yield Running(url, database_url, key.strip(), other.strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()[-2000:]


async def count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval("SELECT count(*) FROM appeals")
        return value
    finally:
        await conn.close()


async def test_open311_on_the_running_service(running: Running) -> None:
    url, key = f"{running.url}{BASE}", running.key
    async with aiohttp.ClientSession() as http:
        # services, both forms
        async with http.get(f"{url}/services.json") as response:
            assert response.status == 200
            assert "passenger_lift_out_of_order" in {
                s["service_code"] for s in await response.json()}
        async with http.get(f"{url}/services/no_cold_water.xml") as response:
            assert response.status == 200
            assert (await response.read()).count(b"<attribute>") == 2

        # the full path: POST (JSON answer), then GET the request in JSON and XML
        fields = report(key, address_string=f"вул. Сервісна{uuid.uuid4().hex[:6]}, 3")
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        async with http.post(f"{url}/requests.json", data=fields, headers=headers) as response:
            assert response.status == 201, await response.text()
            [created] = await response.json()
        assert list(created) == CREATED
        number = created["service_request_id"]
        async with http.get(f"{url}/requests/{number}.json",
                            params={"api_key": key, "locale": "en"}) as response:
            [request] = await response.json()
        assert list(request) == REQUEST
        assert (request["status"], request["agency_responsible"]) == (
            "open", "Holosiivskyi district state administration")
        async with http.get(f"{url}/requests/{number}.xml", params={"api_key": key}) as response:
            [row] = xml_rows(await response.read(), "service_requests", "request")
        assert (row["service_request_id"], row["status"]) == (number, "open")
        assert row["agency_responsible"].startswith("Голосіївська")
        assert await _channel(running.database_url, number) == "gov_contact_centre"

        # the retry
        before = await count(running.database_url)
        async with http.post(f"{url}/requests.xml", data=fields, headers=headers) as response:
            assert response.status == 200
            [again] = xml_rows(await response.read(), "service_requests", "request")
        assert again["service_request_id"] == number
        assert await count(running.database_url) == before

        # refusals, nothing written
        refusals = [
            ("json", fields | {"service_code": "no_such_service"}, None, 400),
            ("xml", {k: v for k, v in fields.items() if k != "attribute[entrance]"}, None, 400),
            ("xml", fields | {"api_key": "h1551_wrong"}, None, 403),
            ("json", fields | {"api_key": running.revoked}, None, 403),
            ("xml", b'{"service_code": ', "application/json", 400),
            ("json", b"service_code=x", "text/plain", 415),
        ]
        for fmt, body, ctype, status in refusals:
            kwargs: dict[str, Any] = {"data": body}
            if ctype:
                kwargs["headers"] = {"Content-Type": ctype}
            async with http.post(f"{url}/requests.{fmt}", **kwargs) as response:
                assert response.status == status, (fmt, status, await response.text())
                if fmt == "xml":
                    assert xml_errors(await response.read())[0][0] == str(status)
                else:
                    assert (await response.json())[0]["code"] == status
        assert await count(running.database_url) == before

        async with http.get(f"{running.url}/openapi.json") as response:
            assert response.status == 200
            assert f"{BASE}/requests.{{format}}" in (await response.json())["paths"]


async def _channel(database_url: str, number: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        value: str = await conn.fetchval("SELECT channel FROM appeals WHERE number = $1", number)
        return value
    finally:
        await conn.close()
