"""The web side: sign-in, the supervisors' wallboard, its JSON API and live feed.

Every route is authenticated and authorised by role except those in
``PUBLIC`` (the sign-in page and the health check). Live updates come from
Redis pub/sub, so the web role can run on another machine than the AMI role.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import redis.asyncio as aioredis
from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from crm_sync.call_store import PostgresCallStore
from crm_sync.operators import MAX_LOGIN, MAX_PASSWORD, authenticate, is_valid_login
from cti_bridge.auth import SESSION_TTL_SECONDS, Principal, SessionStore
from hotline.aio import cancel_and_wait
from hotline.logs import get_logger, mask_phone

LIVE_CHANNEL = "hotline:live"
QUEUES_KEY = "hotline:queues"
COOKIE = "hotline_session"
WATCHERS = ("supervisor", "admin", "leadership")
EVERYONE = ("operator", "supervisor", "admin", "executor", "leadership")
PUBLIC = frozenset({"/login", "/healthz"})
#: "Today" on the wallboard is the city's day, not UTC's.
CITY_TZ = ZoneInfo("Europe/Kyiv")
#: Service level threshold, seconds (answered within it counts as "in SL").
SL_SECONDS = 20
#: Fields of a call the wallboard shows; nothing else leaves the server.
CALL_FIELDS = (
    "call_key", "started_at", "caller_number", "caller_name", "ivr_choice", "queue",
    "wait_seconds", "talk_seconds", "operator_name", "outcome",
)

POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
SESSIONS = web.AppKey("sessions", SessionStore)
ROUTE_ROLES: web.AppKey[dict[str, tuple[str, ...]]] = web.AppKey("route_roles", dict)
#: Where the middleware leaves who is signed in (``web.RequestKey`` since aiohttp 3.13).
PRINCIPAL: Any = (
    web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"
)

log = get_logger("cti_bridge.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _principal(request: web.Request) -> Principal:
    who: Principal = request[PRINCIPAL]
    return who


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/ws/"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    who = await request.app[SESSIONS].get(token)
    if who is None:
        # Also for unknown paths: who is not signed in learns nothing about the routes.
        if _is_api(request):
            raise web.HTTPUnauthorized(text='{"error": "not_signed_in"}',
                                       content_type="application/json")
        raise web.HTTPFound("/login")
    match_error = request.match_info.http_exception
    if match_error is not None:  # 404 / 405 for a signed-in user, not a misleading 403
        raise match_error
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    allowed = request.app[ROUTE_ROLES].get(canonical)
    if allowed is None or who.role not in allowed:
        log.info("web_forbidden", login=who.login, role=who.role, path=request.path)
        if _is_api(request):
            raise web.HTTPForbidden(text='{"error": "forbidden"}',
                                    content_type="application/json")
        raise web.HTTPForbidden(text=_message_html("Forbidden", _FORBIDDEN_TEXT, who),
                                content_type="text/html")
    request[PRINCIPAL] = who
    return await handler(request)


# --- pages ---------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=_login_html(""), content_type="text/html")


def _login_error(message: str, status: int) -> web.Response:
    return web.Response(text=_login_html(message), content_type="text/html", status=status)


async def login_submit(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # bad encoding, charset, multipart
        return _login_error("The sign-in form could not be read; please try again.", 400)
    login_field, password_field = form.get("login", ""), form.get("password", "")
    if not isinstance(login_field, str) or not isinstance(password_field, str):
        return _login_error("Login and password must be text fields.", 400)
    login, password = login_field.strip(), password_field
    if not login or not password:
        return _login_error("Enter your login and password.", 400)
    if not is_valid_login(login):
        return _login_error(f"A login is up to {MAX_LOGIN} letters, digits, '.', '-' or '_'.", 400)
    if len(password) > MAX_PASSWORD:  # no one has such a password; spare the scrypt
        return _login_error("Wrong login or password.", 401)
    who = await authenticate(request.app[POOL], login, password)
    if who is None:
        log.info("web_login_failed", login=login)
        return _login_error("Wrong login or password.", 401)
    sessions = request.app[SESSIONS]
    await sessions.delete(request.cookies.get(COOKIE, ""))  # no stale session left behind
    token = await sessions.create(who)
    log.info("web_login", login=who.login, role=who.role)
    response = web.HTTPFound("/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=SESSION_TTL_SECONDS)
    raise response


async def logout(request: web.Request) -> web.Response:
    await request.app[SESSIONS].delete(request.cookies.get(COOKIE, ""))
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE, path="/", samesite="Strict")
    raise response


async def home(request: web.Request) -> web.Response:
    who = _principal(request)
    if who.role in WATCHERS:
        raise web.HTTPFound("/wallboard")
    return web.Response(text=_message_html("1551", _NOTHING_YET_TEXT, who),
                        content_type="text/html")


async def wallboard(request: web.Request) -> web.Response:
    who = _principal(request)
    html = WALLBOARD_HTML.replace("{{name}}", escape(who.display_name))
    return web.Response(text=html, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await request.app[POOL].fetchval("SELECT 1")
        checks["database"] = "ok"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        checks["database"] = "down"
    try:
        await request.app[REDIS].ping()
        checks["redis"] = "ok"
    except (OSError, aioredis.RedisError):
        checks["redis"] = "down"
    status = 200 if all(v == "ok" for v in checks.values()) else 503
    return web.json_response(checks, status=status)


# --- API -----------------------------------------------------------------


async def api_recent_calls(request: web.Request) -> web.Response:
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 500)
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "limit must be an integer"}', content_type="application/json"
        ) from None
    calls = await PostgresCallStore(request.app[POOL]).recent_calls(limit)
    shown = [{name: call.get(name) for name in CALL_FIELDS} for call in calls]
    for call in shown:
        call["caller_number"] = mask_phone(call["caller_number"] or "")
    return web.json_response({"calls": shown}, dumps=_dumps)


def start_of_today(now: datetime | None = None) -> datetime:
    """Midnight of the current day in the city (an aware datetime)."""
    local = (now or datetime.now(CITY_TZ)).astimezone(CITY_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def api_today(request: web.Request) -> web.Response:
    """Today's figures per queue (the city's day).

    The service levels are Asterisk's own, so the wallboard agrees with
    ``queue show``: ``service_level`` (SL) is answered within ``SL_SECONDS`` ÷
    answered; ``service_level2`` (SL2) is (answered within + abandoned within) ÷
    (answered + abandoned). ``None`` when the divisor is zero.
    """
    since = start_of_today()
    rows = await request.app[POOL].fetch(
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
        SL_SECONDS,
    )
    queues = []
    for row in rows:
        item = dict(row.items())
        answered, abandoned = item["answered"], item["abandoned"]
        within = item["answered_within_sl"]
        item["service_level"] = round(100 * within / answered, 1) if answered else None
        item["service_level2"] = (
            round(100 * (within + item.pop("abandoned_within_sl")) / (answered + abandoned), 1)
            if answered + abandoned
            else None
        )
        queues.append(item)
    return web.json_response(
        {"since": since.isoformat(), "sl_seconds": SL_SECONDS, "queues": queues}, dumps=_dumps
    )


async def api_queues(request: web.Request) -> web.Response:
    raw = await request.app[REDIS].get(QUEUES_KEY)
    empty: dict[str, Any] = {"queues": [], "at": None}
    if not raw:
        return web.json_response(empty)
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("web_queues_unreadable", key=QUEUES_KEY)
        return web.json_response(empty)
    return web.json_response(data if isinstance(data, dict) else empty)


async def ws_live(request: web.Request) -> web.WebSocketResponse:
    """Forward the live channel to the browser until either side goes away.

    The subscription is made before the handshake completes, so nothing published after
    the browser sees the socket open is missed (the page reloads its data on open).
    """
    pubsub = request.app[REDIS].pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(LIVE_CHANNEL)
    except (OSError, aioredis.RedisError) as exc:
        with contextlib.suppress(OSError, aioredis.RedisError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        log.warning("web_live_unavailable", error=f"{type(exc).__name__}: {exc}")
        raise web.HTTPServiceUnavailable(text='{"error": "live_feed_unavailable"}',
                                         content_type="application/json") from None
    ws = web.WebSocketResponse(heartbeat=30)
    try:
        await ws.prepare(request)

        async def forward() -> None:
            while not ws.closed:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                    await ws.send_str(text)

        async def forward_then_close() -> None:
            try:
                await forward()
            except (OSError, aioredis.RedisError) as exc:  # Redis gone: let the page reconnect
                log.warning("web_live_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                if not ws.closed:
                    await ws.close()

        forwarder = asyncio.create_task(forward_then_close())
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            await cancel_and_wait(forwarder)
    finally:
        with contextlib.suppress(OSError, aioredis.RedisError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    return ws


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def build_web_app(pool: asyncpg.Pool, redis: aioredis.Redis) -> web.Application:
    app = web.Application(middlewares=[auth_middleware], client_max_size=64 * 1024)
    app[POOL] = pool
    app[REDIS] = redis
    app[SESSIONS] = SessionStore(redis)
    roles: dict[str, tuple[str, ...]] = {}

    def route(method: str, path: str, handler: Handler, allowed: tuple[str, ...]) -> None:
        app.router.add_route(method, path, handler)
        roles[path] = allowed

    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/healthz", healthz)
    route("POST", "/logout", logout, EVERYONE)
    route("GET", "/", home, EVERYONE)
    route("GET", "/wallboard", wallboard, WATCHERS)
    route("GET", "/api/calls/recent", api_recent_calls, WATCHERS)
    route("GET", "/api/stats/today", api_today, WATCHERS)
    route("GET", "/api/queues", api_queues, WATCHERS)
    route("GET", "/ws/live", ws_live, WATCHERS)
    app[ROUTE_ROLES] = roles
    return app


_FORBIDDEN_TEXT = "This page is not available for your role."
_NOTHING_YET_TEXT = "You are signed in. There is no web page for your role yet."


def _message_html(title: str, text: str, who: Principal) -> str:
    return MESSAGE_HTML.replace("{{title}}", escape(title)).replace(
        "{{text}}", escape(text)
    ).replace("{{name}}", escape(f"{who.display_name} ({who.role})"))


def _login_html(error: str) -> str:
    note = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return LOGIN_HTML.replace("{{error}}", note)


# The head of the small light pages (sign-in, messages): one card in the middle.
_CARD_PAGE_HEAD = """<!doctype html>
<html lang="uk"><head><meta charset="utf-8"><title>{{title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;background:#f3f5f8;display:flex;justify-content:center;
align-items:center;height:100vh;margin:0}
body>form,body>div{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 2px 8px #0002;
min-width:18rem}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}
.error{color:#b00020}
</style></head><body>"""

LOGIN_HTML = _CARD_PAGE_HEAD.replace("{{title}}", "1551 — вхід") + """
<form method="post" action="/login">
<h1>Контакт-центр 1551</h1>{{error}}
<label for="login">Login</label><input id="login" name="login" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></body></html>"""

WALLBOARD_HTML = """<!doctype html>
<html lang="uk"><head><meta charset="utf-8"><title>1551 — wallboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#0f172a;color:#e2e8f0}
header{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1.2rem;
background:#1e293b}h1{font-size:1.2rem;margin:0}
main{padding:1rem 1.2rem}section{margin-bottom:1.4rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#1e293b;border-radius:8px;padding:.8rem 1rem;min-width:11rem}
.card h3{margin:0 0 .4rem;font-size:1rem;color:#93c5fd}.big{font-size:1.8rem;font-weight:600}
table{border-collapse:collapse;width:100%}th,td{padding:.35rem .5rem;text-align:left;
border-bottom:1px solid #334155;font-size:.9rem}
.answered{color:#86efac}.abandoned{color:#fca5a5}.ivr_only{color:#fde68a}
.empty{color:#94a3b8;font-style:italic}
h2{font-size:1.05rem;color:#cbd5e1;margin:.2rem 0 .6rem}.phone{font-variant-numeric:tabular-nums}
#live{font-size:.8rem;color:#94a3b8}button{background:#334155;color:#e2e8f0;border:0;
padding:.3rem .8rem;border-radius:4px}
</style></head><body>
<header><h1>Контакт-центр 1551 · wallboard</h1>
<div><span id="live">connecting…</span> · {{name}}
<form method="post" action="/logout" style="display:inline"><button>Sign out</button></form>
</div></header>
<main>
<section><h2>Queues now</h2><div class="cards" id="queues"></div></section>
<section><h2>Today</h2><table id="today"><thead><tr><th>Queue</th><th>Offered</th>
<th>Answered</th><th>Abandoned</th><th>IVR only</th><th>SL 20 s</th><th>SL2 20 s</th>
<th>ASA, s</th><th>Avg talk, s</th></tr></thead><tbody></tbody></table></section>
<section><h2>Recent calls</h2><table id="calls"><thead><tr><th>Started</th><th>Caller</th>
<th>IVR</th><th>Queue</th><th>Wait, s</th><th>Talk, s</th><th>Operator</th><th>Outcome</th>
</tr></thead><tbody></tbody></table></section>
</main>
<script>
const esc = s => String(s ?? '').replace(/[&<>"']/g,
  c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const clock = iso => iso ? new Date(iso).toLocaleTimeString('uk-UA', {hour12: false}) : '';
const num = v => v === null || v === undefined ? '—' : esc(v);
async function getJson(url) {
  const r = await fetch(url, {credentials: 'same-origin'});
  if (r.status === 401) { location.href = '/login'; throw new Error('signed out'); }
  return r.json();
}
async function refreshQueues() {
  const data = await getJson('/api/queues');
  document.getElementById('queues').innerHTML = (data.queues || []).map(q =>
    `<div class="card" data-queue="${esc(q.queue)}"><h3>${esc(q.queue)}</h3>
     <div class="big">${esc(q.callers)}</div>waiting · longest ${esc(q.longest_hold)} s<br>
     ${esc(q.available)}/${esc(q.logged_in)} operators available</div>`).join('');
}
async function refreshToday() {
  const data = await getJson('/api/stats/today');
  document.querySelector('#today tbody').innerHTML = data.queues.length ? data.queues.map(q => {
    const pct = v => v === null ? '—' : Math.round(v) + '%';
    return `<tr data-queue="${esc(q.queue)}"><td>${esc(q.queue)}</td><td>${num(q.offered)}</td>
      <td>${num(q.answered)}</td><td>${num(q.abandoned)}</td><td>${num(q.ivr_only)}</td>
      <td>${pct(q.service_level)}</td><td>${pct(q.service_level2)}</td><td>${num(q.asa)}</td>
      <td>${num(q.avg_talk)}</td></tr>`;}).join('')
    : '<tr><td colspan="9" class="empty">No calls today yet</td></tr>';
}
async function refreshCalls() {
  const data = await getJson('/api/calls/recent?limit=25');
  document.querySelector('#calls tbody').innerHTML = data.calls.length ? data.calls.map(c =>
    `<tr data-call-key="${esc(c.call_key)}"><td>${esc(clock(c.started_at))}</td>
     <td><span class="phone">${esc(c.caller_number)}</span> ${esc(c.caller_name)}</td>
     <td>${esc(c.ivr_choice)}</td><td>${esc(c.queue)}</td><td>${num(c.wait_seconds)}</td>
     <td>${num(c.talk_seconds)}</td><td>${esc(c.operator_name)}</td>
     <td class="${esc(c.outcome)}">${esc(c.outcome)}</td></tr>`).join('')
    : '<tr><td colspan="8" class="empty">No calls yet</td></tr>';
}
function refreshAll() { refreshQueues(); refreshToday(); refreshCalls(); }
let pending = null;
function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') +
                           location.host + '/ws/live');
  ws.onopen = () => { document.getElementById('live').textContent = 'live'; refreshAll(); };
  ws.onmessage = ev => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { msg = {}; }
    if (msg.type === 'queues') { refreshQueues(); return; }
    clearTimeout(pending); pending = setTimeout(() => { refreshToday(); refreshCalls(); }, 300);
  };
  ws.onclose = () => { document.getElementById('live').textContent = 'reconnecting…';
                       setTimeout(connect, 2000); };
}
connect(); setInterval(refreshAll, 30000);
</script></body></html>"""

MESSAGE_HTML = _CARD_PAGE_HEAD.replace("{{title}}", "{{title}} — 1551") + """<div>
<h1>{{title}}</h1><p>{{text}}</p><p>{{name}}</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
</div></body></html>"""
