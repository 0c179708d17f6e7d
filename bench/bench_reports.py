"""Reports over years of calls, reported as figures (not tests).

    .venv/bin/python bench/bench_reports.py [--years 10] [--calls-per-day 5480]

1. Generate ``--years`` of a Kyiv-sized hotline's calls (``hotline
   generate-history``'s generator: calls, queue attempts, operators' shifts,
   the rollups) → time and calls/s.
2. Time every report over the data, through the same functions the web pages
   call: queue reports over ten years by month / week / day, a year by day, a
   day by half-hour, a month by hour; operators over a month and a year; the
   IVR path over ten years; staffing for a day → p50 / max in ms.

A PostgreSQL of its own (embedded, in a folder under /var/tmp unless
``--folder``) unless ``--database-url`` names a server where it may create a
database. ``--keep`` leaves it for a look.
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
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm_sync.db import create_pool, ensure_database  # noqa: E402
from crm_sync.migrate import migrate  # noqa: E402
from crm_sync.stats import queries  # noqa: E402
from crm_sync.stats.history import generate_calls  # noqa: E402
from crm_sync.stats.metrics import MAX_DETAIL_DAYS, parse_period  # noqa: E402
from hotline.devtools.embedded import astart_embedded_postgres  # noqa: E402


async def timed(label: str, runs: int, call: Callable[[], Awaitable[Any]]) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    print(f"{label:<48} p50 {statistics.median(times):8.1f} ms   max {max(times):8.1f} ms",
          flush=True)


async def extend_rollups(pool: Any, today: date) -> None:
    """Copy the generated span's rollups and shifts forward until today."""
    lo, hi = await pool.fetchrow("SELECT min(slot), max(slot) FROM stats_queue_halfhour")
    span = hi - lo + timedelta(minutes=30)
    end = datetime.combine(today, datetime.min.time(), UTC)
    shift = span
    while hi < end:
        for table, column in (("stats_queue_halfhour", "slot"),
                              ("stats_operator_halfhour", "slot"),
                              ("operator_state_changes", "at")):
            columns = [r["attname"] for r in await pool.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                "AND attnum > 0 AND NOT attisdropped AND attname <> 'id'", table)]
            moved = ", ".join(f"{c} + $1" if c == column else c for c in columns)
            await pool.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {moved} FROM {table} "
                f"WHERE {column} >= $2 AND {column} < $3 AND {column} + $1 < $4 "
                "ON CONFLICT DO NOTHING", shift, lo, lo + span, end)
        days = span.days
        for table in ("stats_ivr_day", "stats_operator_call_day"):
            columns = [r["attname"] for r in await pool.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                "AND attnum > 0 AND NOT attisdropped", table)]
            moved = ", ".join(f"day + {shift.days}" if c == "day" else c for c in columns)
            await pool.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {moved} FROM {table} "
                f"WHERE day >= $1 AND day < $2 AND day + {shift.days} < $3 "
                "ON CONFLICT DO NOTHING", lo.date(), lo.date() + timedelta(days=days), today)
        hi = await pool.fetchval("SELECT max(slot) FROM stats_queue_halfhour")
        shift += span
    await pool.execute("VACUUM ANALYZE")
    rows = await pool.fetchval("SELECT count(*) FROM stats_queue_halfhour")
    print(f"rollups extended to {hi:%Y-%m-%d}: {rows:,} queue half-hours", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=10.0)
    parser.add_argument("--calls-per-day", type=int, default=5480)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--folder", default="")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", default="",
                        help="time the reports only, over a database already generated: "
                             "its URL, or its name on the embedded server in --folder")
    parser.add_argument("--extend-rollups", action="store_true",
                        help="with --reuse, when the generation was cut short: copy the "
                             "rollups (and shifts) of the years generated forward to today, "
                             "so the reports read ten years of rollups (they never read calls)")
    args = parser.parse_args()

    server = None
    folder = Path(args.folder or tempfile.mkdtemp(prefix="hotline-bench-reports-",
                                                  dir="/var/tmp"))
    if args.reuse and "://" in args.reuse:
        url = args.reuse
    elif args.reuse:
        server = await astart_embedded_postgres(folder / "data")
        url = server.url_for(args.reuse)
    else:
        if args.database_url:
            admin_url = args.database_url
        else:
            server = await astart_embedded_postgres(folder / "data")
            admin_url = server.admin_url
        url = await ensure_database(admin_url, f"bench_reports_{uuid.uuid4().hex[:8]}")
    pool = await create_pool(url, max_size=4, command_timeout=7200)
    try:
        today = date.today()
        if not args.reuse:
            await migrate(pool)
            started = time.perf_counter()
            last = [started]

            def progress(done: int, total: int, calls: int) -> None:
                now = time.perf_counter()
                if now - last[0] > 30 or done == total:
                    last[0] = now
                    print(f"  generated {done}/{total} months, {calls:,} calls, "
                          f"{now - started:7.0f} s", flush=True)

            calls = await generate_calls(pool, years=args.years, progress=progress,
                                         calls_per_day=args.calls_per_day)
            took = time.perf_counter() - started
            print(f"generation: {calls:,} calls in {took:.0f} s ({calls / took:,.0f} calls/s)",
                  flush=True)
            await pool.execute("VACUUM ANALYZE")
        size = await pool.fetchval(
            "SELECT pg_size_pretty(pg_database_size(current_database()))")
        stored = await pool.fetchval("SELECT count(*) FROM calls")
        print(f"calls stored: {stored:,}; database {size}", flush=True)
        if args.extend_rollups:
            await extend_rollups(pool, today)
        ten = str(today - timedelta(days=int(args.years * 365.25)))
        year = str(today - timedelta(days=365))
        month = str(today - timedelta(days=30))
        yesterday = str(today - timedelta(days=1))
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        for gran in ("month", "week", "day"):
            period = parse_period(ten, str(today), gran, today=today)
            cases.append((f"queues, {args.years:g} years by {gran}",
                          partial(queries.queue_report, pool, period)))
        for label, since, gran in (("queues, a year by day", year, "day"),
                                   ("queues, a month by hour", month, "hour"),
                                   ("queues, a day by half-hour", yesterday, "halfhour")):
            period = parse_period(since, str(today), gran, today=today)
            cases.append((label, partial(queries.queue_report, pool, period)))
        period = parse_period(ten, str(today), "month", today=today)
        cases.append(("queues, one queue, 10 years by month",
                      partial(queries.queue_report, pool, period, ["housing"])))
        quarter = str(today - timedelta(days=91))
        for label, since in (("operators, a month", month), ("operators, a quarter", quarter)):
            period = parse_period(since, str(today), "day", today=today,
                                  max_days=MAX_DETAIL_DAYS)
            cases.append((label, partial(queries.operator_report, pool, period)))
        period = parse_period(ten, str(today), "day", today=today)
        cases.append(("IVR path, 10 years", partial(queries.ivr_report, pool, period)))
        period = parse_period(yesterday, yesterday, "halfhour", today=today, max_days=7)
        cases.append(("staffing, a day (4 queues x 48 half-hours)",
                      partial(queries.staffing_report, pool, period)))
        for label, call in cases:
            await timed(label, args.runs, call)
    finally:
        await pool.close()
        if args.keep:
            print(f"kept: {url}")
        elif server is not None:
            await asyncio.to_thread(server.stop)
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
