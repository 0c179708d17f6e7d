"""Announcements, the hours override and the callbacks' state over HTTP (real
PostgreSQL and Redis): who may do what, strict validation of the text, the
period and an uploaded recording, and nothing written when refused."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.web.announcements import ANNOUNCEMENT_AUDIO, MAX_RECORDING_BYTES
from hotline.web.app import build_web_app
from tests.support.appeals import appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.web import SESSION_KEY, add_user, csrf_in, sign_in_form

Client = TestClient[web.Request, web.Application]
BASE = "/api/admin/announcements"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "announcements") as p:
        yield p


class Audio:
    def __init__(self) -> None:
        self.made: list[tuple[int, str, bytes | None]] = []
        self.fail = False

    async def __call__(self, announcement_id: int, text: str, wav: bytes | None) -> None:
        if self.fail:
            raise OSError("espeak-ng is missing")
        self.made.append((announcement_id, text, wav))


@pytest_asyncio.fixture
async def audio() -> Audio:
    return Audio()


@pytest_asyncio.fixture
async def client(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, audio: Audio
) -> AsyncIterator[Client]:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[ANNOUNCEMENT_AUDIO] = audio.__call__
    async with TestClient(TestServer(app)) as c:
        yield c


def body(**changes: object) -> str:
    now = datetime.now(UTC)
    data: dict[str, object] = {
        "kind": "water", "text": "Немає холодної води до 18:00", "district_ids": [1, 2],
        "starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=6)).isoformat(),
    }
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def wav_bytes(rate: int = 8000, channels: int = 1, width: int = 2, seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(rate * seconds) * channels * (width // 2 or 1))
    return out.getvalue()


async def test_a_supervisor_announces_uploads_a_recording_and_stops_it(
    client: Client, pool: asyncpg.Pool, audio: Audio
) -> None:
    csrf = await sign_in_form(client, await add_user(pool, "supervisor"))
    listed = await client.get(BASE)
    assert listed.status == 200
    data = await listed.json()
    assert data["districts"] and "water" in data["kinds"]
    made = await client.post(BASE, headers={"X-CSRF-Token": csrf}, data=body())
    assert made.status == 201, await made.text()
    announcement_id = (await made.json())["id"]
    assert audio.made == [(announcement_id, "Немає холодної води до 18:00", None)]
    row = await pool.fetchrow("SELECT * FROM announcements WHERE id = $1", announcement_id)
    assert row["district_ids"] == [1, 2] and row["audio_source"] == "synthesised"
    assert row["created_by"]

    recording = wav_bytes()
    uploaded = await client.put(f"{BASE}/{announcement_id}/recording", data=recording,
                                headers={"X-CSRF-Token": csrf, "Content-Type": "audio/wav"})
    assert uploaded.status == 200, await uploaded.text()
    assert (await uploaded.json())["seconds"] == 0.5
    assert audio.made[-1] == (announcement_id, "", recording)
    assert await pool.fetchval("SELECT audio_source FROM announcements WHERE id = $1",
                               announcement_id) == "recording"

    stopped = await client.post(f"{BASE}/{announcement_id}/cancel",
                                headers={"X-CSRF-Token": csrf})
    assert stopped.status == 200
    assert announcement_id not in [a["id"] for a in (await (await client.get(BASE)).json())[
        "announcements"]]


@pytest.mark.parametrize(("changes", "field"), [
    ({"kind": "gossip"}, "kind"),
    ({"text": ""}, "text"),
    ({"text": "x" * 1001}, "text"),
    ({"district_ids": []}, "district_ids"),
    ({"district_ids": ["obolonskyi"]}, "district_ids"),
    ({"district_ids": [True]}, "district_ids"),
    ({"district_ids": [99999]}, "district_ids"),
    ({"starts_at": "tomorrow"}, "starts_at"),
    ({"starts_at": "2026-11-30T10:00:00"}, "starts_at"),  # no offset
    ({"ends_at": "2020-01-01T00:00:00+00:00"}, "ends_at"),  # before the start
])
async def test_bad_announcements_are_named_and_nothing_is_written(
    client: Client, pool: asyncpg.Pool, audio: Audio, changes: dict[str, object], field: str
) -> None:
    csrf = await sign_in_form(client, await add_user(pool, "admin"))
    count = await pool.fetchval("SELECT count(*) FROM announcements")
    response = await client.post(BASE, headers={"X-CSRF-Token": csrf}, data=body(**changes))
    assert response.status == 400, await response.text()
    answer = await response.json()
    assert answer["error"] == "invalid_input" and field in answer["message"]
    assert await pool.fetchval("SELECT count(*) FROM announcements") == count
    assert audio.made == []


async def test_recordings_are_checked_strictly(client: Client, pool: asyncpg.Pool) -> None:
    csrf = await sign_in_form(client, await add_user(pool, "supervisor"))
    made = await client.post(BASE, headers={"X-CSRF-Token": csrf}, data=body())
    announcement_id = (await made.json())["id"]
    url = f"{BASE}/{announcement_id}/recording"
    cases = [
        (b"ID3\x04" + b"\x00" * 100, "audio/wav", "not a WAV"),  # an MP3
        (wav_bytes(rate=44100), "audio/wav", "8000 Hz"),
        (wav_bytes(channels=2), "audio/wav", "mono"),
        (wav_bytes()[:-10], "audio/wav", "RIFF size"),  # truncated
        (wav_bytes(), "text/html", "audio/wav"),
        (b"RIFF" + (MAX_RECORDING_BYTES + 8).to_bytes(4, "little") + b"WAVE"
         + b"\x00" * (MAX_RECORDING_BYTES + 10), "audio/wav", "at most"),
    ]
    for data, content_type, reason in cases:
        response = await client.put(url, data=data, headers={
            "X-CSRF-Token": csrf, "Content-Type": content_type})
        assert response.status == 400, reason
        answer = await response.json()
        assert answer["error"] == "recording_refused" and reason in answer["message"], answer
    assert await pool.fetchval("SELECT audio_source FROM announcements WHERE id = $1",
                               announcement_id) == "synthesised"
    missing = await client.put(f"{BASE}/99999999/recording", data=wav_bytes(),
                               headers={"X-CSRF-Token": csrf, "Content-Type": "audio/wav"})
    assert missing.status == 404


async def test_an_announcement_nobody_could_hear_is_not_published(
    client: Client, pool: asyncpg.Pool, audio: Audio
) -> None:
    csrf = await sign_in_form(client, await add_user(pool, "supervisor"))
    audio.fail = True
    response = await client.post(BASE, headers={"X-CSRF-Token": csrf}, data=body(text="тест"))
    assert response.status == 503
    assert await pool.fetchval(
        "SELECT count(*) FROM announcements WHERE text = 'тест' AND cancelled_at IS NULL") == 0


async def sign_in_as(client: Client, pool: asyncpg.Pool, role: str) -> str:
    client.session.cookie_jar.clear()
    user = await add_user(pool, role)
    token = csrf_in(await (await client.get("/login")).text())
    await client.post("/login", data={"login": user.login, "password": user.password,
                                      "csrf": token})
    page = await client.get("/admin/announcements")
    return csrf_in(await page.text()) if page.status == 200 else ""


async def test_who_may_do_what(client: Client, pool: asyncpg.Pool) -> None:
    for role in ("operator", "executor", "leadership"):
        await sign_in_as(client, pool, role)
        assert (await client.get(BASE)).status == 403, role
        assert (await client.get("/admin/announcements")).status == 403, role
        assert (await client.post(BASE, data=body())).status == 403, role
    client.session.cookie_jar.clear()
    assert (await client.get(BASE)).status == 401

    override = json.dumps({"scope": "*", "mode": "closed", "reason": "evacuation"})
    csrf = await sign_in_as(client, pool, "supervisor")
    assert csrf
    assert (await client.get("/api/admin/hours")).status == 200
    refused = await client.post("/api/admin/hours/override", data=override,
                                headers={"X-CSRF-Token": csrf})
    assert refused.status == 403  # the emergency switch is the admins'
    assert (await client.get("/api/callbacks")).status == 200

    csrf = await sign_in_as(client, pool, "admin")
    assert (await client.post("/api/admin/hours/override", data=override)).status == 403  # CSRF
    assert await pool.fetchval("SELECT count(*) FROM hours_overrides") == 0
    for bad, field in (({"scope": "no such; queue", "mode": "closed", "reason": "x"}, "scope"),
                       ({"scope": "*", "mode": "shut", "reason": "x"}, "mode"),
                       ({"scope": "*", "mode": "closed", "reason": ""}, "reason")):
        response = await client.post("/api/admin/hours/override", data=json.dumps(bad),
                                     headers={"X-CSRF-Token": csrf})
        assert response.status == 400 and field in (await response.json())["message"]
    ok = await client.post("/api/admin/hours/override", data=override,
                           headers={"X-CSRF-Token": csrf})
    assert ok.status == 200
    state = await (await client.get("/api/admin/hours")).json()
    assert [(o["scope"], o["mode"]) for o in state["overrides"]] == [("*", "closed")]
    assert state["audit"][0]["reason"] == "evacuation" and state["audit"][0]["set_by"]
    lifted = await client.post("/api/admin/hours/override", headers={"X-CSRF-Token": csrf},
                               data=json.dumps({"scope": "*", "mode": None, "reason": "over"}))
    assert lifted.status == 200
    assert await pool.fetchval("SELECT count(*) FROM hours_overrides") == 0
    assert await pool.fetchval("SELECT count(*) FROM hours_override_audit") == 2


async def test_the_wallboard_sees_callbacks_per_queue(client: Client, pool: asyncpg.Pool) -> None:
    from crm_sync.callflow import PostgresCallbacks
    from hotline.core.records import CallbackRequest

    store = PostgresCallbacks(pool)
    for n in range(3):
        await store.book_callback(CallbackRequest(
            "pbx-web", f"1700000001.{n}", "wbq", f"38044700000{n}", "wait",
            datetime.now(UTC), 3))
    job = await store.claim("wbq", 1, "d", 60)
    assert job is not None
    await store.finish(job, True, "answered", 0)
    await sign_in_as(client, pool, "leadership")
    response = await client.get("/api/callbacks")
    assert response.status == 200
    [queue] = [q for q in (await response.json())["queues"] if q["queue"] == "wbq"]
    assert (queue["waiting"], queue["dialing"], queue["placed_today"]) == (2, 0, 1)
    page = await client.get("/wallboard")
    assert 'id="callbacks"' in await page.text()
