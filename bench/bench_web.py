"""/healthz latency under a sign-in storm, reported as figures (not tests).

    .venv/bin/python bench/bench_web.py [--storm 300]

The web app runs in a process of its own (real TCP on 127.0.0.1, embedded
PostgreSQL and Redis); another process sends 300 bad sign-ins at once and,
while they run, this one probes ``/healthz`` one request after another. Scenarios:

- no load: the probes alone (the baseline);
- limits on: the defaults; one address, so past 50 failures it gets 429s;
- limits off: every sign-in reaches scrypt, which runs in the bounded pool
  (half the cores, 16 waiting; the rest are answered 503 at once);
- scrypt on the event loop: limits off and the password check run inline, as
  before the fix (what the issue measured: /healthz waiting seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.support.web import csrf_in  # noqa: E402

SCENARIOS: list[tuple[str, dict[str, Any] | None, bool]] = [
    ("no load (baseline)", None, False),
    ("300 bad sign-ins, limits on", {}, False),
    ("300 bad sign-ins, limits off", {"login_failures_per_address": 10**6,
                                      "login_failures_per_login": 10**6}, False),
    ("300 bad sign-ins, scrypt on the loop (before)",
     {"login_failures_per_address": 10**6, "login_failures_per_login": 10**6,
      "hash_waiting": 10**6}, True),
]


def serve(pg_url: str, redis_url: str, options: dict[str, Any], inline: bool,
          ports: Any) -> None:
    """The web app in this (child) process until it is terminated."""
    import secrets

    import redis.asyncio as aioredis
    from aiohttp import web

    from crm_sync.db import create_pool
    from crm_sync.people import PasswordChecker, verify_password
    from hotline.web.app import build_web_app
    from hotline.web.common import PASSWORDS
    from hotline.web.options import WebOptions

    class InlineChecker(PasswordChecker):
        """The old way: scrypt on the event loop."""

        def _run(self, password: str, stored: str) -> asyncio.Future[bool]:
            future = asyncio.get_running_loop().create_future()
            future.set_result(verify_password(password, stored))
            return future

    from hotline.core.logs import configure_logging

    configure_logging("console", "error")

    async def main() -> None:
        pool = await create_pool(pg_url)
        redis = aioredis.Redis.from_url(redis_url)
        app = build_web_app(pool, redis, secrets.token_bytes(32), WebOptions(**options))
        if inline:
            app[PASSWORDS] = InlineChecker()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def probe(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(f"{url}/healthz") as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


def storm(url: str, size: int, started: Any, results: Any) -> None:
    """``size`` bad sign-ins at once, from this (child) process; their answers by status."""

    async def main() -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         cookie_jar=jar) as http:
            async with http.get(f"{url}/login") as page:
                token = csrf_in(await page.text())

            async def guess(n: int) -> int:
                form = {"login": f"ghost_{n}", "password": f"guess-{n}", "csrf": token}
                async with http.post(f"{url}/login", data=form, allow_redirects=False) as r:
                    await r.read()
                    return r.status

            begun = time.perf_counter()
            started.set()
            statuses = Counter(await asyncio.gather(*(guess(n) for n in range(size))))
            results.put((dict(statuses), time.perf_counter() - begun))

    asyncio.run(main())


async def run_scenario(url: str, storm_size: int | None, context: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as prober:
        for _ in range(20):  # warm the connection and the pools
            await probe(prober, url)
        if storm_size is None:
            latencies = [await probe(prober, url) for _ in range(300)]
            return {"latencies": latencies, "statuses": Counter(), "storm_seconds": 0.0}
        started, results = context.Event(), context.Queue()
        stormer = context.Process(target=storm, args=(url, storm_size, started, results))
        stormer.start()
        try:
            await asyncio.to_thread(started.wait, 60)
            latencies = []
            while results.empty():
                latencies.append(await probe(prober, url))
            statuses, seconds = results.get()
        finally:
            stormer.join(30)
        return {"latencies": latencies, "statuses": Counter(statuses), "storm_seconds": seconds}


async def forget_failures(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from hotline.web.limits import KEY_PREFIX

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=KEY_PREFIX + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def prepare_database(url: str) -> None:
    from crm_sync.db import create_pool
    from crm_sync.migrate import migrate

    pool = await create_pool(url)
    try:
        await migrate(pool)
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm", type=int, default=300)
    args = parser.parse_args()

    from hotline.core.logs import configure_logging
    from hotline.devtools.embedded import start_embedded_postgres, start_embedded_redis

    configure_logging("console", "error")
    folder = Path(tempfile.mkdtemp(prefix="hotline-bench-web-"))
    folder.chmod(0o755)  # the embedded PostgreSQL may run as another user
    postgres = start_embedded_postgres(folder / "postgres")
    redis = start_embedded_redis(folder / "redis")
    context = multiprocessing.get_context("spawn")
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        asyncio.run(prepare_database(postgres.url))
        for name, options, inline in SCENARIOS:
            asyncio.run(forget_failures(redis.url))
            ports = context.Queue()
            server = context.Process(
                target=serve, args=(postgres.url, redis.url, options or {}, inline, ports),
                daemon=True,
            )
            server.start()
            try:
                url = f"http://127.0.0.1:{ports.get(timeout=60)}"
                result = asyncio.run(
                    run_scenario(url, None if options is None else args.storm, context)
                )
            finally:
                server.terminate()
                server.join(10)
            rows.append((name, result))
            print(f"done: {name}", file=sys.stderr)
    finally:
        redis.stop()
        postgres.stop()

    print(f"\n/healthz latency while {args.storm} bad sign-ins arrive at once "
          f"({multiprocessing.cpu_count()} cores)\n")
    print(f"{'scenario':<48} {'probes':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'storm s':>8}  answers")
    for name, result in rows:
        lat = [v * 1000 for v in result["latencies"]]
        answers = ", ".join(f"{code}×{count}" for code, count in sorted(result["statuses"].items()))
        print(f"{name:<48} {len(lat):>6} {statistics.median(lat):>8.1f} "
              f"{percentile(lat, 0.99):>8.1f} {max(lat):>8.1f} "
              f"{result['storm_seconds']:>8.2f}  {answers or '—'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
