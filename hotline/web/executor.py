"""The executor portal: an executor organisation's users see, filter and page through
their organisation's appeals, open one, accept it, work on it, ask the citizen, resolve,
reject, or send it on as "not ours"; supervisors and admins may look at every
organisation's appeals (read-only here).

Everything goes through :class:`~crm_sync.appeals.AppealsService` with an
:class:`~hotline.core.appeals.Actor` that carries the user's organisation, read from
the case store on every request (a user moved to another organisation, or no longer
an executor's, loses the old one's appeals at once). The service answers another
organisation's appeal exactly as an appeal that does not exist: the same 404 page,
the same JSON, nothing of it in either.

Pages are rendered on the server (forms with the CSRF token; state changes are POSTs
that redirect back, or show the page again with the service's reason when refused);
``executor.js`` only adds comfort. The JSON API under ``/api/executor/`` offers the
same lists and the appeal for scripts and tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from multidict import MultiMapping

from crm_sync.appeals import AppealFilter, AppealsService, Cursor, Page
from crm_sync.appeals.service import Attachment, Comment, search_words, statuses_of
from crm_sync.people import executor_of
from hotline.core.appeals import (
    OPEN_STATUSES,
    Actor,
    ActorKind,
    Appeal,
    AppealNotFound,
    AppealStatus,
    AppealSummary,
    Channel,
    HistoryEntry,
    allowed_targets,
)
from hotline.core.errors import Forbidden, HotlineError, InvalidInput, UnavailableError
from hotline.core.logs import get_logger
from hotline.core.people import ADMIN, EXECUTOR, SUPERVISOR
from hotline.web.common import (
    APPEALS,
    POOL,
    Route,
    html_response,
    json_response,
    principal,
    template,
)
from hotline.web.guard import csrf_token

CITY_TZ = ZoneInfo("Europe/Kyiv")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
PAGE_SIZE = 25
#: Who may open the portal: an organisation's users, and staff who oversee them all.
VIEWERS = (EXECUTOR, SUPERVISOR, ADMIN)
#: Who may change an appeal here.
WORKERS = (EXECUTOR,)
_STAFF_KINDS = {SUPERVISOR: ActorKind.SUPERVISOR, ADMIN: ActorKind.ADMIN}
#: Appeal ids beyond this are not ids (and would not fit the column): "not found".
_MAX_ID_DIGITS = 18

STATUS_LABELS: Mapping[AppealStatus, str] = {
    AppealStatus.REGISTERED: "Registered",
    AppealStatus.ROUTED: "New (routed to you)",
    AppealStatus.ACCEPTED: "Accepted",
    AppealStatus.IN_PROGRESS: "In progress",
    AppealStatus.NEEDS_CLARIFICATION: "Waiting for the citizen",
    AppealStatus.DONE: "Resolved",
    AppealStatus.REJECTED: "Rejected",
    AppealStatus.REOPENED: "Reopened",
    AppealStatus.CLOSED: "Closed",
}


@dataclass(frozen=True)
class Action:
    """A button on the appeal's page: where it posts, and whether it needs words."""

    key: str
    label: str
    target: AppealStatus
    reason: str  # "" none, "optional", "required"
    prompt: str
    path: str = "status"


#: Each status an executor may move an appeal to, as the page offers it.
ACTIONS: Mapping[AppealStatus, Action] = {
    a.target: a for a in (
        Action("accept", "Accept", AppealStatus.ACCEPTED, "", ""),
        Action("start", "Start work", AppealStatus.IN_PROGRESS, "optional",
               "Comment (optional)"),
        Action("clarify", "Ask the citizen", AppealStatus.NEEDS_CLARIFICATION, "required",
               "Question for the citizen"),
        Action("resolve", "Resolve", AppealStatus.DONE, "required", "What was done"),
        Action("reject", "Reject", AppealStatus.REJECTED, "required", "Why it is refused"),
        Action("decline", "Not ours — send on", AppealStatus.ROUTED, "required",
               "Why it is not your organisation's", path="decline"),
    )
}
#: Messages after a change, by the key the redirect carries (never free text).
NOTICES = {
    "accepted": "The appeal is accepted.",
    "in_progress": "Work on the appeal has started.",
    "needs_clarification": "The question was sent to the citizen.",
    "done": "The appeal is resolved.",
    "rejected": "The appeal is rejected.",
    "declined": "The appeal was sent on to the next organisation.",
    "comment": "The comment is saved.",
}

log = get_logger("hotline.web.executor")


# --- who is asking ---------------------------------------------------------------


async def actor_of(request: web.Request) -> Actor:
    """The service's actor for the signed-in person; an executor's user without an
    organisation sees nothing."""
    who = principal(request)
    if who.role == EXECUTOR:
        executor_id = await executor_of(request.app[POOL], who.login)
        if executor_id is None:
            raise Forbidden("Your account is not linked to an executor organisation; "
                            "ask an administrator.")
        return Actor(ActorKind.EXECUTOR, who.login, executor_id=executor_id)
    kind = _STAFF_KINDS.get(who.role)
    if kind is None:  # the route table already refuses it; never widen by accident
        raise Forbidden("not allowed for your role")
    return Actor(kind, who.login)


def appeals_of(request: web.Request) -> AppealsService:
    service = request.app.get(APPEALS)
    if service is None:
        raise UnavailableError("the appeals service is not running in this process")
    return service


def appeal_id_of(request: web.Request) -> int:
    text = request.match_info["appeal_id"]
    if not text.isdigit() or len(text) > _MAX_ID_DIGITS:
        raise AppealNotFound(f"appeal {text[:20]} not found")
    return int(text)


# --- the filters of a list -------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    view: str  # all, overdue, due_soon
    status: str  # "open", "any" or a status
    overdue: bool
    category: str
    district: str
    search: str
    after: Cursor | None

    def params(self, **changes: Any) -> dict[str, str]:
        values = {"view": self.view, "status": self.status, "overdue": "1" if self.overdue else "",
                  "category": self.category, "district": self.district, "q": self.search}
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v}


def parse_list_query(query: MultiMapping[str]) -> ListQuery:
    view = query.get("view", "all")
    if view not in ("all", "overdue", "due_soon"):
        raise InvalidInput("view: all, overdue or due_soon", details={"field": "view"})
    status = query.get("status", "open")
    if status not in ("open", "any"):
        statuses_of([status])  # the error names the unknown status
    search = query.get("q", "").strip()
    search_words(search)
    after = Cursor.decode(query["after"]) if query.get("after") else None
    return ListQuery(view, status, query.get("overdue", "") in ("1", "on", "true"),
                     query.get("category", "").strip(), query.get("district", "").strip(),
                     search, after)


async def _code_id(pool: asyncpg.Pool, table: str, code: str) -> int:
    # table is one of two names written below, never from the request
    value: int | None = await pool.fetchval(f"SELECT id FROM {table} WHERE code = $1", code)
    if value is None:
        field = "category" if table == "categories" else "district"
        raise InvalidInput(f"{field}: unknown code {code!r}", details={"field": field})
    return value


async def fetch_page(request: web.Request, actor: Actor, q: ListQuery) -> Page:
    service = appeals_of(request)
    if q.view == "overdue":
        return await service.overdue(actor, after=q.after, limit=PAGE_SIZE)
    if q.view == "due_soon":
        return await service.due_soon(actor, after=q.after, limit=PAGE_SIZE)
    pool = request.app[POOL]
    statuses: frozenset[AppealStatus] | None = (
        OPEN_STATUSES if q.status == "open" else None if q.status == "any"
        else statuses_of([q.status]))
    numbers: tuple[str, ...] = ()
    search = q.search
    if search.startswith("1551-") and " " not in search:  # a number typed into the box
        numbers, search = (search,), ""
    flt = AppealFilter(
        statuses=statuses,
        category_ids=(await _code_id(pool, "categories", q.category),) if q.category else (),
        district_ids=(await _code_id(pool, "districts", q.district),) if q.district else (),
        numbers=numbers,
        overdue_at=datetime.now(UTC) if q.overdue else None,
        search=search,
    )
    return await service.list_appeals(actor, flt, after=q.after, limit=PAGE_SIZE)


# --- JSON ------------------------------------------------------------------------


def summary_json(item: AppealSummary, now: datetime) -> dict[str, Any]:
    return {
        "id": item.id, "number": item.number, "status": item.status.value,
        "category": item.category_code, "category_name": item.category_name_uk,
        "district": item.district_code, "address": item.address, "text": item.text,
        "executor": item.executor_code, "due_at": item.due_at, "created_at": item.created_at,
        "updated_at": item.updated_at, "overdue": _overdue(item, now),
        "duplicate_of": item.duplicate_of_number, "status_reason": item.status_reason,
    }


def _overdue(item: AppealSummary, now: datetime) -> bool:
    return (item.due_at is not None and item.due_at < now and item.status in OPEN_STATUSES
            and item.status is not AppealStatus.NEEDS_CLARIFICATION)


async def api_list(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    q = parse_list_query(request.query)
    page = await fetch_page(request, actor, q)
    now = datetime.now(UTC)
    return json_response({
        "appeals": [summary_json(item, now) for item in page.items],
        "next": page.next_cursor.encode() if page.next_cursor else None,
    })


async def api_appeal(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    appeal_id = appeal_id_of(request)
    service = appeals_of(request)
    appeal = await service.get(appeal_id, actor)
    now = datetime.now(UTC)
    return json_response({
        "appeal": {**summary_json(appeal, now), "version": appeal.version,
                   "channel": appeal.channel},
        "history": [_history_json(h) for h in await service.history(appeal_id, actor)],
        "comments": [_comment_json(c) for c in await service.comments(appeal_id, actor)],
        "attachments": [_attachment_json(a) for a in await service.attachments(appeal_id, actor)],
        "actions": [ACTIONS[t].key for t in _targets(actor, appeal) if t in ACTIONS],
    })


def _history_json(h: HistoryEntry) -> dict[str, Any]:
    return {"at": h.at, "event": h.event, "actor": h.actor, "actor_kind": h.actor_kind,
            "channel": h.channel, "from": h.from_status.value if h.from_status else None,
            "to": h.to_status.value, "note": h.note}


def _comment_json(c: Comment) -> dict[str, Any]:
    return {"at": c.at, "actor": c.actor, "visibility": c.visibility, "body": c.body}


def _attachment_json(a: Attachment) -> dict[str, Any]:
    return {"at": a.at, "url": a.url, "content_type": a.content_type, "caption": a.caption}


def _targets(actor: Actor, appeal: Appeal) -> list[AppealStatus]:
    if actor.kind is not ActorKind.EXECUTOR:
        return []  # staff look here; they change appeals from their own tools
    return allowed_targets(appeal.status, ActorKind.EXECUTOR)


# --- pages -----------------------------------------------------------------------


def _local(at: datetime | None) -> str:
    return at.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M") if at is not None else ""


def fill(template_name: str, values: Mapping[str, str], raw: Mapping[str, str]) -> str:
    """The template with ``values`` escaped and ``raw`` fragments (built here, every
    piece of data in them escaped) put in as they are. One pass: a citizen's text that
    reads ``{{actions}}`` stays text."""
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in raw:
            return raw[key]
        if key in values:
            return escape(values[key])
        return match.group(0)

    return _PLACEHOLDER.sub(one, template(template_name))


def _options(choices: Sequence[tuple[str, str]], selected: str) -> str:
    return "".join(
        f'<option value="{escape(value)}"{" selected" if value == selected else ""}>'
        f"{escape(label)}</option>" for value, label in choices)


async def _choices(pool: asyncpg.Pool) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Categories and districts for the filter (reference data, a few hundred rows)."""
    categories = await pool.fetch("SELECT code, name_uk FROM categories ORDER BY name_uk")
    districts = await pool.fetch("SELECT code, name_uk FROM districts ORDER BY name_uk")
    return ([(r["code"], r["name_uk"]) for r in categories],
            [(r["code"], r["name_uk"]) for r in districts])


async def _organisation(pool: asyncpg.Pool, actor: Actor) -> str:
    if actor.executor_id is None:
        return "all organisations"
    name: str | None = await pool.fetchval(
        "SELECT COALESCE(name_uk, name) FROM executors WHERE id = $1", actor.executor_id)
    return name or ""


def _rows(items: Sequence[AppealSummary], now: datetime) -> str:
    if not items:
        return '<tr><td colspan="7" class="empty">No appeals here.</td></tr>'
    out = []
    for item in items:
        late = _overdue(item, now)
        out.append(
            f'<tr data-number="{escape(item.number)}" class="{"late" if late else ""}">'
            f'<td data-label="Number"><a href="/executor/appeals/{item.id}">'
            f"{escape(item.number)}</a></td>"
            f'<td data-label="Status"><span class="status s-{escape(item.status.value)}">'
            f"{escape(STATUS_LABELS[item.status])}</span></td>"
            f'<td data-label="Category">{escape(item.category_name_uk)}</td>'
            f'<td data-label="Address"><div>{escape(item.address)}'
            f'<div class="text">{escape(item.text[:160])}</div></div></td>'
            f'<td data-label="District">{escape(item.district_code or "")}</td>'
            f'<td data-label="Due"><div>{escape(_local(item.due_at))}'
            f'{" <strong class=late-mark>overdue</strong>" if late else ""}</div></td>'
            f'<td data-label="Received">{escape(_local(item.created_at))}</td></tr>')
    return "".join(out)


def _notice(request: web.Request) -> str:
    text = NOTICES.get(request.query.get("notice", ""))
    return f'<p class="notice" role="status">{escape(text)}</p>' if text else ""


def _error(message: str) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


async def portal(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    q = parse_list_query(request.query)
    page = await fetch_page(request, actor, q)
    pool = request.app[POOL]
    categories, districts = await _choices(pool)
    now = datetime.now(UTC)
    status_choices = [("open", "Open"), ("any", "Any status")] + [
        (s.value, STATUS_LABELS[s]) for s in AppealStatus]
    tabs = "".join(
        f'<a href="/executor?view={view}" class="tab{" current" if q.view == view else ""}"'
        f">{label}</a>"
        for view, label in (("all", "Appeals"), ("overdue", "Overdue"), ("due_soon", "Due soon")))
    next_link = ""
    if page.next_cursor is not None:
        href = "/executor?" + urlencode(q.params(after=page.next_cursor.encode()))
        next_link = f'<a class="next" rel="next" href="{escape(href)}">Next page →</a>'
    first_link = ""
    if q.after is not None:
        first_link = f'<a href="/executor?{escape(urlencode(q.params()))}">↩ First page</a>'
    who = principal(request)
    html = fill("executor.html", {
        "name": who.display_name, "organisation": await _organisation(pool, actor),
        "csrf": csrf_token(request), "q": q.search,
        "filters_hidden": "" if q.view == "all" else "hidden",
        "overdue_checked": "checked" if q.overdue else "",
        "view": q.view,
    }, {
        "tabs": tabs, "notice": _notice(request),
        "status_options": _options(status_choices, q.status),
        "category_options": _options([("", "Any category"), *categories], q.category),
        "district_options": _options([("", "Any district"), *districts], q.district),
        "rows": _rows(page.items, now), "next": next_link, "first": first_link,
    })
    return html_response(html, headers={"Cache-Control": "no-store"})


async def appeal_page(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    return await _render_appeal(request, actor, appeal_id_of(request))


async def _render_appeal(
    request: web.Request, actor: Actor, appeal_id: int, error: str = "", status: int = 200,
) -> web.Response:
    service = appeals_of(request)
    appeal = await service.get(appeal_id, actor)
    history = await service.history(appeal_id, actor)
    comments = await service.comments(appeal_id, actor)
    attachments = await service.attachments(appeal_id, actor)
    now = datetime.now(UTC)
    token = csrf_token(request)
    csrf_field = f'<input type="hidden" name="csrf" value="{escape(token)}">'
    version_field = f'<input type="hidden" name="version" value="{appeal.version}">'
    actions = []
    for target in _targets(actor, appeal):
        action = ACTIONS.get(target)
        if action is None:
            continue
        words = ""
        if action.reason:
            required = " required" if action.reason == "required" else ""
            words = (f'<label for="r-{action.key}">{escape(action.prompt)}</label>'
                     f'<textarea id="r-{action.key}" name="reason" rows="2" maxlength="2000"'
                     f"{required}></textarea>")
        target_field = (f'<input type="hidden" name="status" value="{target.value}">'
                        if action.path == "status" else "")
        actions.append(
            f'<form method="post" class="action a-{action.key}" '
            f'action="/executor/appeals/{appeal.id}/{action.path}">{csrf_field}{version_field}'
            f"{target_field}{words}"
            f'<button type="submit" name="do" value="{action.key}">{escape(action.label)}'
            "</button></form>")
    comment_form = ""
    if actor.kind is ActorKind.EXECUTOR:
        comment_form = (
            f'<form method="post" class="comment" action="/executor/appeals/{appeal.id}/comments">'
            f'{csrf_field}<label for="body">Comment</label>'
            '<textarea id="body" name="body" rows="3" maxlength="10000" required></textarea>'
            '<label class="check"><input type="radio" name="visibility" value="internal" checked>'
            ' internal (staff and executors)</label>'
            '<label class="check"><input type="radio" name="visibility" value="citizen">'
            " for the citizen</label>"
            '<button type="submit">Add comment</button></form>')
    late = _overdue(appeal, now)
    details = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in (
            ("Category", f"{appeal.category_name_uk} ({appeal.category_name_en})"),
            ("District", appeal.district_code or "—"),
            ("Address", appeal.address or "—"),
            ("Received", f"{_local(appeal.created_at)} via {appeal.channel}"),
            ("Due", _local(appeal.due_at) + (" — overdue" if late else "")),
            ("Organisation", appeal.executor_name_uk or appeal.executor_name or "—"),
            ("Last change", appeal.status_reason or "—"),
            ("Duplicate of", appeal.duplicate_of_number or "—"),
        ))
    history_rows = "".join(
        f"<tr><td data-label=\"When\">{escape(_local(h.at))}</td>"
        f"<td data-label=\"Change\"><div>"
        f"{escape(h.from_status.value if h.from_status else '')}"
        f" → {escape(h.to_status.value)} <small>({escape(h.event)})</small></div></td>"
        f"<td data-label=\"Who\"><div>{escape(h.actor)} <small>{escape(h.channel)}</small>"
        "</div></td>"
        f"<td data-label=\"Note\">{escape(h.note or '')}</td></tr>" for h in history)
    comment_items = "".join(
        f'<li class="c-{escape(c.visibility)}"><div class="meta">{escape(_local(c.at))} · '
        f"{escape(c.actor)} · {'for the citizen' if c.visibility == 'citizen' else 'internal'}"
        f"</div>{escape(c.body)}</li>" for c in comments) or "<li class=empty>No comments.</li>"
    attachment_items = "".join(
        f'<li><a href="{escape(a.url)}" rel="noopener noreferrer" target="_blank">'
        f"{escape(a.caption or a.url)}</a> <small>{escape(a.content_type or '')}</small></li>"
        for a in attachments) or "<li class=empty>No attachments.</li>"
    who = principal(request)
    html = fill("executor_appeal.html", {
        "name": who.display_name, "number": appeal.number, "text": appeal.text,
        "status": STATUS_LABELS[appeal.status], "status_value": appeal.status.value,
        "csrf": token,
    }, {
        "notice": _notice(request) if not error else "", "error": _error(error),
        "details": details,
        "actions": "".join(actions) or '<p class="empty">No action for you in this status.</p>',
        "comment_form": comment_form, "history": history_rows, "comments": comment_items,
        "attachments": attachment_items,
    })
    return html_response(html, status=status, headers={"Cache-Control": "no-store"})


# --- changes ---------------------------------------------------------------------


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()  # already read (and bounded) by the CSRF check
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _version(form: Mapping[str, str]) -> int | None:
    text = form.get("version", "")
    return int(text) if text.isdigit() and len(text) < 10 else None


async def _changed(
    request: web.Request, actor: Actor, appeal_id: int, change: Any, notice: str,
    away: bool = False,
) -> web.Response:
    """Run a change; back to the appeal with a notice, or its page again with the
    service's reason (the appeal's own "not found" stays a 404)."""
    try:
        await change
    except AppealNotFound:
        raise
    except HotlineError as error:
        log.info("executor_change_refused", appeal_id=appeal_id, actor=actor.label,
                 error=error.error_id)
        return await _render_appeal(request, actor, appeal_id, error.message, error.http_status)
    target = "/executor?" if away else f"/executor/appeals/{appeal_id}?"
    raise web.HTTPSeeOther(target + urlencode({"notice": notice}))


async def change_status(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    appeal_id = appeal_id_of(request)
    form = await _form(request)
    try:
        target = AppealStatus(form.get("status", ""))
    except ValueError:
        target = None
    if target is None or target not in ACTIONS or target is AppealStatus.ROUTED:
        raise InvalidInput("status: not a change this page offers", details={"field": "status"})
    service = appeals_of(request)
    reason = form.get("reason", "").strip() or None
    change = service.change_status(appeal_id, target, actor, channel=Channel.EXECUTOR_PORTAL,
                                   reason=reason, expected_version=_version(form))
    return await _changed(request, actor, appeal_id, change, target.value)


async def decline(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    appeal_id = appeal_id_of(request)
    form = await _form(request)
    change = appeals_of(request).decline(
        appeal_id, actor, form.get("reason", ""), channel=Channel.EXECUTOR_PORTAL,
        expected_version=_version(form))
    return await _changed(request, actor, appeal_id, change, "declined", away=True)


async def add_comment(request: web.Request) -> web.Response:
    actor = await actor_of(request)
    appeal_id = appeal_id_of(request)
    form = await _form(request)
    change = appeals_of(request).add_comment(
        appeal_id, actor, form.get("body", ""), visibility=form.get("visibility", "internal"),
        channel=Channel.EXECUTOR_PORTAL)
    return await _changed(request, actor, appeal_id, change, "comment")


_ID = "/{appeal_id}"
_SESSION: list[dict[str, list[str]]] = [{"session": []}]
_ID_PARAM = {"name": "appeal_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
_LIST_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
     "description": text} for name, text in (
        ("view", "all (default), overdue (most overdue first) or due_soon"),
        ("status", "open (default), any, or one status"),
        ("overdue", "1: only appeals past their due time"),
        ("category", "a category code"), ("district", "a district code"),
        ("q", "words that must all occur in the address or text, or an appeal number"),
        ("after", "the cursor of the next page (``next`` of the previous answer)"))]
_FORM = "application/x-www-form-urlencoded"


def _doc(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _SESSION, **more, "responses": {
        **ok, "400": {"description": "invalid input (the message names the field)"},
        "401": {"description": "not signed in (API) / redirect to /login (pages)"},
        "403": {"description": "not allowed for this role, or no organisation; CSRF or "
                               "Origin refused"},
        "404": {"description": "no such appeal, or another organisation's (the same answer)"},
        "409": {"description": "a transition the lifecycle forbids, or changed meanwhile"}}}


def _form_doc(summary: str, fields: Mapping[str, str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {
        "csrf": {"type": "string"}, **{k: {"type": "string", "description": v}
                                       for k, v in fields.items()}}}
    return _doc(summary, {"303": {"description": "done: back to the appeal (or the list)"}},
                parameters=[_ID_PARAM],
                requestBody={"required": True, "content": {_FORM: {"schema": schema}}})


#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    "/executor": {"get": _doc("the executor portal: the organisation's appeals, filtered",
                              {"200": {"description": "page"}}, parameters=_LIST_PARAMS)},
    "/executor/appeals" + _ID: {"get": _doc(
        "one appeal: details, history, comments, attachments, the actions allowed",
        {"200": {"description": "page"}}, parameters=[_ID_PARAM])},
    "/executor/appeals" + _ID + "/status": {"post": _form_doc(
        "accept, start work, ask the citizen, resolve or reject (executors)",
        {"status": "accepted, in_progress, needs_clarification, done or rejected",
         "reason": "the comment of the change (required for some)",
         "version": "the version the page showed (a stale page is refused)"})},
    "/executor/appeals" + _ID + "/decline": {"post": _form_doc(
        "not ours: the appeal goes to the next executor (executors)",
        {"reason": "why", "version": "the version the page showed"})},
    "/executor/appeals" + _ID + "/comments": {"post": _form_doc(
        "a comment (executors)", {"body": "the text", "visibility": "internal or citizen"})},
    "/api/executor/appeals": {"get": _doc(
        "the organisation's appeals as JSON, keyset pages",
        {"200": {"description": "appeals and the next page's cursor",
                 "content": {"application/json": {"schema": {"type": "object"}}}}},
        parameters=_LIST_PARAMS)},
    "/api/executor/appeals" + _ID: {"get": _doc(
        "one appeal as JSON with its history, comments, attachments and actions",
        {"200": {"description": "the appeal",
                 "content": {"application/json": {"schema": {"type": "object"}}}}},
        parameters=[_ID_PARAM])},
}

ROUTES = [
    Route("GET", "/executor", portal, VIEWERS),
    Route("GET", "/executor/appeals" + _ID, appeal_page, VIEWERS),
    Route("POST", "/executor/appeals" + _ID + "/status", change_status, WORKERS),
    Route("POST", "/executor/appeals" + _ID + "/decline", decline, WORKERS),
    Route("POST", "/executor/appeals" + _ID + "/comments", add_comment, WORKERS),
    Route("GET", "/api/executor/appeals", api_list, VIEWERS),
    Route("GET", "/api/executor/appeals" + _ID, api_appeal, VIEWERS),
]
