"""The appeal form of the in-call panel: every field checked first (all bad fields
named at once, nothing written), then the citizen (found or created by number) and
their notification choices, then the appeals service registers and routes the
appeal, linked to the call and the citizen.

The citizen's consent is saved BEFORE the appeal is registered: the relay decides
whether to text a citizen when it reads the appeal's outbox row, which may be at
once. A retried submission of the same form (``form_id``) gives the same appeal
(the service's intake key), so a double click files one appeal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from crm_sync.appeals import AppealsService, NewAppeal, Registered
from crm_sync.appeals.service import MAX_ADDRESS, MAX_TEXT
from crm_sync.citizen_preferences import CHANNELS, LANGUAGES, set_preferences
from crm_sync.desk.calls import PanelCall
from crm_sync.desk.config import DeskConfig
from hotline.core.appeals import Actor, Channel
from hotline.core.desk import FieldsInvalid
from hotline.core.logs import get_logger
from hotline.core.privacy import mask_phone

MAX_NAME = 200
_PHONE = re.compile(r"\+?[0-9]{3,20}")
_PHONE_NOISE = re.compile(r"[\s()-]")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}")
_FORM_ID = re.compile(r"[A-Za-z0-9-]{8,64}")
FIELDS = ("category", "address", "district", "text", "phone", "name", "email",
          "notify_channel", "consent", "form_id")
log = get_logger("crm_sync.desk.intake")


@dataclass(frozen=True)
class CheckedAppeal:
    category: str
    address: str
    district: str
    text: str
    phone: str
    name: str
    email: str | None
    notify_channel: str
    consent: bool
    form_id: str | None
    district_resolved: bool  # from the street list, not chosen by hand


def _text(body: Mapping[str, Any], name: str, errors: dict[str, str]) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[name] = "expected text"
        return ""
    return value.strip()


async def check_appeal_form(
    pool: asyncpg.Pool, config: DeskConfig, body: Mapping[str, Any]
) -> CheckedAppeal:
    """The form's values, or :class:`FieldsInvalid` with a message per bad field."""
    errors: dict[str, str] = {}
    category = _text(body, "category", errors)
    address = _text(body, "address", errors)
    district = _text(body, "district", errors)
    text = _text(body, "text", errors)
    phone = _PHONE_NOISE.sub("", _text(body, "phone", errors))
    name = _text(body, "name", errors)
    email = _text(body, "email", errors) or None
    channel = _text(body, "notify_channel", errors) or "sms"
    form_id = _text(body, "form_id", errors) or None
    consent = body.get("consent", False)

    if "category" not in errors:
        if not category:
            errors["category"] = "choose the issue (search the taxonomy)"
        elif not await pool.fetchval("SELECT 1 FROM categories WHERE code = $1", category):
            errors["category"] = f"unknown issue {category!r}"
    if "address" not in errors:
        if not address:
            errors["address"] = "the address of the problem is required"
        elif len(address) > MAX_ADDRESS:
            errors["address"] = f"at most {MAX_ADDRESS} characters"
    resolved = False
    if "district" not in errors:
        if not district and address and "address" not in errors:
            street = config.district_of(address)
            if street is not None:
                district, resolved = street.district, True
        if not district:
            if "address" not in errors:
                errors["district"] = ("the street is not in the city's list: "
                                      "choose the district")
        elif not await pool.fetchval("SELECT 1 FROM districts WHERE code = $1", district):
            errors["district"] = f"unknown district {district!r}"
    if "text" not in errors:
        if not text:
            errors["text"] = "describe the problem in the caller's words"
        elif len(text) > MAX_TEXT:
            errors["text"] = f"at most {MAX_TEXT} characters"
    if "phone" not in errors and not _PHONE.fullmatch(phone):
        errors["phone"] = "a phone number: digits with an optional leading +, 3 to 20 of them"
    if "name" not in errors and len(name) > MAX_NAME:
        errors["name"] = f"at most {MAX_NAME} characters"
    if channel not in CHANNELS:
        errors["notify_channel"] = f"one of {', '.join(CHANNELS)}"
    if not isinstance(consent, bool):
        errors["consent"] = "expected true or false"
        consent = False
    if "email" not in errors:
        if email is not None and not _EMAIL.fullmatch(email):
            errors["email"] = "not an e-mail address"
        elif email is None and channel == "email":
            errors["email"] = "required to notify by e-mail"
    if form_id is not None and not _FORM_ID.fullmatch(form_id):
        errors["form_id"] = "8 to 64 letters, digits or dashes"
    for unknown in sorted(set(body) - set(FIELDS) - {"csrf"}):
        errors[unknown] = "unknown field"
    if errors:
        raise FieldsInvalid(errors)
    return CheckedAppeal(category, address, district, text, phone, name, email, channel,
                         bool(consent), form_id, resolved)


async def file_appeal(
    pool: asyncpg.Pool, service: AppealsService, config: DeskConfig, call: PanelCall,
    body: Mapping[str, Any], actor: Actor, now: datetime,
) -> tuple[Registered, CheckedAppeal]:
    form = await check_appeal_form(pool, config, body)
    async with pool.acquire() as conn, conn.transaction():
        citizen_id: int = await conn.fetchval(
            """INSERT INTO citizens (phone, name, district_id)
               VALUES ($1, $2, (SELECT id FROM districts WHERE code = $3))
               ON CONFLICT (phone) DO UPDATE SET
                   name = CASE WHEN citizens.name = '' THEN EXCLUDED.name ELSE citizens.name END,
                   district_id = COALESCE(citizens.district_id, EXCLUDED.district_id)
               RETURNING id""", form.phone, form.name, form.district)
        # the call is the citizen's when the case store did not know the number yet
        await conn.execute("UPDATE calls SET citizen_id = $2 WHERE id = $1 AND citizen_id IS NULL",
                           call.id, citizen_id)
    language = call.language if call.language in LANGUAGES else LANGUAGES[0]
    await set_preferences(pool, citizen_id, language=language, channel=form.notify_channel,
                          email=form.email, consent=form.consent, at=now)
    registered = await service.register(NewAppeal(
        channel=Channel.PHONE, category=form.category, text=form.text, address=form.address,
        district=form.district, citizen_id=citizen_id, call_id=call.id,
        intake_key=f"desk:{call.id}:{form.form_id}" if form.form_id else None,
    ), actor)
    log.info("desk_appeal_filed", uniqueid=call.uniqueid, call_id=call.id,
             appeal=registered.appeal.number, created=registered.created,
             duplicate_of=registered.primary.number if registered.primary else None,
             citizen=mask_phone(form.phone), by=actor.label)
    return registered, form
