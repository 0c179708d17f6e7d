"""The reports' queries: rollups for the figures (kept exact by triggers, so a
period still open includes today's finished calls), raw rows only where a quarter
at most is read (operators' states, staffing's logged-in operators).

Every function takes a :class:`~crm_sync.stats.metrics.Period` already checked."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg

from crm_sync.stats import erlang
from crm_sync.stats.metrics import (
    CITY_TZ,
    Period,
    QueueTotals,
    bucket_label,
    buckets,
    occupancy,
    queue_figures,
    ratio,
    sum_by_bucket,
)

ALL = "(all)"
_QUEUE_COLUMNS = ", ".join(f"sum({c}) AS {c}" for c in (
    "offered", "answered", "abandoned", "short_abandoned", "timed_out", "callbacks",
    "answered_within", "abandoned_within", "wait_answered", "talk", "wrap"))


async def thresholds(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    return {r["queue"]: {"service_level": r["service_level"], "short_abandon": r["short_abandon"]}
            for r in await pool.fetch("SELECT * FROM stats_thresholds ORDER BY queue")}


async def queue_report(
    pool: asyncpg.Pool, period: Period, queues: list[str] | None = None
) -> dict[str, Any]:
    """Per queue and bucket, plus each queue's and everyone's totals for the period.

    Whole city days are read from the day rollup (~15,000 rows for ten years),
    anything finer from the half-hours (summed into hours by the database);
    Python folds days into weeks and months."""
    rows: list[Any]
    if period.granularity in ("day", "week", "month") and _whole_days(period):
        days = await pool.fetch(
            f"""SELECT queue, day, {_QUEUE_COLUMNS}, max(max_wait) AS max_wait
                  FROM stats_queue_day
                 WHERE day >= $1 AND day < $2 AND ($3::text[] IS NULL OR queue = ANY($3))
                 GROUP BY 1, 2""",
            period.since.astimezone(CITY_TZ).date(), period.until.astimezone(CITY_TZ).date(),
            queues,
        )
        rows = [{**dict(r.items()), "slot": datetime.combine(r["day"], time(), CITY_TZ)}
                for r in days]
    else:
        bucket_sql = "slot" if period.granularity == "halfhour" else "date_trunc('hour', slot)"
        rows = await pool.fetch(
            f"""SELECT queue, {bucket_sql} AS slot, {_QUEUE_COLUMNS}, max(max_wait) AS max_wait
                  FROM stats_queue_halfhour
                 WHERE slot >= $1 AND slot < $2 AND ($3::text[] IS NULL OR queue = ANY($3))
                 GROUP BY 1, 2""",
            period.since, period.until, queues,
        )
    by_bucket = sum_by_bucket(rows, period.granularity)
    names = sorted(set(queues or []) | {q for q, _ in by_bucket})
    starts = buckets(period)
    series: dict[str, list[dict[str, Any]]] = {}
    totals: dict[str, QueueTotals] = {}
    everyone = QueueTotals()
    for name in names:
        total = QueueTotals()
        points = []
        for start in starts:
            t = by_bucket.get((name, start.astimezone(UTC)), QueueTotals())
            total.add(t)
            points.append({"bucket": start.isoformat(),
                           "label": bucket_label(start, period.granularity),
                           **queue_figures(t)})
        series[name] = points
        totals[name] = total
        everyone.add(total)
    return {
        "since": period.since.isoformat(), "until": period.until.isoformat(),
        "granularity": period.granularity,
        "thresholds": await thresholds(pool),
        "queues": [{"queue": n, **queue_figures(totals[n])} for n in names],
        "total": {"queue": ALL, **queue_figures(everyone)},
        "series": series,
    }


def _whole_days(period: Period) -> bool:
    return all(at.astimezone(CITY_TZ).time() == time() for at in (period.since, period.until))


async def operator_report(pool: asyncpg.Pool, period: Period) -> dict[str, Any]:
    """Per operator: calls, talk, wrap-up, AHT, pause time by reason, time
    available, occupancy, survey scores, dispositions."""
    handled = await pool.fetch(
        """SELECT operator_interface, max(operator_name) AS operator_name,
                  sum(calls) AS calls, sum(talk) AS talk, sum(wrap) AS wrap
             FROM stats_operator_halfhour WHERE slot >= $1 AND slot < $2
            GROUP BY 1""",
        period.since, period.until,
    )
    per_call = await pool.fetch(
        """SELECT operator_interface, disposition, sum(calls) AS calls,
                  sum(survey_n) AS survey_n, sum(survey_sum) AS survey_sum
             FROM stats_operator_call_day
            WHERE day >= (($1::timestamptz) AT TIME ZONE 'Europe/Kyiv')::date
              AND day < (($2::timestamptz) AT TIME ZONE 'Europe/Kyiv')::date
            GROUP BY 1, 2""",
        period.since, period.until,
    )
    states = await state_durations(pool, period.since, period.until)
    ops: dict[str, dict[str, Any]] = {}

    def entry(interface: str) -> dict[str, Any]:
        return ops.setdefault(interface, {
            "operator": interface, "name": "", "calls": 0, "talk": 0, "wrap": 0,
            "pauses": {}, "available": 0, "survey_n": 0, "survey_sum": 0, "dispositions": {}})

    for r in handled:
        e = entry(r["operator_interface"])
        e.update(name=r["operator_name"] or "", calls=int(r["calls"]), talk=int(r["talk"]),
                 wrap=int(r["wrap"]))
    for r in per_call:
        e = entry(r["operator_interface"])
        e["survey_n"] += int(r["survey_n"])
        e["survey_sum"] += int(r["survey_sum"])
        if r["disposition"]:
            e["dispositions"][r["disposition"]] = int(r["calls"])
    for (interface, state, reason), seconds in states.items():
        e = entry(interface)
        if state == "paused":
            key = reason or "(no reason)"
            e["pauses"][key] = e["pauses"].get(key, 0) + round(seconds)
        elif state == "available":
            e["available"] += round(seconds)
    reasons = sorted({r for e in ops.values() for r in e["pauses"]})
    rows = []
    for interface in sorted(ops):
        e = ops[interface]
        handling = e["talk"] + e["wrap"]
        rows.append({
            "operator": interface, "name": e["name"], "calls": e["calls"],
            "talk": e["talk"], "wrap": e["wrap"], "aht": ratio(handling, e["calls"]),
            "pause": sum(e["pauses"].values()), "pauses": e["pauses"],
            "available": e["available"], "occupancy": occupancy(handling, e["available"]),
            "surveys": e["survey_n"], "survey_avg": ratio(e["survey_sum"], e["survey_n"], 2),
            "dispositions": e["dispositions"],
        })
    return {"since": period.since.isoformat(), "until": period.until.isoformat(),
            "pause_reasons": reasons, "operators": rows}


async def state_durations(
    pool: asyncpg.Pool, since: datetime, until: datetime
) -> dict[tuple[str, str, str | None], float]:
    """Seconds per (interface, state, reason) within [since, until).

    app_queue reports a member's state per queue; an operator in four queues has
    four rows per change. Each (interface, queue) is timed separately and the
    longest of its queues kept, so that being in four queues does not count four
    times (pauses are usually for every queue at once)."""
    rows = await pool.fetch(
        """
        WITH marks AS (
            SELECT interface, coalesce(queue, '') AS queue, at, state, reason
              FROM operator_state_changes
             WHERE at >= $1::timestamptz - interval '1 day' AND at < $2::timestamptz
        ), spans AS (
            SELECT interface, queue, state, reason,
                   greatest(at, $1::timestamptz) AS s,
                   least(coalesce(lead(at) OVER (PARTITION BY interface, queue ORDER BY at, id),
                                  least($2::timestamptz, now())), $2::timestamptz) AS e
              FROM (SELECT m.*, row_number() OVER () AS id FROM marks m) x
        )
        SELECT interface, state, reason, max(secs) AS seconds FROM (
            SELECT interface, queue, state, reason,
                   sum(extract(epoch FROM e - s)) AS secs
              FROM spans WHERE e > s GROUP BY 1, 2, 3, 4) per_queue
         GROUP BY 1, 2, 3
        """,
        since, until,
    )
    return {(r["interface"], r["state"], r["reason"]): float(r["seconds"]) for r in rows}


async def ivr_report(pool: asyncpg.Pool, period: Period) -> dict[str, Any]:
    """Per IVR node (step) and option: how many times it was reached. Nodes are
    the step names the IVR journals (:data:`IVR_ORDER`, and any a flow adds);
    the summary: notices heard / skipped, calls saved by a notice (the caller
    hung up after it, before any queue), callbacks booked."""
    rows = await pool.fetch(
        """SELECT step, option, sum(steps) AS n FROM stats_ivr_day
            WHERE day >= (($1::timestamptz) AT TIME ZONE 'Europe/Kyiv')::date
              AND day < (($2::timestamptz) AT TIME ZONE 'Europe/Kyiv')::date
            GROUP BY 1, 2 ORDER BY 1, 2""",
        period.since, period.until,
    )
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        node = nodes.setdefault(r["step"], {"step": r["step"], "reached": 0, "options": {}})
        node["reached"] += int(r["n"])
        node["options"][r["option"] or "-"] = int(r["n"])
    greeted = nodes.get("greeting", {}).get("reached", 0)
    for node in nodes.values():
        node["share"] = round(100 * node["reached"] / greeted, 1) if greeted else None
    ordered = sorted(nodes.values(), key=lambda n: (
        IVR_ORDER.index(n["step"]) if n["step"] in IVR_ORDER else len(IVR_ORDER), n["step"]))

    def option(step: str, name: str) -> int:
        return int(nodes.get(step, {}).get("options", {}).get(name, 0))

    saved = sum(n for name, n in nodes.get("hangup", {}).get("options", {}).items()
                if name.endswith("(after notice)"))
    return {"since": period.since.isoformat(), "until": period.until.isoformat(),
            "callers": greeted, "nodes": ordered,
            "summary": {"notices_heard": option("notice", "heard"),
                        "notices_skipped": option("notice", "skipped"),
                        # hung up after a notice, before any queue: the notice answered them
                        "saved_by_notice": saved,
                        "callbacks_booked": nodes.get("callback_booked", {}).get("reached", 0)}}


#: The IVR's steps in the order a caller meets them (ivr/flows/); others after.
IVR_ORDER = ["greeting", "notice", "menu", "choice", "invalid", "timeout", "hours",
             "wait_estimate", "callback_offer", "callback_booked", "callback_refused", "exit",
             "route", "hangup", "error"]


@dataclass(frozen=True)
class StaffingTarget:
    level: float = 0.8  # share answered within seconds
    seconds: int = 20
    weeks: int = 4  # the same half-hour of how many past weeks makes the forecast


async def staffing_report(
    pool: asyncpg.Pool, period: Period, queues: list[str] | None = None,
    target: StaffingTarget | None = None,
) -> dict[str, Any]:
    """Per queue and half-hour of the period (a day or so): the forecast (mean of
    the same half-hour in the past ``weeks`` weeks), Erlang C's operators needed
    for the target, and for the operators actually logged in the SL and ASA
    Erlang C expects — beside the actual offered, SL and ASA."""
    target = target or StaffingTarget()
    slot = timedelta(minutes=30)
    past = [period.since - timedelta(weeks=w) for w in range(1, target.weeks + 1)]
    rows = await pool.fetch(
        f"""SELECT queue, slot, {_QUEUE_COLUMNS}, max(max_wait) AS max_wait
              FROM stats_queue_halfhour
             WHERE ((slot >= $1 AND slot < $2) OR slot >= $3 AND slot < $2 - interval '7 days')
               AND ($4::text[] IS NULL OR queue = ANY($4))
             GROUP BY 1, 2""",
        period.since, period.until, min(past), queues,
    )
    actual: dict[tuple[str, datetime], QueueTotals] = {}
    for r in rows:
        actual[(r["queue"], r["slot"].astimezone(UTC))] = QueueTotals.of(r)
    logged = await logged_in(pool, period.since, period.until)
    names = sorted(set(queues or []) | {q for q, _ in actual})
    out: dict[str, list[dict[str, Any]]] = {}
    at = period.since.astimezone(UTC)
    slots = []
    while at < period.until:
        slots.append(at)
        at += slot
    for name in names:
        points = []
        for start in slots:
            history = [actual.get((name, start - timedelta(weeks=w)))
                       for w in range(1, target.weeks + 1)]
            seen = [h for h in history if h is not None]
            calls = sum(h.offered for h in seen) / target.weeks
            answered = sum(h.answered for h in seen)
            aht = (sum(h.talk + h.wrap for h in seen) / answered) if answered else None
            need = (erlang.agents_needed(calls, slot.total_seconds(), aht, target.level,
                                         target.seconds) if aht else None)
            agents = logged.get((name, start), 0)
            load = erlang.offered_load(calls, slot.total_seconds(), aht or 0)
            now = actual.get((name, start), QueueTotals())
            figures = queue_figures(now)
            points.append({
                "slot": start.isoformat(), "forecast_calls": round(calls, 1),
                "forecast_aht": round(aht, 1) if aht else None,
                "load": round(load, 2),
                "agents_needed": need.agents if need else None,
                "logged_in": agents,
                "expected_sl": (round(100 * erlang.service_level(agents, load, aht,
                                                                 target.seconds), 1)
                                if aht else None),
                "expected_asa": (_round(erlang.average_speed_of_answer(agents, load, aht))
                                 if aht else None),
                "offered": figures["offered"], "service_level": figures["service_level"],
                "asa": figures["asa"],
            })
        out[name] = points
    return {"since": period.since.isoformat(), "until": period.until.isoformat(),
            "target": {"level": target.level, "seconds": target.seconds,
                       "weeks": target.weeks}, "queues": out}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def logged_in(
    pool: asyncpg.Pool, since: datetime, until: datetime
) -> dict[tuple[str, datetime], int]:
    """(queue, half-hour) → operators logged in to the queue at any moment of it.
    A state change without a queue (the history generator's shifts) counts for
    every queue."""
    rows = await pool.fetch(
        """
        WITH marks AS (
            SELECT interface, queue, at, state,
                   lead(at) OVER (PARTITION BY interface, coalesce(queue, '') ORDER BY at)
                       AS next_at
              FROM operator_state_changes
             WHERE at >= $1::timestamptz - interval '1 day' AND at < $2::timestamptz
        ), slots AS (
            SELECT s FROM generate_series($1::timestamptz, $2::timestamptz
                                          - interval '30 minutes', interval '30 minutes') s
        )
        SELECT coalesce(m.queue, '*') AS queue, sl.s AS slot, count(DISTINCT m.interface) AS n
          FROM slots sl JOIN marks m
            ON m.at < sl.s + interval '30 minutes' AND coalesce(m.next_at, $2::timestamptz) > sl.s
         WHERE m.state NOT IN ('logged_out', 'unavailable')
         GROUP BY 1, 2
        """,
        since, until,
    )
    out: dict[tuple[str, datetime], int] = defaultdict(int)
    every = [r for r in rows if r["queue"] == "*"]
    for r in rows:
        if r["queue"] != "*":
            out[(r["queue"], r["slot"].astimezone(UTC))] += int(r["n"])
    if every:
        queues = {q for q, _ in out} | set(await pool.fetchval(
            "SELECT coalesce(array_agg(DISTINCT queue), '{}') FROM stats_queue_halfhour "
            "WHERE slot >= $1 AND slot < $2", since - timedelta(weeks=4), until))
        for r in every:
            for q in queues:
                out[(q, r["slot"].astimezone(UTC))] += int(r["n"])
    return dict(out)
