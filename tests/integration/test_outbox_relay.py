"""The outbox relay on the real PostgreSQL with a real SMTP server and an HTTP SMS
gateway on loopback: an appeal's life, racing relays, a gateway down then up,
throttling, dead letters and replay, delivery reports, quiet hours, opt-out."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest_asyncio

from crm_sync.appeals import AppealsService, NewAppeal
from crm_sync.notifications.appeals import TOPICS, appeal_router
from crm_sync.notifications.optout import OptOutLinks, opt_out
from crm_sync.notifications.templates import load_notifications_config
from crm_sync.notifications.text import QuietHours
from crm_sync.outbox import NewMessage, ProviderLimits, Relay, RelayOptions
from crm_sync.outbox.admin import apply_report, replay
from crm_sync.outbox.model import Event
from crm_sync.outbox.providers import HttpSmsProvider, SmtpProvider
from hotline.core.appeals import Channel
from tests.support.appeals import OPERATOR, Clock, Ids, appeals_case_store, house, make_service
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.providers import LoopbackGateway, LoopbackSmtp
from tests.support.relay import KYIV, LoopLag, eventually, moving_clock, ping_router

FAST = RelayOptions(workers=4, batch=20, lease_seconds=60, max_attempts=50,
                    backoff_base=0.05, backoff_max=0.2, poll_interval=0.05)
LINKS = OptOutLinks(b"test-secret", "https://1551.test")
_seq = itertools.count(1)
RACE = 10_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "relay") as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def gateway() -> AsyncIterator[LoopbackGateway]:
    server = LoopbackGateway()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def smtp() -> AsyncIterator[LoopbackSmtp]:
    server = LoopbackSmtp()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def clean(pool: asyncpg.Pool) -> None:
    """Each test starts with nothing pending (the database is the module's)."""
    await pool.execute("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
    await pool.execute("UPDATE outbox_messages SET status = 'cancelled' "
                       "WHERE status IN ('queued', 'sending', 'dead')")


def sms(gateway: LoopbackGateway) -> HttpSmsProvider:
    return HttpSmsProvider(gateway.url, gateway.api_key, timeout=5)


async def citizen(ids: Ids, pool: asyncpg.Pool, *, channel: str = "sms", language: str = "uk",
                  consent: bool = True, email: str | None = None) -> int:
    citizen_id = await ids.citizen()
    await pool.execute(
        """UPDATE citizens SET notify_channel = $2, preferred_language = $3,
               notify_consent = $4, email = $5 WHERE id = $1""",
        citizen_id, channel, language, consent, email)
    return citizen_id


async def _statuses(pool: asyncpg.Pool, citizen_id: int) -> list[str]:
    rows = await pool.fetch("SELECT status FROM outbox_messages WHERE citizen_id = $1 "
                            "ORDER BY id", citizen_id)
    return [r["status"] for r in rows]


async def _events(pool: asyncpg.Pool, count: int, topic: str = "test.ping") -> str:
    run = f"run{next(_seq)}-{datetime.now(UTC).timestamp()}"
    await pool.executemany(
        "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
        [(topic, f"{run}:{n}", {"n": n}) for n in range(count)])
    return run


async def test_an_appeals_life_produces_exactly_the_expected_messages(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway, smtp: LoopbackSmtp
) -> None:
    ids = Ids(pool)
    by_sms = await citizen(ids, pool, channel="sms", language="uk")
    by_mail = await citizen(ids, pool, channel="email", language="en",
                            email="olena@example.test")
    silent = await citizen(ids, pool, consent=False)
    service = make_service(pool, Clock())

    async def life(citizen_id: int) -> str:
        appeal = (await service.register(NewAppeal(
            channel=Channel.PHONE, category="passenger_lift_out_of_order",
            district="holosiivskyi", address=house(), text="Не працює ліфт",
            citizen_id=citizen_id), OPERATOR)).appeal
        assert appeal.executor_code is not None
        worker = await ids.executor_actor(appeal.executor_code)
        await service.accept(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
        await service.start_work(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
        await service.ask_clarification(appeal.id, worker, "Який під'їзд?",
                                        channel=Channel.EXECUTOR_PORTAL)
        await service.add_comment(appeal.id, OPERATOR, "internal", visibility="internal",
                                  channel=Channel.PHONE)
        return appeal.number

    numbers = {c: await life(c) for c in (by_sms, by_mail, silent)}
    config = load_notifications_config(CONFIG_DIR)
    relay = Relay(pool, {"sms": sms(gateway), "email": SmtpProvider("127.0.0.1", smtp.port,
                                                                      "1551@kyiv.test")},
                  {t: [appeal_router(config, LINKS)] for t in TOPICS}, FAST,
                  clock=moving_clock(time(12, 0)))
    relay.start()
    try:
        await eventually(lambda: _all_sent(pool, (by_sms, by_mail)), "every message sent")
    finally:
        await relay.stop()

    texts = [a.text for a in gateway.arrivals if numbers[by_sms] in a.text]
    assert len(texts) == 3 and len(gateway.arrivals) == 3
    assert texts[0].startswith(f"Звернення {numbers[by_sms]} зареєстровано")
    assert "передано виконавцю" in texts[1] and "уточнення: Який під'їзд?" in texts[2]
    mails = smtp.sink.messages
    assert [m["Subject"] for m in mails] == [
        f"Your appeal {numbers[by_mail]} is registered",
        f"Appeal {numbers[by_mail]} sent to the executor",
        f"Appeal {numbers[by_mail]} clarification needed".replace(" clar", ": clar"),
    ]
    first = mails[0]
    parts = first.get_payload()
    assert first.is_multipart() and isinstance(parts, list)
    assert [p.get_content_type() for p in parts if not isinstance(p, str)] == [
        "text/plain", "text/html"]
    assert first["Message-ID"].endswith("@kyiv.test>") and first["Date"]
    assert first["List-Unsubscribe"] == f"<{LINKS.url(by_mail)}>"
    assert await _statuses(pool, silent) == []
    rows = await pool.fetch("SELECT provider_message_id, meta FROM outbox_messages "
                            "WHERE citizen_id = $1 ORDER BY id", by_sms)
    assert [r["provider_message_id"] for r in rows] == [a.id for a in gateway.arrivals]
    assert rows[0]["meta"]["encoding"] == "ucs2"


async def _all_sent(pool: asyncpg.Pool, citizens: tuple[int, ...]) -> bool:
    pending = await pool.fetchval(
        """SELECT count(*) FROM outbox_messages WHERE citizen_id = ANY($1::bigint[])
           AND status IN ('queued', 'sending')""", list(citizens))
    fanned = await pool.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
    total = await pool.fetchval(
        "SELECT count(*) FROM outbox_messages WHERE citizen_id = ANY($1::bigint[])",
        list(citizens))
    return bool(pending == 0 and fanned == 0 and total > 0)


async def test_two_relay_processes_deliver_10000_messages_once_each(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    run = await _events(pool, RACE, "test.race")
    dsn = pool._connect_args[0]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.relay_process", dsn, gateway.url,
        gateway.api_key, "test.race", f"relay{n}", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL) for n in range(2)]
    posted: Counter[str] = Counter()
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"started"
        await eventually(_sent(pool, run, RACE), f"{RACE} sent", deadline=300)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()  # each stops cleanly on end of input
        assert [await proc.wait() for proc in procs] == [0, 0]
    posted.update(a.key for a in gateway.arrivals)
    assert gateway.posts == RACE  # no message was even offered twice
    assert len(posted) == RACE and set(posted.values()) == {1}
    by = await pool.fetch("SELECT leased_by, count(*) FROM outbox_messages "
                          "WHERE idempotency_key LIKE $1 GROUP BY 1", f"{run}:%")
    assert {r["leased_by"].split("/")[0] for r in by} == {"relay0", "relay1"}


async def test_gateway_down_then_up_everything_arrives_once_in_order_per_citizen(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    run = await _events(pool, 60, "test.down")
    gateway.mode = "down"
    relay = Relay(pool, {"sms": sms(gateway)}, {"test.down": [ping_router(6)]}, FAST)
    relay.start()
    try:
        await eventually(lambda: _refused(gateway, 6), "every citizen's head tried")
        assert not gateway.arrivals
        gateway.mode = "up"

        await eventually(_sent(pool, run, 60), "all sent after the gateway came back")
    finally:
        await relay.stop()
    mine = [a for a in gateway.arrivals if a.key.startswith(f"{run}:")]
    assert len(mine) == 60 and len({a.key for a in mine}) == 60
    for k in range(6):
        seen = [int(a.text.split()[1]) for a in mine if int(a.text.split()[1]) % 6 == k]
        assert seen == sorted(seen) and len(seen) == 10


def _sent(pool: asyncpg.Pool, run: str, count: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: all ``count`` messages of the run are sent."""
    async def check() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM outbox_messages WHERE idempotency_key LIKE $1 "
            "AND status = 'sent'", f"{run}:%") == count)
    return check


async def _refused(gateway: LoopbackGateway, count: int) -> bool:
    return gateway.refused >= count


async def test_a_gateway_down_for_a_minute_loses_nothing_and_spends_few_attempts(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    """The acceptance's outage, in real time and with the shipped options: a minute
    of 503s, then the gateway is back; each message arrives once, in order per
    citizen; none died; the outage cost a message at most the one attempt it took
    to see the gateway down."""
    run = await _events(pool, 60, "test.minute")
    options = RelayOptions()
    gateway.mode = "down"
    relay = Relay(pool, {"sms": sms(gateway)}, {"test.minute": [ping_router(6)]}, options)
    loop = asyncio.get_running_loop()
    relay.start()
    try:
        down_at = loop.time()
        await eventually(lambda: _refused(gateway, options.circuit_threshold), "refusals")
        assert relay.circuits["sms"].is_open
        await asyncio.sleep(max(0.0, 60.0 - (loop.time() - down_at)))
        assert not gateway.arrivals
        gateway.mode = "up"

        await eventually(_sent(pool, run, 60), "all sent after the gateway came back",
                         deadline=120)
        assert not relay.circuits["sms"].is_open
    finally:
        await relay.stop()
    mine = [a for a in gateway.arrivals if a.key.startswith(f"{run}:")]
    assert len(mine) == 60 and len({a.key for a in mine}) == 60
    for k in range(6):
        seen = [int(a.text.split()[1]) for a in mine if int(a.text.split()[1]) % 6 == k]
        assert seen == sorted(seen) and len(seen) == 10
    # Each citizen's first message was tried once before the gateway was seen down
    # (without the circuit: about five times each in a minute of backoff).
    spent = await pool.fetchval("SELECT max(attempts) FROM outbox_messages "
                                "WHERE idempotency_key LIKE $1", f"{run}:%")
    assert spent <= 2


async def test_throttling_spends_no_attempt_and_failures_end_dead_until_replayed(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    run = await _events(pool, 3, "test.dead")
    gateway.mode, gateway.retry_after = "throttle", "0"
    # The circuit off: here every failure is the message's own (with it on, a gateway
    # failing everything is "down" and spends nothing — the next tests).
    options = RelayOptions(workers=1, batch=5, max_attempts=3, backoff_base=0.01,
                           backoff_max=0.02, poll_interval=0.02, circuit_threshold=10**6)
    relay = Relay(pool, {"sms": sms(gateway)}, {"test.dead": [ping_router()]}, options)
    relay.start()
    try:
        await eventually(lambda: _posts_over(gateway, 20), "throttled many times")
        assert await pool.fetchval(
            "SELECT max(attempts) FROM outbox_messages WHERE idempotency_key LIKE $1",
            f"{run}:%") <= 1  # a 429 is the gateway's state, not the message's failure
        gateway.mode = "down"

        async def dead() -> bool:
            return bool(await pool.fetchval(
                "SELECT count(*) FROM outbox_messages WHERE idempotency_key LIKE $1 "
                "AND status = 'dead'", f"{run}:%") == 3)
        await eventually(dead, "dead after 3 attempts")
        attempts = await pool.fetch("SELECT attempts, last_error FROM outbox_messages "
                                    "WHERE idempotency_key LIKE $1", f"{run}:%")
        assert {r["attempts"] for r in attempts} == {3}
        assert all("503" in r["last_error"] for r in attempts)
        gateway.mode = "up"
        assert await replay(pool, None, datetime.now(UTC)) == 3

        await eventually(_sent(pool, run, 3), "sent after the replay")
    finally:
        await relay.stop()


async def _posts_over(gateway: LoopbackGateway, n: int) -> bool:
    return gateway.posts > n


async def test_delivery_reports_move_forward_once_even_before_the_send_is_recorded(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    run = await _events(pool, 2, "test.dlr")
    now = datetime.now(UTC)
    # The gateway's report for the second message arrives before we record its send.
    assert await apply_report(pool, "sms", "gw-early", "delivered", now) == "pending"
    relay = Relay(pool, {"sms": sms(gateway)}, {"test.dlr": [ping_router()]}, FAST)
    assert await relay.fan_out_once() >= 2
    await relay.deliver_once("w")
    rows = await pool.fetch("SELECT id, status, provider_message_id FROM outbox_messages "
                            "WHERE idempotency_key LIKE $1 ORDER BY id", f"{run}:%")
    assert [r["status"] for r in rows] == ["sent", "sent"]
    first = rows[0]["provider_message_id"]
    assert await apply_report(pool, "sms", first, "delivered", now) == "applied"
    assert await apply_report(pool, "sms", first, "delivered", now) == "duplicate"
    assert await apply_report(pool, "sms", first, "failed", now) == "pending"  # not undone
    assert await pool.fetchval("SELECT status FROM outbox_messages WHERE id = $1",
                               rows[0]["id"]) == "delivered"
    # the early report: recorded with the send
    await pool.execute("UPDATE outbox_messages SET status = 'sending', leased_by = 'w2' "
                       "WHERE id = $1", rows[1]["id"])
    from crm_sync.outbox.relay import _SENT

    await pool.execute(_SENT, rows[1]["id"], "w2", "gw-early", now)
    assert await pool.fetchval("SELECT status FROM outbox_messages WHERE id = $1",
                               rows[1]["id"]) == "delivered"


async def test_quiet_hours_delay_texts_to_the_morning_and_opt_out_cancels(
    pool: asyncpg.Pool, clean: None
) -> None:
    ids = Ids(pool)
    night = await citizen(ids, pool, channel="sms")
    mailer = await citizen(ids, pool, channel="email", email="x@example.test")
    service: AppealsService = make_service(pool, Clock())
    for c in (night, mailer):
        await service.register(NewAppeal(
            channel=Channel.PHONE, category="no_entrance_lighting", district="darnytskyi",
            address=house(), text="Темно", citizen_id=c), OPERATOR)
    clock = moving_clock(time(23, 30))
    relay = Relay(pool, {}, {t: [appeal_router(load_notifications_config(CONFIG_DIR), LINKS)]
                             for t in TOPICS}, FAST, clock=clock)
    while await relay.fan_out_once():
        pass
    texts = await pool.fetch("SELECT available_at FROM outbox_messages WHERE citizen_id = $1",
                             night)
    morning = [r["available_at"].astimezone(KYIV) for r in texts]
    assert len(morning) == 2 and all(m.time() == time(8, 0) for m in morning)
    assert all(m - clock() < timedelta(hours=9) for m in morning)
    mails = await pool.fetch("SELECT available_at FROM outbox_messages WHERE citizen_id = $1",
                             mailer)
    assert len(mails) == 2 and all(r["available_at"] <= clock() for r in mails)
    assert await opt_out(pool, night, "link", datetime.now(UTC)) is True
    assert await opt_out(pool, night, "link", datetime.now(UTC)) is False
    assert await _statuses(pool, night) == ["cancelled", "cancelled"]


async def test_a_slow_gateway_times_out_and_the_retry_carries_the_same_key(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    run = await _events(pool, 12, "test.slow")
    gateway.mode, gateway.delay = "slow", 0.5
    provider = HttpSmsProvider(gateway.url, gateway.api_key, timeout=0.1)
    relay = Relay(pool, {"sms": provider}, {"test.slow": [ping_router()]}, FAST,
                  limits={"sms": ProviderLimits(1000, 2)})
    relay.start()
    try:
        await eventually(lambda: _posts_over(gateway, 13), "timed out and retried")
        gateway.mode = "up"

        await eventually(_sent(pool, run, 12), "sent once the gateway is quick again")
    finally:
        await relay.stop()
    mine = [a for a in gateway.arrivals if a.key.startswith(f"{run}:")]
    # the slow answers did arrive at the gateway: the retries were recognised by their key
    assert len(mine) == 12 and gateway.posts > 12
    ids = await pool.fetch("SELECT provider_message_id FROM outbox_messages "
                           "WHERE idempotency_key LIKE $1", f"{run}:%")
    assert {r["provider_message_id"] for r in ids} == {a.id for a in mine}


async def test_the_concurrency_cap_holds_across_workers(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    run = await _events(pool, 16, "test.cap")
    gateway.mode, gateway.delay = "slow", 0.05
    relay = Relay(pool, {"sms": sms(gateway)}, {"test.cap": [ping_router()]}, FAST,
                  limits={"sms": ProviderLimits(1000, 2)})
    relay.start()
    try:
        await eventually(_sent(pool, run, 16), "all sent")
    finally:
        await relay.stop()
    assert gateway.max_in_flight == 2  # 4 workers with 20 each, 2 requests at a time


async def test_a_retry_that_would_fall_in_the_night_waits_for_the_morning(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    async def route(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        quiet = event.payload["n"] == 0  # the second one is urgent
        return [NewMessage("sms", f"{event.key}:sms", f"sms:night:{event.key}",
                           "+380500000000", "text", meta={"quiet": quiet})]

    run = await _events(pool, 2, "test.night")
    gateway.mode = "down"
    clock = moving_clock(time(21, 59, 59))  # tried a second before the quiet hours
    relay = Relay(pool, {"sms": sms(gateway)}, {"test.night": [route]},
                  RelayOptions(backoff_base=4.0, backoff_max=4.0),  # retry in 2 to 4 s
                  clock=clock, quiet=QuietHours(time(22, 0), time(8, 0)))
    assert await relay.fan_out_once() == 2
    assert await relay.deliver_once("w") == 2
    await relay.stop()
    rows = await pool.fetch("SELECT status, available_at FROM outbox_messages "
                            "WHERE idempotency_key LIKE $1 ORDER BY id", f"{run}:%")
    assert [r["status"] for r in rows] == ["queued", "queued"] and gateway.refused == 2
    assert rows[0]["available_at"].astimezone(KYIV).time() == time(8, 0)
    assert rows[1]["available_at"] - clock() < timedelta(seconds=5)


async def test_a_router_that_fails_delays_its_event_and_the_fan_out_goes_on(
    pool: asyncpg.Pool, clean: None, gateway: LoopbackGateway
) -> None:
    """A bad event is put back with its error; the events beside it are fanned out
    and the relay's loop survives (it used to die logging the failure)."""

    async def broken(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        raise ValueError(f"cannot route {event.key}")

    bad = await _events(pool, 1, "test.broken")
    good = await _events(pool, 2, "test.fine")
    relay = Relay(pool, {"sms": sms(gateway)},
                  {"test.broken": [broken], "test.fine": [ping_router()]}, FAST)
    assert await relay.fan_out_once() == 3
    failed = await pool.fetchrow("SELECT attempts, last_error, delivered_at FROM outbox "
                                 "WHERE key = $1", f"{bad}:0")
    assert failed["attempts"] == 1 and failed["delivered_at"] is None
    assert "cannot route" in failed["last_error"]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key LIKE $1 "
                               "AND delivered_at IS NOT NULL", f"{good}:%") == 2


async def test_two_relay_processes_share_one_provider_rate(pool: asyncpg.Pool) -> None:
    """Each relay process has its own limiter; together they must keep the
    provider's rate (a bucket per process sent twice the rate, plus a full
    second's burst at each start)."""
    from crm_sync.outbox.relay import SharedRateLimiter

    rate, per_process = 50.0, 60
    provider = f"shared-{next(_seq)}"
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def process() -> None:
        # a limiter of its own, as each relay process has; only the database is shared
        limiter = SharedRateLimiter(pool, provider, rate)

        async def send() -> None:
            await limiter.acquire()
            times.append(loop.time())

        await asyncio.gather(*(send() for _ in range(per_process)))

    async with LoopLag() as lag:
        await asyncio.gather(process(), process())
    times.sort()
    assert len(times) == 2 * per_process
    # Over the whole run (jitter only moves its two ends): never above the rate.
    # Two limiters of their own would have sent both halves at once, in half the time.
    assert times[-1] - times[0] >= (len(times) - 1) / rate - 2 * lag.worst - 0.1
    # Over short windows, a late loop or a slow round trip to PostgreSQL bunches sends
    # whose slots were spaced right: a quarter more, still far under twice the rate.
    for width in (0.5, 1.0):
        busiest = max(sum(1 for t in times if start <= t < start + width) for start in times)
        assert busiest <= rate * 1.25 * (width + lag.worst) + 3, (width, busiest, lag.worst)
