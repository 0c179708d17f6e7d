"""District announcements, the emergency hours override and the callbacks'
state (issue 9): an admin page and its JSON API.

Announcements (supervisors and admins): districts, a period, a kind and the
text; the sound the IVR plays is the text spoken (synthesised when created) or
an uploaded recording, accepted only as what Asterisk plays as is: a WAV of
8 kHz mono 16-bit PCM, at most :data:`MAX_RECORDING_BYTES`. The hours override
(admins only) opens or closes a queue (or every queue) whatever its hours say;
every change is audited. Browsers send the CSRF token of the GET in
``X-CSRF-Token`` with each change.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from crm_sync.callflow import Announcements, PostgresCallbacks, PostgresHoursOverrides
from hotline.core.callflow import ALL_QUEUES, NOTICE_KINDS, OVERRIDE_MODES
from hotline.core.errors import InvalidInput, UnavailableError
from hotline.core.logs import get_logger
from hotline.core.people import ADMIN, SUPERVISOR, WATCHERS
from hotline.web.common import (
    POOL,
    Route,
    html_response,
    json_body,
    json_response,
    principal,
    render,
)
from hotline.web.guard import csrf_token

log = get_logger("hotline.web.announcements")
EDITORS = (SUPERVISOR, ADMIN)
_BASE = "/api/admin/announcements"
#: About a minute of 8 kHz 16-bit mono speech.
MAX_RECORDING_BYTES = 1024 * 1024
MAX_TEXT = 1000
MAX_DISTRICTS = 50
_QUEUE_NAME_MAX = 32

#: Writes an announcement's sound where Asterisk plays it: (id, text, recording or None).
NoticeAudio = Callable[[int, str, bytes | None], Awaitable[None]]
ANNOUNCEMENT_AUDIO: web.AppKey[NoticeAudio] = web.AppKey("announcement_audio")


class RecordingRefused(InvalidInput):
    error_id = "recording_refused"


def _moment(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name}: an ISO 8601 date and time with its offset",
                           details={"field": name}) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{name}: give the offset (e.g. +02:00)", details={"field": name})
    return moment


def _id(request: web.Request) -> int:
    raw = request.match_info["announcement_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("announcement_id: a number", details={"field": "announcement_id"})
    return int(raw)


async def page(request: web.Request) -> web.Response:
    html = render("announcements.html", name=principal(request).display_name,
                  csrf=csrf_token(request))
    return html_response(html, headers={"Cache-Control": "no-store"})


async def list_announcements(request: web.Request) -> web.Response:
    store = Announcements(request.app[POOL])
    return json_response({
        "announcements": await store.listing(include_past=request.query.get("past") == "1"),
        "districts": await store.districts(),
        "kinds": list(NOTICE_KINDS),
        "csrf": csrf_token(request),
    })


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = body.get("kind")
    if kind not in NOTICE_KINDS:
        raise InvalidInput(f"kind: one of {', '.join(NOTICE_KINDS)}", details={"field": "kind"})
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise InvalidInput(f"text: the words to say, 1 to {MAX_TEXT} characters",
                           details={"field": "text"})
    districts = body.get("district_ids")
    if (not isinstance(districts, list) or not districts or len(districts) > MAX_DISTRICTS
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**31
                       for d in districts)):
        raise InvalidInput("district_ids: a list of district ids",
                           details={"field": "district_ids"})
    starts_at, ends_at = _moment(body, "starts_at"), _moment(body, "ends_at")
    if ends_at <= starts_at:
        raise InvalidInput("ends_at: after starts_at", details={"field": "ends_at"})
    who = principal(request).login
    store = Announcements(request.app[POOL])
    announcement_id = await store.create(kind=kind, text=text.strip(), district_ids=districts,
                                         starts_at=starts_at, ends_at=ends_at, by=who)
    try:
        await request.app[ANNOUNCEMENT_AUDIO](announcement_id, text.strip(), None)
    except Exception as exc:  # a notice nobody can hear must not be played
        await store.cancel(announcement_id, who)
        log.error("announcement_audio_failed", id=announcement_id, error=repr(exc))
        raise UnavailableError("the announcement's sound could not be made; "
                               "it was not published") from None
    return json_response({"id": announcement_id}, status=201)


def check_recording(data: bytes) -> float:
    """The recording's length in seconds, or :class:`RecordingRefused` saying why:
    only a WAV Asterisk plays as is (RIFF/WAVE, PCM, 8000 Hz, mono, 16-bit)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RecordingRefused("recording: not a WAV file (RIFF/WAVE)")
    if struct.unpack_from("<I", data, 4)[0] + 8 != len(data):
        raise RecordingRefused("recording: the RIFF size does not match the upload")
    offset, fmt, data_size = 12, None, None
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body_at = offset + 8
        if body_at + size > len(data):
            raise RecordingRefused("recording: a chunk runs past the end of the file")
        if chunk == b"fmt " and size >= 16:
            fmt = struct.unpack_from("<HHIIHH", data, body_at)
        elif chunk == b"data":
            data_size = size
        offset = body_at + size + (size & 1)
    if fmt is None or data_size is None:
        raise RecordingRefused("recording: no fmt or data chunk")
    audio_format, channels, rate, _, _, bits = fmt
    if (audio_format, channels, rate, bits) != (1, 1, 8000, 16):
        raise RecordingRefused("recording: must be PCM, 8000 Hz, mono, 16-bit "
                               "(sox in.wav -r 8000 -c 1 -b 16 -e signed out.wav)")
    if data_size == 0:
        raise RecordingRefused("recording: no sound in it")
    return float(data_size) / (8000 * 2)


async def upload_recording(request: web.Request) -> web.Response:
    announcement_id = _id(request)
    if request.content_type not in ("audio/wav", "audio/x-wav", "audio/wave"):
        raise RecordingRefused("recording: send it as audio/wav")
    declared = request.content_length
    if declared is not None and declared > MAX_RECORDING_BYTES:
        raise RecordingRefused(f"recording: at most {MAX_RECORDING_BYTES} bytes")
    # Read by hand: the app's body limit is for JSON; this one route takes more, bounded.
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RECORDING_BYTES:
            raise RecordingRefused(f"recording: at most {MAX_RECORDING_BYTES} bytes")
        chunks.append(chunk)
    wav = b"".join(chunks)
    seconds = check_recording(wav)
    who = principal(request).login
    await Announcements(request.app[POOL]).attach_recording(announcement_id, wav, who)
    await request.app[ANNOUNCEMENT_AUDIO](announcement_id, "", wav)
    return json_response({"id": announcement_id, "seconds": round(seconds, 1)})


async def cancel(request: web.Request) -> web.Response:
    announcement_id = _id(request)
    await Announcements(request.app[POOL]).cancel(announcement_id, principal(request).login)
    return json_response({"id": announcement_id, "cancelled": True})


async def get_override(request: web.Request) -> web.Response:
    store = PostgresHoursOverrides(request.app[POOL])
    current = await store.hours_overrides()
    return json_response({
        "overrides": [{"scope": o.scope, "mode": o.mode, "reason": o.reason,
                       "set_by": o.set_by, "set_at": o.set_at} for o in current.values()],
        "audit": await store.audit(),
        "csrf": csrf_token(request),
    })


async def set_override(request: web.Request) -> web.Response:
    body = await json_body(request)
    scope = body.get("scope", ALL_QUEUES)
    if not isinstance(scope, str) or not (
            scope == ALL_QUEUES or (0 < len(scope) <= _QUEUE_NAME_MAX
                                    and scope.replace("_", "").isalnum() and scope.isascii())):
        raise InvalidInput("scope: a queue name or \"*\"", details={"field": "scope"})
    mode = body.get("mode")
    if mode is not None and mode not in OVERRIDE_MODES:
        raise InvalidInput(f"mode: one of {', '.join(OVERRIDE_MODES)} or null",
                           details={"field": "mode"})
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise InvalidInput("reason: why, up to 200 characters", details={"field": "reason"})
    await PostgresHoursOverrides(request.app[POOL]).set_override(
        scope, mode, reason.strip(), principal(request).login)
    return json_response({"scope": scope, "mode": mode})


async def callbacks(request: web.Request) -> web.Response:
    """Callbacks per queue: waiting, being dialled, placed and failed today."""
    return json_response({"queues": await PostgresCallbacks(request.app[POOL]).summary()})


_JSON = {"application/json": {"schema": {"type": "object"}}}
_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_ERRORS = {
    "400": {"description": "invalid input (the message names the field)"},
    "401": {"description": "not signed in"},
    "403": {"description": "not allowed for this role; CSRF or Origin refused"},
    "404": {"description": "no such active announcement"},
}
_ID = [{"name": "announcement_id", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}]


def _doc(summary: str, ok: str, **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _SESSION, **more,
            "responses": {ok: {"description": summary, "content": _JSON}, **_ERRORS}}


#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    "/admin/announcements": {"get": {
        "summary": "the announcements page (supervisors, admins)", "security": _SESSION,
        "responses": {"200": {"description": "the page",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      "302": {"description": "not signed in: to /login"},
                      "403": {"description": "not a supervisor or admin"}}}},
    _BASE: {
        "get": _doc("announcements, districts (and the CSRF token for changes)", "200"),
        "post": _doc("announce to callers of some districts for a period (the text is "
                     "spoken)", "201", requestBody={"required": True, "content": _JSON}),
    },
    _BASE + "/{announcement_id}/recording": {"put": _doc(
        "replace the spoken text with a recording (WAV, 8 kHz mono 16-bit, at most 1 MiB)",
        "200", parameters=_ID,
        requestBody={"required": True, "content": {"audio/wav": {"schema": {
            "type": "string", "format": "binary"}}}})},
    _BASE + "/{announcement_id}/cancel": {"post": _doc(
        "stop an announcement now", "200", parameters=_ID)},
    "/api/admin/hours": {"get": _doc("the emergency hours overrides and their audit", "200")},
    "/api/admin/hours/override": {
        "post": _doc("open or close a queue (or \"*\") whatever its hours; mode null lifts "
                     "it (admins)", "200", requestBody={"required": True, "content": _JSON}),
    },
    "/api/callbacks": {"get": _doc("callbacks per queue: waiting, dialling, placed, failed",
                                   "200")},
}

ROUTES = [
    Route("GET", "/admin/announcements", page, EDITORS),
    Route("GET", _BASE, list_announcements, EDITORS),
    Route("POST", _BASE, create, EDITORS),
    Route("PUT", _BASE + "/{announcement_id}/recording", upload_recording, EDITORS),
    Route("POST", _BASE + "/{announcement_id}/cancel", cancel, EDITORS),
    # Roles are per path (hotline.web.app): reading and switching are two paths.
    Route("GET", "/api/admin/hours", get_override, EDITORS),
    Route("POST", "/api/admin/hours/override", set_override, (ADMIN,)),
    Route("GET", "/api/callbacks", callbacks, WATCHERS),
]
