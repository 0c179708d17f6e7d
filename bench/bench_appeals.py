"""Appeals at scale, reported as figures (not tests).

    .venv/bin/python bench/bench_appeals.py [--appeals 100000] [--store 1000000]

1. Register and route ``--appeals`` appeals through ``AppealsService.register``
   (``--concurrency`` at a time; each one is a full transaction: duplicate
   check, insert, history, routing decision, outbox rows) → appeals/s.
2. Fill the case store up to ``--store`` appeals (generated in SQL: two years,
   routed by the same rules, older ones mostly closed), then time the queries
   the executor portal and Open311 ``GET requests`` run, through the service:
   keyset pages on (created_at, id), newest first → p50 / p99 in ms.

A PostgreSQL of its own (embedded, in a temporary folder) unless
``--database-url`` names a server where it may create a database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from crm_sync.appeals import (  # noqa: E402
    AppealFilter,
    AppealsService,
    NewAppeal,
    load_appeals_config,
    load_routing_config,
)
from crm_sync.appeals.routing import RoutingQuery, choose  # noqa: E402
from crm_sync.appeals.store import rules_for  # noqa: E402
from crm_sync.db import create_pool, drop_database, ensure_database  # noqa: E402
from crm_sync.migrate import migrate  # noqa: E402
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy  # noqa: E402
from hotline.core.appeals import (  # noqa: E402
    OPEN_STATUSES,
    Actor,
    ActorKind,
    AppealStatus,
    Channel,
)
from hotline.core.logs import configure_logging  # noqa: E402
from hotline.devtools.embedded import astart_embedded_postgres  # noqa: E402
from hotline.settings import CONFIG_DIR  # noqa: E402

STREETS = [f"вул. Бенчмаркова {i}" for i in range(400)]
OPERATOR = Actor(ActorKind.OPERATOR, "bench")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def register_many(service: AppealsService, pool: asyncpg.Pool, count: int,
                        concurrency: int) -> None:
    categories = [r["code"] for r in await pool.fetch("SELECT code FROM categories")]
    districts = [r["code"] for r in await pool.fetch("SELECT code FROM districts")]
    rng = random.Random(1551)
    todo = iter(range(count))
    dup = 0

    async def worker() -> None:
        nonlocal dup
        for i in todo:
            result = await service.register(NewAppeal(
                channel=Channel.PHONE, category=rng.choice(categories),
                district=rng.choice(districts),
                address=f"{rng.choice(STREETS)}, {rng.randint(1, 400)}",
                text=f"bench appeal {i}",
                citizen_phone=f"+38050{rng.randint(0, 9_999_999):07d}",
            ), OPERATOR)
            dup += result.primary is not None

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    print(f"register + route: {count:,} appeals in {seconds:.1f} s = "
          f"{count / seconds:,.0f} appeals/s (concurrency {concurrency}; "
          f"{dup:,} linked as duplicates)")


async def fill(pool: asyncpg.Pool, total: int) -> None:
    """Generate appeals in SQL up to ``total``: created over two years, routed by the
    rules in the store, older ones mostly closed."""
    have = await pool.fetchval("SELECT count(*) FROM appeals")
    missing = total - have
    if missing <= 0:
        return
    async with pool.acquire() as conn:
        # the executor each (category, district) goes to, by the real rules
        await conn.execute("CREATE TEMP TABLE bench_routes (category_id int, district_id int, "
                           "executor_id int, n int)")
        pairs = await conn.fetch("SELECT c.id AS c, d.id AS d FROM categories c, districts d "
                                 "ORDER BY c.id, d.id")
        for i, pair in enumerate(pairs):
            decision = choose(await rules_for(conn, pair["c"], pair["d"]),
                              RoutingQuery(pair["c"], pair["d"]))
            await conn.execute("INSERT INTO bench_routes VALUES ($1, $2, $3, $4)",
                               pair["c"], pair["d"], decision.executor_id, i)
        start = time.perf_counter()
        batch = 100_000
        now = datetime.now(UTC)
        for offset in range(0, missing, batch):
            size = min(batch, missing - offset)
            await conn.execute(
                """INSERT INTO appeals (number, channel, category_id, district_id, executor_id,
                       address, address_norm, text, status, due_at, created_at, updated_at,
                       status_changed_at)
                   SELECT '1551-' || to_char(x.created_at, 'YYYY') || '-'
                              || (90000000 + $1 + x.g)::text,
                          'web', r.category_id, r.district_id, r.executor_id,
                          'вул. Згенерована ' || (x.g % 5000) || ', ' || (x.g % 97),
                          'вулиця згенерована ' || (x.g % 5000) || ' ' || (x.g % 97),
                          'generated',
                          CASE WHEN x.created_at > $3::timestamptz - interval '30 days'
                               THEN (ARRAY['routed', 'accepted', 'in_progress', 'in_progress',
                                           'needs_clarification', 'done', 'reopened',
                                           'registered'])[1 + x.g % 8]
                               WHEN x.g % 50 = 0 THEN 'in_progress'
                               WHEN x.g % 10 = 0 THEN 'rejected'
                               ELSE 'closed' END,
                          x.created_at + interval '5 days', x.created_at, x.created_at,
                          x.created_at
                   FROM (SELECT g, $3::timestamptz - (random() ^ 1.5) * interval '730 days'
                                       AS created_at
                         FROM generate_series(1, $2) AS g) AS x
                   JOIN bench_routes r ON r.n = (x.g * 7919) % $4""",
                offset, size, now, len(pairs))
        print(f"generated {missing:,} appeals in {time.perf_counter() - start:.0f} s")
        await conn.execute("ANALYZE appeals")


async def timed(label: str, runs: int, call: Callable[[int], Awaitable[Any]]) -> None:
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1000)
    print(f"  {label:<58} p50 {statistics.median(samples):6.2f} ms   "
          f"p99 {pct(samples, 0.99):6.2f} ms")


async def queries(service: AppealsService, pool: asyncpg.Pool, runs: int) -> None:
    total = await pool.fetchval("SELECT count(*) FROM appeals")
    rows = await pool.fetch(
        """SELECT e.id, e.code, count(*) AS n FROM appeals a JOIN executors e
           ON e.id = a.executor_id GROUP BY e.id, e.code ORDER BY n DESC""")
    busiest = rows[0]
    executors = [r["id"] for r in rows]
    print(f"queries over {total:,} appeals; busiest executor {busiest['code']} with "
          f"{busiest['n']:,}; {runs} runs each, random executors unless named")
    rng = random.Random(7)
    open_set = frozenset(OPEN_STATUSES)
    now = datetime.now(UTC)

    def executor_actor(executor_id: int) -> Actor:
        return Actor(ActorKind.EXECUTOR, "bench", executor_id=executor_id)

    busy = executor_actor(busiest["id"])

    await timed("executor list: open, first page of 50",
                runs, lambda _: service.list_appeals(
                    executor_actor(rng.choice(executors)), AppealFilter(statuses=open_set)))
    await timed(f"executor list: open, first page ({busiest['code']})",
                runs, lambda _: service.list_appeals(busy, AppealFilter(statuses=open_set)))

    async def five_pages(_: int) -> None:
        page = await service.list_appeals(busy, AppealFilter(statuses=open_set))
        for _ in range(4):
            if page.next_cursor is None:
                break
            page = await service.list_appeals(busy, AppealFilter(statuses=open_set),
                                              after=page.next_cursor)

    await timed("executor list: open, pages 1-5 by keyset (busiest, total)", max(runs // 5, 20),
                five_pages)
    await timed("executor list: all statuses, first page",
                runs, lambda _: service.list_appeals(executor_actor(rng.choice(executors))))
    await timed("executor list: status = reopened, first page",
                runs, lambda _: service.list_appeals(
                    executor_actor(rng.choice(executors)),
                    AppealFilter(statuses=frozenset({AppealStatus.REOPENED}))))
    await timed("executor list: overdue now, newest first, first page",
                runs, lambda _: service.list_appeals(
                    executor_actor(rng.choice(executors)), AppealFilter(overdue_at=now)))
    await timed("executor overdue: most overdue first, first page of 50",
                runs, lambda _: service.overdue(executor_actor(rng.choice(executors)),
                                                now=now, limit=50))

    async def overdue_pages(_: int) -> None:
        page = await service.overdue(busy, now=now, limit=50)
        for _ in range(4):
            if page.next_cursor is None:
                break
            page = await service.overdue(busy, now=now, limit=50, after=page.next_cursor)

    await timed("executor overdue: pages 1-5 by keyset (busiest, total)", max(runs // 5, 20),
                overdue_pages)
    await timed("city-wide due soon (next 24 h), first page of 50",
                runs, lambda _: service.due_soon(OPERATOR, now=now, limit=50))

    system = Actor(ActorKind.SYSTEM, "open311")
    categories = [r["id"] for r in await pool.fetch("SELECT id FROM categories")]
    # A 1 % sample is plenty at a million; a small store is read whole.
    numbers = [r["number"] for r in await pool.fetch(
        "SELECT number FROM appeals TABLESAMPLE SYSTEM (1) LIMIT 2000")] or [
        r["number"] for r in await pool.fetch("SELECT number FROM appeals LIMIT 2000")]
    await timed("Open311 GET requests: no filter (newest 50)",
                runs, lambda _: service.list_appeals(system))
    await timed("Open311 GET requests: status=open",
                runs, lambda _: service.list_appeals(system, AppealFilter(statuses=open_set)))
    await timed("Open311 GET requests: service_code + last 90 days",
                runs, lambda _: service.list_appeals(system, AppealFilter(
                    category_ids=(rng.choice(categories),),
                    created_from=now - timedelta(days=90))))
    await timed("Open311 GET requests: service_code + status=open + 90 days",
                runs, lambda _: service.list_appeals(system, AppealFilter(
                    category_ids=(rng.choice(categories),), statuses=open_set,
                    created_from=now - timedelta(days=90))))
    await timed("Open311 GET requests: a date window a year ago",
                runs, lambda _: service.list_appeals(system, AppealFilter(
                    created_from=now - timedelta(days=400), created_to=now - timedelta(days=370))))
    await timed("Open311 GET requests: 10 service_request_ids",
                runs, lambda _: service.list_appeals(system, AppealFilter(
                    numbers=tuple(rng.sample(numbers, min(10, len(numbers)))))))


@contextlib.asynccontextmanager
async def appeals_store(
    label: str, database_url: str, *, max_size: int, keep: bool
) -> AsyncIterator[tuple[asyncpg.Pool, AppealsService]]:
    """A migrated case store with the taxonomy and routing loaded, in a new
    database (of the embedded server unless ``database_url``); dropped after
    unless ``keep``."""
    server = None
    folder = Path(tempfile.mkdtemp(prefix=f"hotline-bench-{label}-"))
    if database_url:
        admin_url = database_url
    else:
        server = await astart_embedded_postgres(folder / "data")
        admin_url = server.admin_url
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(admin_url, name)
    pool = await create_pool(url, max_size=max_size, command_timeout=1200)
    try:
        await migrate(pool)
        await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
        config = load_appeals_config(CONFIG_DIR)
        await load_routing_config(pool, config.routing, config.settings)
        yield pool, AppealsService(pool, calendar=config.calendar, settings=config.settings)
    finally:
        await pool.close()
        if keep:
            print(f"kept: {url}")
        else:
            await drop_database(admin_url, name)
            if server is not None:
                await asyncio.to_thread(server.stop)
            shutil.rmtree(folder, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appeals", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", action="store_true",
                        help="leave the database (and the embedded server) for a look")
    args = parser.parse_args()
    configure_logging(level="warning")
    async with appeals_store("appeals", args.database_url, max_size=args.concurrency + 2,
                             keep=args.keep) as (pool, service):
        await register_many(service, pool, args.appeals, args.concurrency)
        await fill(pool, args.store)
        await queries(service, pool, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
