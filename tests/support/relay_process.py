"""A relay in a process of its own, for the racing test:
``python -m tests.support.relay_process DSN GATEWAY_URL API_KEY TOPIC NAME``.
It runs until its standard input closes, then stops cleanly."""

from __future__ import annotations

import asyncio
import sys

from crm_sync.db import create_pool
from crm_sync.outbox import ProviderLimits, Relay, RelayOptions
from crm_sync.outbox.providers import HttpSmsProvider
from hotline.core.logs import configure_logging
from tests.support.relay import ping_router


async def main(dsn: str, url: str, key: str, topic: str, name: str) -> None:
    configure_logging(level="warning")  # to standard error, which the test does not read
    pool = await create_pool(dsn, max_size=8)
    relay = Relay(pool, {"sms": HttpSmsProvider(url, key)}, {topic: [ping_router(500)]},
                  RelayOptions(workers=4, batch=50, poll_interval=0.05),
                  limits={"sms": ProviderLimits(10_000, 16)}, name=name)
    relay.start()
    print("started", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # EOF: the test is done with us
    await relay.stop()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
