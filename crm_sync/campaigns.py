"""District campaigns (issue 10): mass informing through the outbox.

Citizens subscribe to a topic (``config/campaigns.toml``) in a district; a
subscription counts once confirmed through the signed link of its confirmation
SMS, and never for a citizen who opted out (the link in every message, or a STOP
reply: :mod:`crm_sync.notifications.optout`).

A campaign (topic, districts, texts uk/en, when) is written by a supervisor or an
admin and approved by *another* one. Approval snapshots the audience (one message
per citizen, however many of the districts they follow) into outbox events of
``batch_size`` subscribers each, due at the campaign's time; the relay fans each
event out (:func:`campaign_routers`) with the idempotency key
``campaign:<id>:citizen:<id>``, so a re-run or a restarted relay inserts nothing
twice, and delivers at the provider's rate. Cancelling locks the campaign row,
which the fan-out reads ``FOR SHARE``: batches not fanned out yet produce nothing,
queued messages are cancelled, what was sent stays sent.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

from crm_sync.notifications.optout import OptOutLinks
from crm_sync.notifications.text import QuietHours
from crm_sync.outbox.model import Event, NewMessage, Router
from hotline.core.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound
from hotline.core.logs import get_logger
from hotline.core.privacy import mask_phone

FILE_NAME = "campaigns.toml"
BATCH_TOPIC = "campaign.batch"
CONFIRM_TOPIC = "campaign.confirm"
CONFIRM_PATH = "/subscriptions/confirm"
LANGUAGES = ("uk", "en")
MAX_TEXT = 1000
log = get_logger("crm_sync.campaigns")


class CampaignsConfigError(ConfigError):
    error_id = "campaigns_config_invalid"


class CampaignNotFound(NotFound):
    error_id = "campaign_not_found"


class SecondApproverRequired(Forbidden):
    """The author of a campaign cannot approve it."""

    error_id = "campaign_second_approver_required"


class CampaignStateConflict(Conflict):
    error_id = "campaign_state_conflict"


@dataclass(frozen=True)
class Topic:
    code: str
    uk: str
    en: str
    urgent: bool


@dataclass(frozen=True)
class CampaignsConfig:
    topics: dict[str, Topic]
    batch_size: int = 500
    confirm_uk: str = "1551: {topic} ({district}): {url}"
    confirm_en: str = "1551: {topic} ({district}): {url}"


def parse_config(data: dict[str, Any]) -> CampaignsConfig:
    settings = data.get("settings", {})
    topics: dict[str, Topic] = {}
    for code, t in data.get("topics", {}).items():
        if not isinstance(t, dict) or not all(isinstance(t.get(k), str) for k in LANGUAGES):
            raise CampaignsConfigError(f"{FILE_NAME}: topics.{code}: uk and en names required")
        topics[code] = Topic(code, t["uk"], t["en"], bool(t.get("urgent", False)))
    if not topics:
        raise CampaignsConfigError(f"{FILE_NAME}: no topics")
    batch = settings.get("batch_size", 500)
    if not isinstance(batch, int) or not 1 <= batch <= 10_000:
        raise CampaignsConfigError(f"{FILE_NAME}: settings.batch_size: 1 to 10000")
    defaults = CampaignsConfig(topics)
    return CampaignsConfig(topics, batch, str(settings.get("confirm_uk", defaults.confirm_uk)),
                           str(settings.get("confirm_en", defaults.confirm_en)))


def load_campaigns_config(config_dir: Path) -> CampaignsConfig:
    """Blocking (reads a file)."""
    path = config_dir / FILE_NAME
    try:
        return parse_config(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CampaignsConfigError(f"{path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignsConfigError(f"{path}: {exc}") from None


class ConfirmLinks:
    """The signed link of a confirmation SMS (a key of its own: no opt-out token
    confirms anything, and no confirmation token opts anyone out)."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._key = hmac.new(secret, b"subscription-confirm", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")

    def token(self, subscription_id: int) -> str:
        return hmac.new(self._key, str(subscription_id).encode(),
                        hashlib.sha256).hexdigest()[:32]

    def url(self, subscription_id: int) -> str:
        query = urlencode({"s": subscription_id, "t": self.token(subscription_id)})
        return f"{self.public_url}{CONFIRM_PATH}?{query}"

    def valid(self, subscription_id: int, token: str) -> bool:
        return hmac.compare_digest(self.token(subscription_id), token)


_AUDIENCE = """
SELECT DISTINCT ON (s.citizen_id) s.id
FROM subscriptions s JOIN citizens c ON c.id = s.citizen_id
WHERE s.topic = $1 AND s.district_id = ANY($2::integer[])
  AND s.confirmed_at IS NOT NULL AND s.cancelled_at IS NULL AND c.opted_out_at IS NULL
ORDER BY s.citizen_id, s.id
"""


def _text(value: Any, name: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInput(f"{name}: text of 1 to {limit} characters", details={"field": name})
    return value.strip()


class Campaigns:
    def __init__(self, pool: asyncpg.Pool, config: CampaignsConfig) -> None:
        self._pool = pool
        self.config = config

    def _topic(self, topic: Any) -> str:
        if not isinstance(topic, str) or topic not in self.config.topics:
            raise InvalidInput(f"topic: one of {', '.join(sorted(self.config.topics))}",
                               details={"field": "topic"})
        return topic

    async def _districts(self, conn: asyncpg.Connection, codes: Any) -> list[int]:
        if (not isinstance(codes, list) or not codes or len(codes) > 100
                or not all(isinstance(c, str) for c in codes)):
            raise InvalidInput("districts: a list of district codes",
                               details={"field": "districts"})
        rows = await conn.fetch("SELECT id, code FROM districts WHERE code = ANY($1::text[])",
                                codes)
        unknown = sorted(set(codes) - {r["code"] for r in rows})
        if unknown:
            raise InvalidInput(f"districts: unknown {', '.join(unknown)}",
                               details={"field": "districts"})
        return sorted(r["id"] for r in rows)

    # --- subscriptions ------------------------------------------------------------------

    async def subscribe(self, phone: str, district: str, topic: str, language: str,
                        now: datetime) -> dict[str, Any]:
        """A new (or renewed) subscription and its confirmation SMS; one already
        confirmed stays as it is and nothing is sent."""
        topic = self._topic(topic)
        if language not in LANGUAGES:
            raise InvalidInput("language: uk or en", details={"field": "language"})
        if not phone.startswith("+") or not phone[1:].isdigit() or not 8 <= len(phone) <= 16:
            raise InvalidInput("phone: +<digits>", details={"field": "phone"})
        async with self._pool.acquire() as conn, conn.transaction():
            (district_id,) = await self._districts(conn, [district])
            citizen_id = await conn.fetchval(
                """INSERT INTO citizens (phone, preferred_language) VALUES ($1, $2)
                   ON CONFLICT (phone) DO UPDATE SET updated_at = citizens.updated_at
                   RETURNING id""", phone, language)
            row = await conn.fetchrow(
                """INSERT INTO subscriptions (citizen_id, district_id, topic, language,
                       created_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (citizen_id, district_id, topic) DO UPDATE
                   SET language = EXCLUDED.language, cancelled_at = NULL,
                       created_at = CASE WHEN subscriptions.confirmed_at IS NULL
                                         THEN EXCLUDED.created_at
                                         ELSE subscriptions.created_at END
                   RETURNING id, confirmed_at""",
                citizen_id, district_id, topic, language, now)
            if row["confirmed_at"] is None:
                await conn.execute(
                    "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
                    CONFIRM_TOPIC, f"subscription:{row['id']}:confirm:{now.timestamp()}",
                    {"subscription": row["id"]})
        log.info("subscription_requested", subscription=row["id"], phone=mask_phone(phone),
                 topic=topic, district=district)
        return {"id": row["id"], "confirmed": row["confirmed_at"] is not None}

    async def confirm(self, subscription_id: int, now: datetime) -> bool:
        """True if it exists (confirming twice changes nothing)."""
        found = await self._pool.fetchval(
            """UPDATE subscriptions SET confirmed_at = COALESCE(confirmed_at, $2)
               WHERE id = $1 RETURNING true""", subscription_id, now)
        log.info("subscription_confirmed", subscription=subscription_id, found=bool(found))
        return bool(found)

    # --- campaigns ----------------------------------------------------------------------

    async def create(self, author: str, body: dict[str, Any]) -> int:
        topic = self._topic(body.get("topic"))
        text_uk, text_en = _text(body.get("text_uk"), "text_uk"), _text(body.get("text_en"),
                                                                         "text_en")
        raw = body.get("send_at")
        try:
            send_at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            send_at = None
        if send_at is None or send_at.tzinfo is None:
            raise InvalidInput("send_at: an ISO 8601 time with its offset",
                               details={"field": "send_at"})
        async with self._pool.acquire() as conn:
            districts = await self._districts(conn, body.get("districts"))
            campaign_id: int = await conn.fetchval(
                """INSERT INTO campaigns (topic, district_ids, text_uk, text_en, send_at,
                       created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                topic, districts, text_uk, text_en, send_at, author)
        log.info("campaign_created", campaign=campaign_id, by=author, topic=topic)
        return campaign_id

    async def list_campaigns(self) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, topic, status, send_at, created_by, approved_by, recipients
               FROM campaigns ORDER BY id DESC LIMIT 200""")
        return [_jsonable(dict(r)) for r in rows]

    async def get(self, campaign_id: int) -> dict[str, Any]:
        """The campaign, its audience now (the preview) and its progress."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT c.*, (SELECT array_agg(d.code ORDER BY d.code) FROM districts d
                                WHERE d.id = ANY(c.district_ids)) AS districts
                   FROM campaigns c WHERE id = $1""", campaign_id)
            if row is None:
                raise CampaignNotFound(f"no campaign {campaign_id}")
            audience = len(await conn.fetch(_AUDIENCE, row["topic"], row["district_ids"]))
            counts = await conn.fetch(
                """SELECT m.status, count(*) AS n FROM campaign_batches b
                   JOIN outbox_messages m ON m.event_id = b.event_id
                   WHERE b.campaign_id = $1 GROUP BY m.status""", campaign_id)
            waiting = await conn.fetchval(
                """SELECT coalesce(sum(b.size), 0) FROM campaign_batches b
                   JOIN outbox o ON o.id = b.event_id
                   WHERE b.campaign_id = $1 AND o.delivered_at IS NULL""", campaign_id)
        out = _jsonable({k: v for k, v in dict(row).items() if k != "district_ids"})
        by = {r["status"]: r["n"] for r in counts}
        out["audience"] = audience
        out["progress"] = {"not_fanned_out": int(waiting),
                           "queued": by.get("queued", 0) + by.get("sending", 0),
                           "sent": by.get("sent", 0) + by.get("delivered", 0),
                           "delivered": by.get("delivered", 0),
                           "failed": by.get("failed", 0) + by.get("dead", 0),
                           "cancelled": by.get("cancelled", 0)}
        return out

    async def approve(self, campaign_id: int, approver: str, now: datetime) -> int:
        """The audience is fixed here and cut into batches; the number of recipients."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM campaigns WHERE id = $1 FOR UPDATE",
                                      campaign_id)
            if row is None:
                raise CampaignNotFound(f"no campaign {campaign_id}")
            if row["created_by"] == approver:
                log.warning("campaign_self_approval_refused", campaign=campaign_id, by=approver)
                raise SecondApproverRequired("a campaign is approved by someone other than "
                                             "its author")
            if row["status"] != "draft":
                raise CampaignStateConflict(f"campaign {campaign_id} is {row['status']}")
            ids = [r["id"] for r in await conn.fetch(_AUDIENCE, row["topic"],
                                                      row["district_ids"])]
            ids.sort()
            size = self.config.batch_size
            for n, start in enumerate(range(0, len(ids), size)):
                chunk = ids[start:start + size]
                event_id = await conn.fetchval(
                    """INSERT INTO outbox (topic, key, payload, available_at)
                       VALUES ($1, $2, $3, $4) RETURNING id""",
                    BATCH_TOPIC, f"campaign:{campaign_id}:batch:{n}",
                    {"campaign": campaign_id, "subscriptions": chunk},
                    max(row["send_at"], now))
                await conn.execute(
                    "INSERT INTO campaign_batches (campaign_id, event_id, size) "
                    "VALUES ($1, $2, $3)", campaign_id, event_id, len(chunk))
            await conn.execute(
                """UPDATE campaigns SET status = 'approved', approved_by = $2, approved_at = $3,
                       recipients = $4 WHERE id = $1""", campaign_id, approver, now, len(ids))
        log.info("campaign_approved", campaign=campaign_id, by=approver, recipients=len(ids))
        return len(ids)

    async def cancel(self, campaign_id: int, who: str, now: datetime) -> int:
        """Queued messages cancelled (their number); sent ones are not touched."""
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval(
                "SELECT status FROM campaigns WHERE id = $1 FOR UPDATE", campaign_id)
            if status is None:
                raise CampaignNotFound(f"no campaign {campaign_id}")
            if status == "cancelled":
                raise CampaignStateConflict(f"campaign {campaign_id} is cancelled")
            await conn.execute(
                """UPDATE campaigns SET status = 'cancelled', cancelled_by = $2,
                       cancelled_at = $3 WHERE id = $1""", campaign_id, who, now)
            # 'sending' rows are on their way (a lease): they finish, never go twice.
            result = await conn.execute(
                """UPDATE outbox_messages m SET status = 'cancelled',
                       last_error = 'campaign cancelled', updated_at = $2
                   FROM campaign_batches b
                   WHERE b.campaign_id = $1 AND m.event_id = b.event_id
                     AND m.status = 'queued'""", campaign_id, now)
        cancelled = int(result.split()[-1])
        log.info("campaign_cancelled", campaign=campaign_id, by=who, queued_cancelled=cancelled)
        return cancelled


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def campaign_routers(config: CampaignsConfig, quiet: QuietHours, opt_out: OptOutLinks,
                     confirm: ConfirmLinks) -> dict[str, list[Router]]:
    """The relay's routers for the campaign batches and the confirmation SMS."""

    async def batch(conn: asyncpg.Connection, event: Event, now: datetime) -> list[NewMessage]:
        campaign_id = int(event.payload["campaign"])
        # FOR SHARE: a cancel (FOR UPDATE) waits for this fan-out, or this sees it.
        row = await conn.fetchrow(
            "SELECT status, topic, text_uk, text_en FROM campaigns WHERE id = $1 FOR SHARE",
            campaign_id)
        if row is None or row["status"] != "approved":
            return []
        urgent = config.topics[row["topic"]].urgent if row["topic"] in config.topics else False
        at = now if urgent else quiet.next_allowed(now)
        rows = await conn.fetch(
            """SELECT s.citizen_id, s.language, c.phone FROM subscriptions s
               JOIN citizens c ON c.id = s.citizen_id
               WHERE s.id = ANY($1::bigint[]) AND s.confirmed_at IS NOT NULL
                 AND s.cancelled_at IS NULL AND c.opted_out_at IS NULL""",
            [int(i) for i in event.payload["subscriptions"]])
        return [NewMessage(
            "sms", f"campaign:{campaign_id}:citizen:{r['citizen_id']}",
            f"campaign:{campaign_id}:{r['citizen_id']}", r["phone"],
            f"{row['text_en'] if r['language'] == 'en' else row['text_uk']}\n"
            f"STOP: {opt_out.url(r['citizen_id'])}",
            citizen_id=r["citizen_id"],
            meta={"campaign": campaign_id, "quiet": not urgent}, available_at=at)
            for r in rows]

    async def confirmation(conn: asyncpg.Connection, event: Event,
                           now: datetime) -> list[NewMessage]:
        row = await conn.fetchrow(
            """SELECT s.id, s.citizen_id, s.language, s.topic, s.confirmed_at, c.phone,
                      c.opted_out_at, d.name_uk, d.name_en
               FROM subscriptions s JOIN citizens c ON c.id = s.citizen_id
               JOIN districts d ON d.id = s.district_id WHERE s.id = $1""",
            int(event.payload["subscription"]))
        if row is None or row["confirmed_at"] is not None or row["opted_out_at"] is not None:
            return []
        topic = config.topics.get(row["topic"])
        en = row["language"] == "en"
        template = config.confirm_en if en else config.confirm_uk
        body = template.format(
            topic=(topic.en if en else topic.uk) if topic else row["topic"],
            district=row["name_en"] if en else row["name_uk"], url=confirm.url(row["id"]))
        return [NewMessage("sms", f"{event.key}:sms", f"sms:citizen:{row['citizen_id']}",
                           row["phone"], body, citizen_id=row["citizen_id"],
                           meta={"subscription": row["id"], "quiet": True},
                           available_at=quiet.next_allowed(now))]

    return {BATCH_TOPIC: [batch], CONFIRM_TOPIC: [confirmation]}
