"""The executor portal's searches at scale, reported as figures (not tests).

    .venv/bin/python bench/bench_executor_portal.py [--store 1000000] [--runs 200]

Fills a case store as ``bench_appeals.py`` does (generated in SQL, routed by the real
rules), then times what the portal's list runs with its text search (the trigram
index of migration 0006) and filters, first pages and keyset pages, → p50 / p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncpg  # noqa: E402
from bench_appeals import fill, register_many, timed  # noqa: E402

from crm_sync.appeals import (  # noqa: E402
    AppealFilter,
    AppealsService,
    load_appeals_config,
    load_routing_config,
)
from crm_sync.db import create_pool, drop_database, ensure_database  # noqa: E402
from crm_sync.migrate import migrate  # noqa: E402
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy  # noqa: E402
from hotline.core.appeals import OPEN_STATUSES, Actor, ActorKind  # noqa: E402
from hotline.core.logs import configure_logging  # noqa: E402
from hotline.devtools.embedded import astart_embedded_postgres  # noqa: E402
from hotline.settings import CONFIG_DIR  # noqa: E402


async def queries(service: AppealsService, pool: asyncpg.Pool, runs: int) -> None:
    rows = await pool.fetch(
        """SELECT e.id, e.code, count(*) AS n FROM appeals a JOIN executors e
           ON e.id = a.executor_id GROUP BY e.id, e.code ORDER BY n DESC""")
    total = sum(r["n"] for r in rows)
    busiest = rows[0]
    executors = [r["id"] for r in rows]
    print(f"portal searches over {total:,} appeals; busiest executor {busiest['code']} with "
          f"{busiest['n']:,}; {runs} runs each")
    rng = random.Random(7)

    def actor(executor_id: int) -> Actor:
        return Actor(ActorKind.EXECUTOR, "bench", executor_id=executor_id)

    busy = actor(busiest["id"])
    open_set = OPEN_STATUSES
    await timed("search: a street and house (selective), open, any executor",
                runs, lambda _: service.list_appeals(actor(rng.choice(executors)), AppealFilter(
                    statuses=open_set, search=f"Згенерована {rng.randrange(5000)}, "
                                              f"{rng.randrange(97)}")))
    await timed("search: a street (~200 appeals city-wide), all statuses, busiest",
                runs, lambda _: service.list_appeals(busy, AppealFilter(
                    search=f"Згенерована {rng.randrange(1000, 5000)},")))
    await timed("search: a word in every appeal, open, busiest (the index cannot help)",
                runs, lambda _: service.list_appeals(busy, AppealFilter(
                    statuses=open_set, search="generated")))
    await timed("search: no match at all, busiest",
                runs, lambda _: service.list_appeals(busy, AppealFilter(
                    search=f"nothing{rng.randrange(10**6)}")))

    async def five_pages(_: int) -> None:
        flt = AppealFilter(search="Згенерована 1")
        page = await service.list_appeals(busy, flt, limit=25)
        for _ in range(4):
            if page.next_cursor is None:
                break
            page = await service.list_appeals(busy, flt, after=page.next_cursor, limit=25)

    await timed("search: 'Згенерована 1' (a common prefix), pages 1-5 of 25 (total)",
                max(runs // 5, 20), five_pages)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appeals", type=int, default=1000)
    parser.add_argument("--store", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", action="store_true",
                        help="leave the database (and the embedded server) for a look")
    args = parser.parse_args()
    configure_logging(level="warning")
    server = None
    folder = Path(tempfile.mkdtemp(prefix="hotline-bench-portal-"))
    if args.database_url:
        admin_url = args.database_url
    else:
        server = await astart_embedded_postgres(folder / "data")
        admin_url = server.admin_url
    name = f"bench_portal_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(admin_url, name)
    pool = await create_pool(url, max_size=6, command_timeout=1200)
    try:
        await migrate(pool)
        await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
        config = load_appeals_config(CONFIG_DIR)
        await load_routing_config(pool, config.routing, config.settings)
        service = AppealsService(pool, calendar=config.calendar, settings=config.settings)
        await register_many(service, pool, args.appeals, 4)
        await fill(pool, args.store)
        if args.runs:
            await queries(service, pool, args.runs)
    finally:
        await pool.close()
        if args.keep:
            print(f"kept: {url}")
        else:
            await drop_database(admin_url, name)
            if server is not None:
                await asyncio.to_thread(server.stop)
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
