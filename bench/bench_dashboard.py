"""The leadership dashboard at scale, reported as figures (not tests).

    .venv/bin/python bench/bench_dashboard.py [--years 10] [--per-year 1000000]

1. Generate ``--years`` years of appeals (``--per-year`` a year at the end) with
   ``crm_sync.leadership.history.generate_appeals`` (server side, one
   ``INSERT … SELECT generate_series`` a month) and refresh the roll-ups → time,
   appeals/s.
2. Time each dashboard tile (``crm_sync.leadership.queries``) for several
   periods (the whole ten years, the current year with today, a month) →
   best / median of ``--runs`` in ms, and the refresh a new day costs.

A PostgreSQL of its own (embedded, in a temporary folder) unless
``--database-url`` names a server where it may create a database.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from crm_sync.db import create_pool, drop_database, ensure_database  # noqa: E402
from crm_sync.leadership import queries  # noqa: E402
from crm_sync.leadership.config import load_leadership_config  # noqa: E402
from crm_sync.leadership.history import generate_appeals  # noqa: E402
from crm_sync.leadership.periods import Period, city_today  # noqa: E402
from crm_sync.leadership.rollups import refresh_rollups, watermarks  # noqa: E402
from crm_sync.migrate import migrate  # noqa: E402
from hotline.core.logs import configure_logging  # noqa: E402
from hotline.devtools.embedded import astart_embedded_postgres  # noqa: E402
from hotline.settings import CONFIG_DIR  # noqa: E402


async def timed(label: str, runs: int, call: Callable[[], Awaitable[Any]]) -> None:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    print(f"  {label:<44} best {min(times):8.1f} ms   median {statistics.median(times):8.1f} ms",
          flush=True)


async def tiles(pool: asyncpg.Pool, runs: int) -> None:
    config = load_leadership_config(CONFIG_DIR)
    today = city_today(datetime.now(UTC))
    periods = {
        "ten years": Period(date(today.year - 10, today.month, 1), today),
        "this year": Period(date(today.year, 1, 1), today),
        "last month": Period(today - timedelta(days=30), today),
    }
    marks = await watermarks(pool)
    for name, period in periods.items():
        print(f"{name}: {period.first} .. {period.last}")
        await timed("call dynamics (month, day, hour)", runs,
                    lambda p=period: queries.call_dynamics(pool, p, marks))
        await timed("appeals by channel", runs,
                    lambda p=period: queries.appeals_by_channel(pool, p, marks, None))
        await timed("top-10 spheres", runs,
                    lambda p=period: queries.top_spheres(pool, p, marks, None))
        await timed("top-10 issues × district", runs,
                    lambda p=period: queries.issue_matrix(pool, p, marks, None))
        await timed("overdue by executor", runs,
                    lambda p=period: queries.overdue_by_executor(pool, p, None))
    for year in (today.year - 1, today.year):
        print(f"ratings {year}")
        await timed("district administrations' rating", runs,
                    lambda y=year: queries.district_ratings(pool, config, y, marks))
        await timed("housing offices' rating", runs,
                    lambda y=year: queries.housing_ratings(pool, config, y, marks))
    # what the first refresh of a new day costs (the periodic task pays it)
    await pool.execute("UPDATE leadership_watermarks SET upto = upto - interval '1 day'")
    t0 = time.perf_counter()
    await refresh_rollups(pool)
    print(f"  {'refresh of a new day':<44} {(time.perf_counter() - t0) * 1000:8.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--per-year", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--tiles-only", metavar="URL", default="",
                        help="time the tiles of a database kept by an earlier --keep run")
    parser.add_argument("--keep", action="store_true",
                        help="leave the database (and the embedded server) for a look")
    args = parser.parse_args()
    configure_logging(level="warning")
    if args.tiles_only:
        pool = await create_pool(args.tiles_only, max_size=4, command_timeout=7200)
        try:
            print(f"appeals: {await pool.fetchval('SELECT count(*) FROM appeals'):,}")
            await tiles(pool, args.runs)
        finally:
            await pool.close()
        return
    server = None
    folder = Path(tempfile.mkdtemp(prefix="hotline-bench-dashboard-"))
    if args.database_url:
        admin_url = args.database_url
    else:
        server = await astart_embedded_postgres(folder / "data")
        admin_url = server.admin_url
    name = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(admin_url, name)
    pool = await create_pool(url, max_size=4, command_timeout=7200)
    try:
        await migrate(pool)
        last = [0.0]
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= 10 or done == total:
                last[0] = now
                rate = done / max(now - t0, 1e-9)
                print(f"  generated {done:,}/{total:,} ({rate:,.0f} appeals/s)", flush=True)

        print(f"generating {args.years} years × up to {args.per_year:,} appeals", flush=True)
        written = await generate_appeals(pool, years=args.years, progress=progress,
                                         per_year=args.per_year, config_dir=CONFIG_DIR)
        took = time.perf_counter() - t0
        print(f"generated {written:,} appeals and the roll-ups in {took:.1f} s "
              f"({written / took:,.0f} appeals/s)", flush=True)
        await pool.execute("ANALYZE")
        await tiles(pool, args.runs)
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
