"""The external CRM on the real PostgreSQL with a fake CRM on loopback: pushed from
the outbox (down then up: every change once, in order per appeal), events from
before the CRM router caught up by the backfill, drift found and fixed by
reconciliation, and the CRM's signed status webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.appeals import NewAppeal
from crm_sync.outbox import Relay, RelayOptions, crm
from hotline.core.appeals import Appeal, Channel
from hotline.web.app import build_web_app
from hotline.web.common import APPEALS
from hotline.web.crm_webhook import CRM_WEBHOOK, STATUS_PATH, CrmWebhook
from hotline.web.delivery_reports import sign
from tests.support.appeals import OPERATOR, Clock, Ids, appeals_case_store, house, make_service
from tests.support.databases import MakeDatabase
from tests.support.fake_crm import CrmAppeal, FakeCrm
from tests.support.relay import eventually
from tests.support.web import SESSION_KEY

FAST = RelayOptions(workers=2, batch=20, lease_seconds=60, max_attempts=50,
                    backoff_base=0.05, backoff_max=0.2, poll_interval=0.05)
SECRET = b"crm-shared-secret"
Client = TestClient[web.Request, web.Application]
CLOCK = Clock()
SINCE = CLOCK.now - timedelta(days=1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "crm") as p:
        yield p


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fake() -> AsyncIterator[FakeCrm]:
    server = FakeCrm()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def clean(pool: asyncpg.Pool) -> None:
    """Each test starts with nothing pending (the database and the CRM are the module's)."""
    await crm.backfill(pool)
    await pool.execute("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
    await pool.execute("UPDATE outbox_messages SET status = 'cancelled' "
                       "WHERE status IN ('queued', 'sending', 'dead')")
    await pool.execute("UPDATE crm_cursor SET last_event_id = "
                       "(SELECT COALESCE(max(id), 0) FROM outbox)")


def _relay(pool: asyncpg.Pool, fake: FakeCrm) -> Relay:
    return Relay(pool, {crm.PROVIDER: crm.CrmClient(fake.url, fake.api_key, timeout=5)},
                 {t: [crm.crm_router()] for t in crm.TOPICS}, FAST)


async def _life(pool: asyncpg.Pool) -> Appeal:
    """Registered, routed, accepted, in progress: four events."""
    service = make_service(pool, CLOCK)
    ids = Ids(pool)
    appeal = (await service.register(NewAppeal(
        channel=Channel.PHONE, category="passenger_lift_out_of_order",
        district="holosiivskyi", address=house(), text="Не працює ліфт",
        citizen_id=await ids.citizen()), OPERATOR)).appeal
    assert appeal.executor_code is not None
    worker = await ids.executor_actor(appeal.executor_code)
    await service.accept(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
    return await service.start_work(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)


async def _event_keys(pool: asyncpg.Pool, number: str) -> list[str]:
    rows = await pool.fetch("SELECT key FROM outbox WHERE payload->>'number' = $1 "
                            "AND topic LIKE 'appeal.%' ORDER BY id", number)
    return [f"{r['key']}:crm" for r in rows]


async def _all_sent(pool: asyncpg.Pool, keys: list[str]) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM outbox_messages WHERE idempotency_key = ANY($1::text[]) "
        "AND status = 'sent'", keys)
    return bool(count == len(keys))


async def test_the_crm_down_then_up_gets_every_change_once_in_order(
    pool: asyncpg.Pool, clean: None, fake: FakeCrm
) -> None:
    fake.mode = "down"
    appeals = [await _life(pool) for _ in range(3)]
    expected = {a.number: await _event_keys(pool, a.number) for a in appeals}
    assert all(len(keys) >= 4 for keys in expected.values())
    relay = _relay(pool, fake)
    relay.start()
    try:
        await eventually(lambda: _posts_at_least(fake, 6), "the CRM refused some posts")
        assert not fake.keys
        fake.mode = "up"
        every = [k for keys in expected.values() for k in keys]
        await eventually(lambda: _all_sent(pool, every), "every CRM message sent")
    finally:
        await relay.stop()
    for appeal in appeals:
        their = fake.appeals[appeal.number]
        assert their.events == expected[appeal.number]  # in event order
        assert their.status == "in_progress"
    assert all(fake.keys[k] == 1 for k in every) and set(every) <= set(fake.keys)
    body = next(b for b in fake.received if b["number"] == appeals[0].number)
    assert "citizen_ids" not in body["appeal"]


async def _posts_at_least(fake: FakeCrm, n: int) -> bool:
    return fake.posts >= n


async def test_events_fanned_out_before_the_crm_router_are_backfilled_once(
    pool: asyncpg.Pool, clean: None, fake: FakeCrm
) -> None:
    appeal = await _life(pool)
    keys = await _event_keys(pool, appeal.number)
    # A relay without the CRM router took them: nothing for the CRM, events done.
    await pool.execute("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
    assert await crm.backfill(pool) == len(keys)
    assert await crm.backfill(pool) == 0
    relay = _relay(pool, fake)
    relay.start()
    try:
        await eventually(lambda: _all_sent(pool, keys), "the old events pushed")
    finally:
        await relay.stop()
    assert fake.appeals[appeal.number].events == keys
    assert all(fake.keys[k] == 1 for k in keys)


async def test_reconciliation_reports_drift_and_repushes_ours(
    pool: asyncpg.Pool, clean: None, fake: FakeCrm
) -> None:
    fake.mode = "up"
    changed, dropped = await _life(pool), await _life(pool)
    every = await _event_keys(pool, changed.number) + await _event_keys(pool, dropped.number)
    relay = _relay(pool, fake)
    relay.start()
    try:
        await eventually(lambda: _all_sent(pool, every), "both appeals pushed")
    finally:
        await relay.stop()
    assert await _report(pool, fake) == []
    # Drift at the CRM's side: a status changed there, an appeal lost, a stranger.
    fake.appeals[changed.number].status = "done"
    del fake.appeals[dropped.number]
    fake.appeals["X-0001"] = CrmAppeal("X-0001", "registered", datetime.now(UTC))
    client = crm.CrmClient(fake.url, fake.api_key)
    try:
        report = await crm.reconcile(pool, client, SINCE, fix=False, now=datetime.now(UTC))
        drift = {(d.number, d.kind, d.ours, d.theirs, d.action) for d in report.drift}
        assert drift == {(changed.number, "status", "in_progress", "done", "none"),
                         (dropped.number, "missing", "in_progress", None, "none"),
                         ("X-0001", "unknown", None, "registered", "none")}
        fixed = await crm.reconcile(pool, client, SINCE, now=datetime.now(UTC))
        again = await crm.reconcile(pool, client, SINCE, now=datetime.now(UTC))
    finally:
        await client.close()
    assert {(d.number, d.action) for d in fixed.drift} == {
        (changed.number, "repushed"), (dropped.number, "repushed"), ("X-0001", "none")}
    # Reconciling twice before the relay ran queues one re-push per appeal version.
    assert len(again.drift) == 3
    assert await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1", crm.RESYNC_TOPIC) == 2
    relay = _relay(pool, fake)
    relay.start()
    try:
        await eventually(lambda: _report_is(pool, fake, [("X-0001", "unknown")]),
                         "the CRM back in step")
    finally:
        await relay.stop()
    assert fake.appeals[changed.number].status == "in_progress"
    assert fake.appeals[dropped.number].status == "in_progress"
    del fake.appeals["X-0001"]


async def _report(pool: asyncpg.Pool, fake: FakeCrm) -> list[tuple[str, str]]:
    client = crm.CrmClient(fake.url, fake.api_key)
    try:
        report = await crm.reconcile(pool, client, SINCE, fix=False, now=datetime.now(UTC))
    finally:
        await client.close()
    return sorted((d.number, d.kind) for d in report.drift)


async def _report_is(pool: asyncpg.Pool, fake: FakeCrm, want: list[tuple[str, str]]) -> bool:
    return await _report(pool, fake) == want


# --- the webhook -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[APPEALS] = make_service(pool, CLOCK)
    app[CRM_WEBHOOK] = CrmWebhook(SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _post(client: Client, data: dict[str, str],
                secret: bytes = SECRET) -> tuple[int, dict[str, str]]:
    body = json.dumps(data).encode()
    async with client.post(STATUS_PATH, data=body, headers={
            "Content-Type": "application/json",
            "X-Hotline-Signature": sign(secret, body)}) as response:
        return response.status, await response.json()


async def test_a_crm_status_update_is_signed_applied_once_and_follows_the_rules(
    pool: asyncpg.Pool, client: Client
) -> None:
    appeal = await _life(pool)
    done = {"update_id": f"u-{appeal.number}-1", "number": appeal.number, "status": "done",
            "reason": "fixed by the CRM's crew"}
    assert (await _post(client, done, b"wrong"))[0] == 401
    assert await pool.fetchval("SELECT status FROM appeals WHERE id = $1",
                               appeal.id) == "in_progress"
    status, answer = await _post(client, done)
    assert status == 200 and answer["result"] == "applied" and answer["status"] == "done"
    history = await pool.fetchval(
        "SELECT count(*) FROM appeal_history WHERE appeal_id = $1 AND actor = 'supervisor:crm'",
        appeal.id)
    assert history == 1
    outbox = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'appeal.status_changed' "
        "AND payload->>'number' = $1 AND payload->>'to_status' = 'done'", appeal.number)
    assert outbox == 1
    # The replay changes nothing, even after the appeal moved on.
    await make_service(pool, CLOCK).reopen(appeal.id, OPERATOR, "still broken",
                                           channel=Channel.PHONE)
    assert await _post(client, done) == (200, {"result": "duplicate", "first": "applied"})
    assert await pool.fetchval("SELECT status FROM appeals WHERE id = $1",
                               appeal.id) == "reopened"
    # reopened -> accepted is not a transition: refused with the error form, recorded.
    illegal = {"update_id": f"u-{appeal.number}-2", "number": appeal.number,
               "status": "accepted"}
    status, answer = await _post(client, illegal)
    assert status == 409 and answer["error"] == "appeal_transition_forbidden"
    assert await pool.fetchval("SELECT result FROM crm_updates WHERE update_id = $1",
                               illegal["update_id"]) == "refused"
    assert await pool.fetchval("SELECT status FROM appeals WHERE id = $1",
                               appeal.id) == "reopened"
    unknown = {"update_id": "u-none", "number": "0000-000000", "status": "done"}
    assert (await _post(client, unknown))[0] == 404


async def test_an_update_left_pending_by_a_dead_process_is_taken_over(
    pool: asyncpg.Pool, client: Client
) -> None:
    appeal = await _life(pool)
    update = {"update_id": f"u-{appeal.number}-p", "number": appeal.number,
              "status": "needs_clarification", "reason": "which entrance?"}
    await pool.execute("INSERT INTO crm_updates (update_id, number, status) "
                       "VALUES ($1, $2, 'needs_clarification')", update["update_id"],
                       appeal.number)
    status, answer = await _post(client, update)
    assert status == 503 and answer["error"] == "crm_update_in_progress"
    assert await pool.fetchval("SELECT status FROM appeals WHERE id = $1",
                               appeal.id) == "in_progress"
    await pool.execute("UPDATE crm_updates SET received_at = now() - interval '1 hour' "
                       "WHERE update_id = $1", update["update_id"])
    assert (await _post(client, update))[1]["result"] == "applied"
    assert await _post(client, update) == (200, {"result": "duplicate", "first": "applied"})
