"""The outbox relay: outbox events fanned out into messages, messages delivered by
providers, exactly once in effect.

Two short kinds of transaction, never one held across the network:

1. fan-out — one process at a time (a transaction-level advisory lock): due
   ``outbox`` rows of the routed topics are claimed, each router turns an event
   into messages (one per recipient per provider, ``idempotency_key`` unique, so a
   re-run inserts nothing), and the event is marked done in the same transaction;
2. delivery — workers claim due messages with ``FOR UPDATE SKIP LOCKED``, each
   with a lease (``status = 'sending'``, ``lease_until``); they deliver outside any
   transaction, passing the idempotency key, and record the result: ``sent`` with
   the provider's id, or back to ``queued`` with exponential backoff and jitter,
   or ``dead`` after ``max_attempts``; a refusal of the message itself is
   ``failed``. A worker that dies leaves a lease that expires: the message is
   claimed again (the provider's idempotency key keeps that from doubling it).

Only the head of an ``order_key`` (the oldest message still queued or sending) is
claimable, so one citizen's messages go out in the order of the events.
Rate limit and concurrency cap are per provider and per process.

A provider that fails ``circuit_threshold`` sends in a row is taken as down (a
circuit opens): its messages are left alone, one probe batch goes after a pause
that doubles up to ``circuit_pause_max``, and failures while it is down spend no
attempt — an hour of gateway outage is the gateway's failure, not the messages',
and must not turn them all into dead letters.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from crm_sync.notifications.text import QuietHours
from crm_sync.outbox.model import (
    Event,
    NewMessage,
    Outgoing,
    PermanentFailure,
    Provider,
    Router,
    TemporaryFailure,
)
from hotline.core.logs import get_logger

log = get_logger("crm_sync.outbox")
#: Key of the transaction advisory lock of the fan-out ("1551" + "0007").
FAN_OUT_LOCK = 1551_0007

_CLAIM = """
WITH due AS (
    SELECT m.id FROM outbox_messages m
    WHERE m.status IN ('queued', 'sending')
      AND ((m.status = 'queued' AND m.available_at <= $1)
           OR (m.status = 'sending' AND m.lease_until < $1))
      AND m.provider = ANY($4::text[])
      AND NOT EXISTS (
          SELECT 1 FROM outbox_messages p
          WHERE p.order_key = m.order_key AND p.id < m.id
            AND p.status IN ('queued', 'sending'))
    ORDER BY m.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_messages m
SET status = 'sending', attempts = m.attempts + 1, lease_until = $1 + $3::interval,
    leased_by = $5, updated_at = $1
FROM due WHERE m.id = due.id
RETURNING m.id, m.provider, m.idempotency_key, m.recipient, m.subject, m.body, m.html,
          m.meta, m.attempts
"""

# A delivery report may come before we record the send: the report wins.
_SENT = """
UPDATE outbox_messages m
SET status = COALESCE((SELECT r.status FROM delivery_reports r
                       WHERE r.provider = m.provider AND r.provider_message_id = $3
                       ORDER BY r.status = 'delivered' DESC LIMIT 1), 'sent'),
    provider_message_id = $3, sent_at = $4::timestamptz, lease_until = NULL,
    last_error = NULL, updated_at = $4::timestamptz,
    delivered_at = CASE WHEN EXISTS (SELECT 1 FROM delivery_reports r
                                     WHERE r.provider = m.provider
                                       AND r.provider_message_id = $3
                                       AND r.status = 'delivered') THEN $4::timestamptz END
WHERE m.id = $1 AND m.leased_by = $2 AND m.status = 'sending'
"""

_RETRY = """
UPDATE outbox_messages
SET status = CASE WHEN attempts - $5 >= $6 THEN 'dead' ELSE 'queued' END,
    attempts = attempts - $5, available_at = $3, last_error = $4, lease_until = NULL,
    updated_at = now()
WHERE id = $1 AND leased_by = $2 AND status = 'sending'
RETURNING status
"""

_FAILED = """
UPDATE outbox_messages SET status = 'failed', last_error = $3, lease_until = NULL,
    updated_at = now()
WHERE id = $1 AND leased_by = $2 AND status = 'sending'
"""


@dataclass(frozen=True)
class ProviderLimits:
    rate_per_second: float = 50.0
    concurrency: int = 8


#: Take the provider's next send slot (slots are 1/rate apart); returns how many
#: seconds this one is away (0 or less: now).
_TAKE_SLOT = """
INSERT INTO provider_send_slots AS s (provider, next_at)
VALUES ($1, clock_timestamp() + $2::interval)
ON CONFLICT (provider) DO UPDATE SET next_at = greatest(s.next_at, clock_timestamp()) + $2
RETURNING extract(epoch FROM (s.next_at - $2::interval - clock_timestamp()))::float8
"""


class SharedRateLimiter:
    """A provider's rate for every relay process together: send slots 1/rate
    seconds apart, handed out by one row in PostgreSQL. (A token bucket per process
    let two relays send twice the rate, and a full bucket at start a burst of a
    whole second's worth.)"""

    def __init__(self, pool: asyncpg.Pool, provider: str, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"{provider}: the rate must be above 0")
        self._pool = pool
        self._provider = provider
        self._step = timedelta(seconds=1 / rate)

    async def acquire(self) -> None:
        wait: float = await self._pool.fetchval(_TAKE_SLOT, self._provider, self._step)
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass(frozen=True)
class RelayOptions:
    workers: int = 4
    batch: int = 10
    lease_seconds: float = 60.0
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 3600.0
    poll_interval: float = 0.5
    fan_out_batch: int = 200
    circuit_threshold: int = 5
    circuit_pause: float = 1.0
    circuit_pause_max: float = 30.0


class Circuit:
    """Is a provider up, as this process sees it (times from the event loop's clock)."""

    def __init__(self, threshold: int, pause: float, pause_max: float) -> None:
        self._threshold, self._first, self._max = threshold, pause, pause_max
        self.failures = 0
        self.pause = 0.0
        self.open_until: float | None = None

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def claimable(self, now: float) -> bool:
        """Up, or down with a probe due."""
        return self.open_until is None or now >= self.open_until

    def success(self) -> bool:
        """True when this closes an open circuit (the provider is back)."""
        was_open = self.is_open
        self.failures, self.pause, self.open_until = 0, 0.0, None
        return was_open

    def failure(self, now: float) -> bool:
        """True when this opens the circuit (the provider is taken as down)."""
        if self.open_until is not None:
            if now >= self.open_until:  # the probe failed (the rest of its batch: no news)
                self.pause = min(self._max, self.pause * 2)
                self.open_until = now + self.pause
            return False
        self.failures += 1
        if self.failures < self._threshold:
            return False
        self.pause = self._first
        self.open_until = now + self.pause
        return True


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential with "equal jitter": half fixed, half random, so retries of many
    messages failed together spread out but never come back sooner than half."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return float(ceiling / 2 + (rng or random).uniform(0, ceiling / 2))


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        providers: Mapping[str, Provider],
        routers: Mapping[str, Sequence[Router]],
        options: RelayOptions | None = None,
        *,
        limits: Mapping[str, ProviderLimits] | None = None,
        name: str = "relay",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        quiet: QuietHours | None = None,
    ) -> None:
        """``quiet``: the hours in which a message whose meta says ``"quiet": true`` is
        not sent; a retry that would fall in them waits for their end."""
        self._pool = pool
        self._providers = dict(providers)
        self._routers = {topic: list(r) for topic, r in routers.items()}
        self.options = options or RelayOptions()
        limits = limits or {}
        self._limiters = {n: SharedRateLimiter(pool, n,
                                               limits.get(n, ProviderLimits()).rate_per_second)
                          for n in self._providers}
        self._caps = {n: asyncio.Semaphore(limits.get(n, ProviderLimits()).concurrency)
                      for n in self._providers}
        o = self.options
        self.circuits = {n: Circuit(o.circuit_threshold, o.circuit_pause, o.circuit_pause_max)
                         for n in self._providers}
        self.name = name
        self._clock = clock
        self._quiet = quiet
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._fan_out_loop(), name=f"{self.name}-fan-out"))
        for n in range(self.options.workers):
            self._tasks.append(asyncio.create_task(self._worker_loop(n),
                                                   name=f"{self.name}-worker-{n}"))
        log.info("relay_started", relay=self.name, workers=self.options.workers,
                 providers=sorted(self._providers), topics=sorted(self._routers))

    async def stop(self, grace: float = 10.0) -> None:
        """Loops end between two steps (a cancelled query could leave its connection
        mid-transaction, the fan-out's lock with it); cancelled only after ``grace``."""
        self._stopping.set()
        self._wake.set()
        _done, pending = await asyncio.wait(self._tasks, timeout=grace) if self._tasks \
            else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for provider in self._providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                await close()
        log.info("relay_stopped", relay=self.name)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _fan_out_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                count = await self.fan_out_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay_fan_out_failed", relay=self.name, error=str(exc))
                count = 0
            if count:
                self._wake.set()
            else:
                await self._pause(self.options.poll_interval)

    async def _worker_loop(self, n: int) -> None:
        worker = f"{self.name}/{n}"
        while not self._stopping.is_set():
            try:
                count = await self.deliver_once(worker)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay_claim_failed", worker=worker, error=str(exc))
                await self._pause(self.options.poll_interval)
                count = 0
            if not count:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
                except TimeoutError:
                    pass

    # --- fan-out ----------------------------------------------------------------------

    async def fan_out_once(self) -> int:
        """Events turned into messages (0 if none is due or another process holds the
        fan-out)."""
        if not self._routers:
            return 0
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", FAN_OUT_LOCK):
                return 0
            rows = await conn.fetch(
                """SELECT id, topic, key, payload, created_at FROM outbox
                   WHERE delivered_at IS NULL AND available_at <= $1 AND topic = ANY($2::text[])
                   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED""",
                now, list(self._routers), self.options.fan_out_batch)
            done: list[int] = []
            for row in rows:
                event = Event(row["id"], row["topic"], row["key"], row["payload"],
                              row["created_at"])
                try:
                    async with conn.transaction():  # a savepoint: one bad event alone
                        messages: list[NewMessage] = []
                        for router in self._routers[event.topic]:
                            messages.extend(await router(conn, event, now))
                        await self._insert(conn, event, messages, now)
                    done.append(event.id)
                except (ValueError, KeyError, TypeError, asyncpg.PostgresError) as exc:
                    attempts = await conn.fetchval(
                        """UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                               available_at = $3 WHERE id = $1 RETURNING attempts""",
                        event.id, str(exc)[:500], now)
                    await conn.execute("UPDATE outbox SET available_at = $2 WHERE id = $1",
                                       event.id, now + timedelta(seconds=backoff(
                                           attempts, self.options.backoff_base,
                                           self.options.backoff_max)))
                    log.error("relay_event_failed", event_key=event.key, topic=event.topic,
                              error=str(exc))
            if done:
                await conn.execute(
                    """UPDATE outbox SET delivered_at = $2, attempts = attempts + 1
                       WHERE id = ANY($1::bigint[])""", done, now)
        return len(rows)

    @staticmethod
    async def _insert(conn: asyncpg.Connection, event: Event, messages: list[NewMessage],
                      now: datetime) -> None:
        if not messages:
            return
        await conn.executemany(
            """INSERT INTO outbox_messages (event_id, idempotency_key, provider, order_key,
                   citizen_id, recipient, subject, body, html, meta, available_at, created_at,
                   updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
               ON CONFLICT (idempotency_key) DO NOTHING""",
            [(event.id, m.key, m.provider, m.order_key, m.citizen_id, m.recipient, m.subject,
              m.body, m.html, m.meta, m.available_at or now, now) for m in messages])

    # --- delivery ---------------------------------------------------------------------

    async def deliver_once(self, worker: str) -> int:
        """Claim a batch, deliver it, record each result; the number claimed."""
        at = asyncio.get_running_loop().time()
        providers = [n for n, c in self.circuits.items() if c.claimable(at)]
        if not providers:
            return 0
        now = self._clock()
        rows = await self._pool.fetch(
            _CLAIM, now, self.options.batch, timedelta(seconds=self.options.lease_seconds),
            providers, worker)
        if rows:
            await asyncio.gather(*(self._deliver(worker, row) for row in rows))
        return len(rows)

    async def _deliver(self, worker: str, row: asyncpg.Record) -> None:
        message = Outgoing(row["id"], row["provider"], row["idempotency_key"], row["recipient"],
                           row["subject"], row["body"], row["html"], row["meta"],
                           row["attempts"])
        provider = self._providers[message.provider]
        async with self._caps[message.provider]:
            await self._limiters[message.provider].acquire()
            try:
                provider_id = await provider.send(message)
            except TemporaryFailure as exc:
                self._provider_failed(message.provider, exc)
                await self._retry(worker, message, exc)
                return
            except PermanentFailure as exc:
                await self._pool.execute(_FAILED, message.id, worker, str(exc)[:500])
                log.warning("relay_message_refused", message=message.id,
                            provider=message.provider, error=str(exc))
                return
        if self.circuits[message.provider].success():
            log.info("relay_provider_back", relay=self.name, provider=message.provider)
        try:
            await self._pool.execute(_SENT, message.id, worker, provider_id, self._clock())
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # Sent but not recorded: the lease runs out and the message goes again with
            # the same idempotency key, which the provider recognises.
            log.error("relay_result_not_recorded", message=message.id,
                      provider=message.provider, provider_id=provider_id, error=str(exc))
            return
        log.debug("relay_message_sent", message=message.id, provider=message.provider,
                  provider_id=provider_id)

    def _provider_failed(self, provider: str, exc: TemporaryFailure) -> None:
        if exc.throttled:  # busy, not down: the rate limiter and Retry-After handle it
            return
        circuit = self.circuits[provider]
        if circuit.failure(asyncio.get_running_loop().time()):
            log.error("relay_provider_down", relay=self.name, provider=provider,
                      failures=circuit.failures, error=str(exc))

    async def _retry(self, worker: str, message: Outgoing, exc: TemporaryFailure) -> None:
        # While its provider is down a message has not failed: nothing is spent.
        down = self.circuits[message.provider].is_open
        spent = 0 if exc.throttled or down else 1
        delay = backoff(message.attempt, self.options.backoff_base, self.options.backoff_max)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after) if not exc.throttled else exc.retry_after
        at = self._clock() + timedelta(seconds=delay)
        if self._quiet is not None and message.meta.get("quiet"):
            at = self._quiet.next_allowed(at)
        status = await self._pool.fetchval(
            _RETRY, message.id, worker, at,
            str(exc)[:500], 1 - spent, self.options.max_attempts)
        event: dict[str, Any] = {"message": message.id, "provider": message.provider,
                                 "attempt": message.attempt, "error": str(exc)}
        if status == "dead":
            log.error("relay_message_dead", **event)
        else:
            log.info("relay_message_retry", delay=round(delay, 2), **event)
