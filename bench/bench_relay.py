"""Relay throughput: messages/s with 4 workers against the loopback SMS gateway and
SMTP server, and the floor (the same loop with a no-op provider), side by side.

    .venv/bin/python bench/bench_relay.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' loopback providers

from crm_sync.db import create_pool, ensure_database  # noqa: E402
from crm_sync.migrate import migrate  # noqa: E402
from crm_sync.outbox import NewMessage, Provider, ProviderLimits, Relay, RelayOptions  # noqa: E402
from crm_sync.outbox.model import Event  # noqa: E402
from crm_sync.outbox.providers import HttpSmsProvider, NullProvider, SmtpProvider  # noqa: E402
from hotline.devtools.embedded import astart_embedded_postgres  # noqa: E402
from tests.support.providers import LoopbackGateway, LoopbackSmtp  # noqa: E402


def router(provider: str):  # type: ignore[no-untyped-def]
    async def route(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        n = int(event.payload["n"])
        to = f"c{n}@example.test" if provider == "email" else "+380500000000"
        return [NewMessage(provider, f"{event.key}:{provider}", f"{provider}:{n % 1000}", to,
                           f"Звернення {n}", "subject", None)]
    return route


async def run(pool: asyncpg.Pool, label: str, provider: Provider, count: int) -> float:
    topic = f"bench.{label}"
    await pool.executemany("INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
                           [(topic, f"{label}:{n}", {"n": n}) for n in range(count)])
    relay = Relay(pool, {provider.name: provider}, {topic: [router(provider.name)]},
                  RelayOptions(workers=4, batch=50, poll_interval=0.02),
                  limits={provider.name: ProviderLimits(1e9, 64)}, name=label)
    start = time.perf_counter()
    relay.start()
    sent = 0
    while sent < count:
        await asyncio.sleep(0.05)
        sent = await pool.fetchval(
            "SELECT count(*) FROM outbox_messages WHERE idempotency_key LIKE $1 "
            "AND status = 'sent'", f"{label}:%")
    elapsed = time.perf_counter() - start
    await relay.stop()
    return count / elapsed


async def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hotline-bench-relay-"))
    server = await astart_embedded_postgres(folder / "data")
    try:
        pool = await create_pool(await ensure_database(server.admin_url, "bench_relay"),
                                 max_size=10)
        await migrate(pool)
        gateway, smtp = LoopbackGateway(), LoopbackSmtp()
        await gateway.start()
        await smtp.start()
        results = {
            "no-op provider (floor)": await run(pool, "noop", NullProvider("sms"), count),
            "HTTP SMS gateway": await run(pool, "sms", HttpSmsProvider(
                gateway.url, gateway.api_key), count),
            "SMTP (aiosmtpd)": await run(pool, "email", SmtpProvider(
                "127.0.0.1", smtp.port, "1551@kyiv.test", name="email"), count),
        }
        for name, rate in results.items():
            print(f"{name:28} {rate:8.0f} messages/s ({count} messages, 4 workers)")
        await gateway.stop()
        await smtp.stop()
        await pool.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    asyncio.run(main(parser.parse_args().messages))
