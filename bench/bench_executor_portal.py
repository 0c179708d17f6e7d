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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncpg  # noqa: E402
from bench_appeals import appeals_store, fill, register_many, timed  # noqa: E402

from crm_sync.appeals import (  # noqa: E402
    AppealFilter,
    AppealsService,
)
from hotline.core.appeals import OPEN_STATUSES, Actor, ActorKind  # noqa: E402
from hotline.core.logs import configure_logging  # noqa: E402


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
    async with appeals_store("portal", args.database_url, max_size=6,
                             keep=args.keep) as (pool, service):
        await register_many(service, pool, args.appeals, 4)
        await fill(pool, args.store)
        if args.runs:
            await queries(service, pool, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
