"""Helpers for the in-call panel's tests: a call row as the call store writes it,
the web app with the appeals service and the panel's configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from crm_sync.appeals import AppealsService, load_appeals_config
from crm_sync.command_bus import RedisDeskCommands
from crm_sync.desk.config import load_desk_config
from crm_sync.desk.operators import load_presence_config
from hotline.web import desk
from hotline.web.app import build_web_app
from hotline.web.call_panel import DESK_CONFIG
from hotline.web.common import APPEALS
from ivr.menu import load_catalogue
from tests.support.paths import CONFIG_DIR
from tests.support.web import SESSION_KEY


def new_phone() -> str:
    return f"+38067{uuid.uuid4().int % 10**7:07d}"


def house_number() -> int:
    """A house no other test uses on a listed street (no duplicate by accident)."""
    return 100 + uuid.uuid4().int % 100_000


async def insert_call(
    pool: asyncpg.Pool, *, caller_number: str | None = None, caller_name: str = "",
    language: str = "uk", queue: str = "housing", ivr_choice: str = "1",
) -> tuple[int, str]:
    """A call in progress, answered by an operator; returns (id, uniqueid)."""
    now = datetime.now(UTC)
    uniqueid = f"{now.timestamp():.0f}.{uuid.uuid4().int % 10**6}"
    call_id: int = await pool.fetchval(
        """INSERT INTO calls (call_key, asterisk_server, uniqueid, linkedid, channel,
               caller_number, caller_name, language, started_at, answered_at, ivr_choice,
               ivr_source, queue, operator_name, outcome)
           VALUES ($1, 'desktest', $2, $2, 'PJSIP/trunk-00000001', $3, $4, $5, $6, $6, $7,
                   'fastagi', $8, 'Оператор 101', 'in_progress')
           RETURNING id""",
        f"desktest:1:{uniqueid}", uniqueid, caller_number or new_phone(), caller_name,
        language, now, ivr_choice, queue)
    return call_id, uniqueid


def desk_app(pool: asyncpg.Pool, redis: aioredis.Redis) -> web.Application:
    app = build_web_app(pool, redis, SESSION_KEY)
    config = load_appeals_config(CONFIG_DIR)
    app[APPEALS] = AppealsService(pool, calendar=config.calendar, settings=config.settings)
    app[DESK_CONFIG] = load_desk_config(CONFIG_DIR)
    # the presence side of the desk (hotline.web.desk): an operator lands on /desk
    catalogue = load_catalogue(CONFIG_DIR)
    desk.configure(app, desk.DeskSettings(load_presence_config(CONFIG_DIR),
                                          {q.name: q.label_uk for q in catalogue.queues.values()}),
                   RedisDeskCommands(redis, timeout=3))
    return app
