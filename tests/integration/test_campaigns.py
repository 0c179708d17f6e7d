"""District campaigns on the real PostgreSQL, delivered by the real relay to the SMS
gateway on loopback: a big campaign at the provider's rate through a relay restart,
each citizen exactly once; four eyes; cancel midway; only confirmed subscribers
who have not opted out receive."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import time as clock_time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import time

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from crm_sync.campaigns import (
    CONFIRM_PATH,
    Campaigns,
    CampaignsConfig,
    ConfirmLinks,
    SecondApproverRequired,
    campaign_routers,
    load_campaigns_config,
)
from crm_sync.notifications.optout import OptOutLinks, opt_out, opt_out_phone
from crm_sync.notifications.text import QuietHours
from crm_sync.outbox import ProviderLimits, Relay, RelayOptions
from crm_sync.outbox.providers import HttpSmsProvider
from tests.support.appeals import appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.providers import LoopbackGateway
from tests.support.relay import LoopLag, eventually, moving_clock

#: 50,000 takes minutes at the rate below; 5,000 by default on the shared machine.
SUBSCRIBERS = int(os.environ.get("HOTLINE_CAMPAIGN_SUBSCRIBERS", "5000"))
RATE = 250.0
CAP = 16
SECRET = b"test-secret"
OPT_OUT = OptOutLinks(SECRET, "https://1551.test")
CONFIRM = ConfirmLinks(SECRET, "https://1551.test")
FAST = RelayOptions(workers=4, batch=50, lease_seconds=60, max_attempts=50,
                    backoff_base=0.05, backoff_max=0.2, poll_interval=0.05)
_phones = itertools.count(1)
NOON = moving_clock(time(12, 0))  # outside the quiet hours whatever the hour of the run


class TimedGateway(LoopbackGateway):
    """Notes when each accepted message arrives (the gateway's own clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def _answer(self, request: web.Request) -> web.Response:
        before = len(self.arrivals)
        response = await super()._answer(request)
        if len(self.arrivals) > before:
            self.times.append(clock_time.monotonic())
        return response


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "campaigns") as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def gateway() -> AsyncIterator[TimedGateway]:
    server = TimedGateway()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def config() -> CampaignsConfig:
    return load_campaigns_config(CONFIG_DIR)


def relay(pool: asyncpg.Pool, gateway: LoopbackGateway, config: CampaignsConfig,
          rate: float, name: str) -> Relay:
    return Relay(pool, {"sms": HttpSmsProvider(gateway.url, gateway.api_key, timeout=5)},
                 campaign_routers(config, QuietHours(), OPT_OUT, CONFIRM), FAST,
                 limits={"sms": ProviderLimits(rate, CAP)}, name=name, clock=NOON)


async def districts(pool: asyncpg.Pool) -> list[str]:
    return [r["code"] for r in await pool.fetch("SELECT code FROM districts ORDER BY id")]


async def confirmed_subscribers(pool: asyncpg.Pool, count: int, district: str,
                                topic: str) -> list[str]:
    """``count`` citizens subscribed and confirmed, in bulk (the confirmation path has
    its own test)."""
    run = next(_phones)
    phones = [f"+38099{run:03d}{n:06d}" for n in range(count)]
    ids = await pool.fetch(
        "INSERT INTO citizens (phone) SELECT unnest($1::text[]) RETURNING id", phones)
    await pool.execute(
        """INSERT INTO subscriptions (citizen_id, district_id, topic, confirmed_at)
           SELECT unnest($1::bigint[]), (SELECT id FROM districts WHERE code = $2), $3, now()""",
        [r["id"] for r in ids], district, topic)
    return phones


async def new_campaign(service: Campaigns, district: str, topic: str,
                       author: str = "supervisor-a") -> int:
    return await service.create(author, {
        "topic": topic, "districts": [district], "text_uk": "Перекрито вулицю Хрещатик",
        "text_en": "Khreshchatyk is closed", "send_at": NOON().isoformat()})


def progress_of(service: Campaigns,
                campaign_id: int) -> Callable[[], Awaitable[dict[str, int]]]:
    async def get() -> dict[str, int]:
        progress: dict[str, int] = (await service.get(campaign_id))["progress"]
        return progress
    return get


def most_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)),
               default=0)


async def test_a_big_campaign_keeps_the_rate_and_survives_a_relay_restart(
    pool: asyncpg.Pool, gateway: TimedGateway, config: CampaignsConfig
) -> None:
    district = (await districts(pool))[0]
    phones = await confirmed_subscribers(pool, SUBSCRIBERS, district, "road_closures")
    service = Campaigns(pool, config)
    campaign_id = await new_campaign(service, district, "road_closures")
    assert (await service.get(campaign_id))["audience"] == SUBSCRIBERS  # the preview
    assert await service.approve(campaign_id, "supervisor-b", NOON()) == SUBSCRIBERS
    progress = progress_of(service, campaign_id)

    first = relay(pool, gateway, config, RATE, "relay-a")
    second = relay(pool, gateway, config, RATE, "relay-b")
    async with LoopLag() as lag:
        first.start()
        try:
            async def half() -> bool:
                return (await progress())["sent"] >= SUBSCRIBERS // 2
            await eventually(half, "half sent", deadline=600)
            second.start()  # for a while both relays send: together they keep the rate
            await asyncio.sleep(1.0)
        finally:
            await first.stop()
        midway = await progress()
        assert 0 < midway["sent"] < SUBSCRIBERS

        try:
            async def all_sent() -> bool:
                return (await progress())["sent"] == SUBSCRIBERS
            await eventually(all_sent, "all sent", deadline=600)
        finally:
            await second.stop()

    assert gateway.posts == SUBSCRIBERS  # not one message was offered twice
    assert Counter(a.to for a in gateway.arrivals) == Counter(phones)  # each exactly once
    assert {a.key for a in gateway.arrivals} == {
        f"campaign:{campaign_id}:citizen:{c}" for c in await pool.fetchval(
            "SELECT array_agg(id) FROM citizens WHERE phone = ANY($1::text[])", phones)}
    by = await pool.fetch(
        """SELECT split_part(m.leased_by, '/', 1) AS relay, count(*) FROM outbox_messages m
           JOIN campaign_batches b USING (event_id) WHERE b.campaign_id = $1 GROUP BY 1""",
        campaign_id)
    assert {r["relay"] for r in by} == {"relay-a", "relay-b"}
    # Send slots are 1/RATE apart for both relays together (one row in PostgreSQL):
    # over the whole campaign never above the rate; in short windows only what a late
    # loop or a slow round trip bunched (at most CAP in flight) crowds a window.
    times = sorted(gateway.times)
    assert times[-1] - times[0] >= (len(times) - CAP) / RATE - 2 * lag.worst - 0.1
    for width in (1.0, 5.0, 10.0):
        assert most_in_window(times, width) <= RATE * 1.25 * (width + lag.worst) + CAP, (
            width, lag.worst)
    final = await service.get(campaign_id)
    assert final["progress"]["queued"] == 0 and final["progress"]["not_fanned_out"] == 0


async def test_the_author_cannot_approve_their_own_campaign(
    pool: asyncpg.Pool, config: CampaignsConfig
) -> None:
    district = (await districts(pool))[1]
    await confirmed_subscribers(pool, 3, district, "outages")
    service = Campaigns(pool, config)
    campaign_id = await new_campaign(service, district, "outages", author="supervisor-a")
    with pytest.raises(SecondApproverRequired):
        await service.approve(campaign_id, "supervisor-a", NOON())
    row = await pool.fetchrow("SELECT status, approved_by FROM campaigns WHERE id = $1",
                              campaign_id)
    assert (row["status"], row["approved_by"]) == ("draft", None)
    assert await pool.fetchval("SELECT count(*) FROM campaign_batches WHERE campaign_id = $1",
                               campaign_id) == 0
    # The table says so too, for whoever writes SQL by hand.
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE campaigns SET approved_by = created_by WHERE id = $1",
                           campaign_id)


async def test_cancel_midway_stops_the_rest_and_never_resends(
    pool: asyncpg.Pool, gateway: TimedGateway, config: CampaignsConfig
) -> None:
    total = 600
    district = (await districts(pool))[2]
    await confirmed_subscribers(pool, total, district, "blood_donors")
    service = Campaigns(pool, replace(config, batch_size=50))
    campaign_id = await new_campaign(service, district, "blood_donors")
    await service.approve(campaign_id, "admin-b", NOON())
    progress = progress_of(service, campaign_id)
    key = f"campaign:{campaign_id}:"

    def arrived() -> int:
        return sum(a.key.startswith(key) for a in gateway.arrivals)

    sender = relay(pool, gateway, config, 60, "relay-c")
    sender.start()
    try:
        async def some() -> bool:
            return (await progress())["sent"] >= 60
        await eventually(some, "some sent", deadline=120)
        await service.cancel(campaign_id, "supervisor-a", NOON())

        async def settled() -> bool:
            p = await progress()
            return p["queued"] == 0 and p["not_fanned_out"] == 0
        await eventually(settled, "nothing left queued", deadline=120)
    finally:
        await sender.stop()
    after_cancel = await progress()
    sent = arrived()
    assert after_cancel["sent"] == sent < total
    assert after_cancel["cancelled"] > 0

    # Another relay later: nothing of the campaign goes again.
    posts = gateway.posts
    again = relay(pool, gateway, config, 60, "relay-d")
    again.start()
    try:
        await again.fan_out_once()
        await again.deliver_once("relay-d/check")
    finally:
        await again.stop()
    assert arrived() == sent and gateway.posts == posts
    assert (await progress())["sent"] == sent


async def test_only_confirmed_subscribers_who_did_not_opt_out_receive(
    pool: asyncpg.Pool, gateway: TimedGateway, config: CampaignsConfig
) -> None:
    district, elsewhere = (await districts(pool))[3:5]
    service = Campaigns(pool, config)
    phone = {name: f"+38098{next(_phones):03d}{n:04d}"
             for n, name in enumerate(("confirmed", "unconfirmed", "link", "stop", "other"))}
    subs = {name: (await service.subscribe(p, elsewhere if name == "other" else district,
                                           "emergencies", "en" if name == "link" else "uk",
                                           NOON()))["id"]
            for name, p in phone.items()}

    sender = relay(pool, gateway, config, 500, "relay-e")
    sender.start()
    try:
        async def confirmations() -> bool:
            return {a.to for a in gateway.arrivals} >= set(phone.values())
        await eventually(confirmations, "confirmation texts")
        texts = {a.to: a.text for a in gateway.arrivals if a.to in phone.values()}
        for name, p in phone.items():
            url = CONFIRM.url(subs[name])
            assert url in texts[p] and CONFIRM_PATH in url  # a signed link, one per subscription
        assert "Emergencies" in texts[phone["link"]]  # in the subscriber's language
        for name in ("confirmed", "link", "stop", "other"):
            assert await service.confirm(subs[name], NOON())
        citizen = await pool.fetchval("SELECT citizen_id FROM subscriptions WHERE id = $1",
                                      subs["link"])
        assert await opt_out(pool, citizen, "link", NOON())
        assert await opt_out_phone(pool, phone["stop"], "reply", NOON()) is not None

        campaign_id = await new_campaign(service, district, "emergencies")
        assert (await service.get(campaign_id))["audience"] == 1
        assert await service.approve(campaign_id, "admin-b", NOON()) == 1

        async def done() -> bool:
            return bool((await service.get(campaign_id))["progress"]["sent"] == 1)
        await eventually(done, "the campaign sent")
    finally:
        await sender.stop()
    got = [a.to for a in gateway.arrivals if a.key.startswith(f"campaign:{campaign_id}:")]
    assert got == [phone["confirmed"]]
    assert gateway.posts == len(gateway.arrivals)  # no text offered twice
