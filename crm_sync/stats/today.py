"""Today's figures per call for the wallboard (a live query over one day)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from crm_sync.stats.metrics import service_levels


async def figures_by_queue(
    pool: asyncpg.Pool, since: datetime, sl_seconds: int
) -> list[dict[str, Any]]:
    """Per queue since ``since``: offered, answered, abandoned, IVR only, SL, SL2,
    ASA and average talk (calls that never reached a queue are ``(ivr)``)."""
    rows = await pool.fetch(
        """
        SELECT coalesce(queue, '(ivr)') AS queue,
               count(*) AS offered,
               count(*) FILTER (WHERE outcome = 'answered') AS answered,
               count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
               count(*) FILTER (WHERE outcome = 'ivr_only') AS ivr_only,
               count(*) FILTER (WHERE outcome = 'answered' AND wait_seconds <= $2)
                   AS answered_within_sl,
               count(*) FILTER (WHERE outcome = 'abandoned' AND wait_seconds <= $2)
                   AS abandoned_within_sl,
               round(avg(wait_seconds) FILTER (WHERE outcome = 'answered'), 1) AS asa,
               round(avg(talk_seconds) FILTER (WHERE outcome = 'answered'), 1) AS avg_talk
          FROM calls
         WHERE started_at >= $1 AND outcome <> 'in_progress'
         GROUP BY 1 ORDER BY 1
        """,
        since,
        sl_seconds,
    )
    queues = []
    for row in rows:
        item = dict(row.items())
        item["service_level"], item["service_level2"] = service_levels(
            item["answered"], item["answered_within_sl"],
            item["abandoned"], item.pop("abandoned_within_sl"),
        )
        queues.append(item)
    return queues
