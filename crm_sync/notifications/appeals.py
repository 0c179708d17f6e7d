"""The outbox router of appeal events: which citizen hears of which change, by
which provider, with which text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from crm_sync.notifications.optout import OptOutLinks
from crm_sync.notifications.templates import EVENTS, NotificationsConfig
from crm_sync.outbox.model import Event, NewMessage, Router

#: Every topic the appeals service writes; the router consumes them all, most
#: mean nothing to a citizen.
TOPICS = ("appeal.created", "appeal.status_changed", "appeal.updated",
          "appeal.citizen_attached", "appeal.comment_added", "appeal.attachment_added")


def citizen_event(event: Event) -> str | None:
    """The notification an event makes, if any."""
    if event.topic == "appeal.created" and event.payload.get("to_status") == "registered":
        return "registered"
    if event.topic == "appeal.status_changed":
        to = event.payload.get("to_status")
        if to in EVENTS and to != "registered":
            return str(to)
    return None


def _values(payload: dict[str, Any], language: str, config: NotificationsConfig,
            opt_out_url: str) -> dict[str, str]:
    category = payload.get("category") or {}
    executor = payload.get("executor") or {}
    due = payload.get("due_at")
    due_text = ""
    if due:
        due_text = datetime.fromisoformat(due).astimezone(config.quiet.timezone) \
            .strftime("%d.%m.%Y")
    return {
        "number": str(payload.get("number", "")),
        "category": str(category.get(f"name_{language}") or category.get("name_uk") or ""),
        "executor": str((executor.get("name_uk") if language == "uk" else executor.get("name"))
                        or executor.get("name") or ""),
        "reason": str(payload.get("note") or payload.get("status_reason") or ""),
        "due": due_text,
        "opt_out_url": opt_out_url,
    }


def appeal_router(config: NotificationsConfig, links: OptOutLinks) -> Router:
    async def route(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        kind = citizen_event(event)
        ids = [int(i) for i in event.payload.get("citizen_ids") or []]
        if kind is None or not ids:
            return []
        rows = await conn.fetch(
            """SELECT id, phone, email, preferred_language, notify_channel FROM citizens
               WHERE id = ANY($1::bigint[]) AND notify_consent AND opted_out_at IS NULL
                 AND notify_channel <> 'none'
               ORDER BY id""", ids)
        out = []
        for row in rows:
            language = config.language(row["preferred_language"])
            url = links.url(row["id"])
            text = config.render(kind, language, _values(event.payload, language, config, url))
            meta = {"event": kind, "language": language, "appeal": event.payload.get("number"),
                    "opt_out_url": url}
            channel = row["notify_channel"]
            if channel == "sms" and row["phone"]:
                urgent = kind in config.urgent
                out.append(NewMessage(
                    "sms", f"{event.key}:sms:{row['id']}", f"sms:citizen:{row['id']}",
                    row["phone"], text.sms, citizen_id=row["id"],
                    meta={**meta, "encoding": text.sms_encoding,
                          "segments": text.sms_segments, "quiet": not urgent},
                    available_at=now if urgent else config.quiet.next_allowed(now)))
            elif channel == "email" and row["email"]:
                out.append(NewMessage(
                    "email", f"{event.key}:email:{row['id']}", f"email:citizen:{row['id']}",
                    row["email"], text.text, text.subject, text.html, citizen_id=row["id"],
                    meta=meta))
        return out

    return route
