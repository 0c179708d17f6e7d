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
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

from crm_sync.call_store import PostgresCallStore
from crm_sync.operators import authenticate
from cti_bridge.auth import Principal, SessionStore
from hotline.logs import get_logger

LIVE_CHANNEL = "hotline:live"
QUEUES_KEY = "hotline:queues"
COOKIE = "hotline_session"
WATCHERS = ("supervisor", "admin", "leadership")
PUBLIC = frozenset({"/login", "/healthz"})

POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
SESSIONS = web.AppKey("sessions", SessionStore)
ROUTE_ROLES = web.AppKey("route_roles", dict)

log = get_logger("cti_bridge.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _principal(request: web.Request) -> Principal:
    who: Principal = request["principal"]
    return who


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    who = await request.app[SESSIONS].get(token)
    if who is None:
        if request.path.startswith(("/api/", "/ws/")):
            raise web.HTTPUnauthorized(text='{"error": "not_signed_in"}',
                                       content_type="application/json")
        raise web.HTTPFound("/login")
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    allowed = request.app[ROUTE_ROLES].get(canonical)
    if allowed is None or who.role not in allowed:
        log.info("web_forbidden", login=who.login, role=who.role, path=request.path)
        raise web.HTTPForbidden(text='{"error": "forbidden"}', content_type="application/json")
    request["principal"] = who
    return await handler(request)


# --- pages ---------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=_login_html(""), content_type="text/html")


async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    login = str(form.get("login", "")).strip()
    password = str(form.get("password", ""))
    if not login or not password:
        return web.Response(
            text=_login_html("Enter your login and password."),
            content_type="text/html",
            status=400,
        )
    who = await authenticate(request.app[POOL], login, password)
    if who is None:
        log.info("web_login_failed", login=login)
        return web.Response(
            text=_login_html("Wrong login or password."), content_type="text/html", status=401
        )
    token = await request.app[SESSIONS].create(who)
    log.info("web_login", login=who.login, role=who.role)
    response = web.HTTPFound("/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=12 * 3600)
    raise response


async def logout(request: web.Request) -> web.Response:
    await request.app[SESSIONS].delete(request.cookies.get(COOKIE, ""))
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE)
    raise response


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/wallboard")


async def wallboard(request: web.Request) -> web.Response:
    who = _principal(request)
    html = WALLBOARD_HTML.replace("{{name}}", escape(who.display_name))
    return web.Response(text=html, content_type="text/html")


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
    return web.json_response({"calls": calls}, dumps=_dumps)


async def api_today(request: web.Request) -> web.Response:
    """Today's figures per queue; the service level uses each queue's 20 s threshold."""
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await request.app[POOL].fetch(
        """
        SELECT coalesce(queue, '(ivr)') AS queue,
               count(*) AS offered,
               count(*) FILTER (WHERE outcome = 'answered') AS answered,
               count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
               count(*) FILTER (WHERE outcome = 'ivr_only') AS ivr_only,
               count(*) FILTER (WHERE outcome = 'answered' AND wait_seconds <= 20)
                   AS answered_within_sl,
               round(avg(wait_seconds) FILTER (WHERE outcome = 'answered'), 1) AS asa,
               round(avg(talk_seconds) FILTER (WHERE outcome = 'answered'), 1) AS avg_talk
          FROM calls
         WHERE started_at >= $1 AND outcome <> 'in_progress'
         GROUP BY 1 ORDER BY 1
        """,
        since,
    )
    return web.json_response({"since": since.isoformat(), "queues": [dict(r) for r in rows]},
                             dumps=_dumps)


async def api_queues(request: web.Request) -> web.Response:
    raw = await request.app[REDIS].get(QUEUES_KEY)
    return web.json_response(json.loads(raw) if raw else {"queues": [], "at": None})


async def ws_live(request: web.Request) -> web.WebSocketResponse:
    """Forward the live channel to the browser until either side goes away."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    pubsub = request.app[REDIS].pubsub()
    await pubsub.subscribe(LIVE_CHANNEL)

    async def forward() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                data = message["data"]
                await ws.send_str(data.decode() if isinstance(data, bytes) else str(data))

    forwarder = asyncio.create_task(forward())
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError, aioredis.RedisError, ConnectionError):
            await forwarder
        with contextlib.suppress(aioredis.RedisError, ConnectionError):
            await pubsub.aclose()
    return ws


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
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

    everyone = ("operator", "supervisor", "admin", "executor", "leadership")
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/healthz", healthz)
    route("POST", "/logout", logout, everyone)
    route("GET", "/", home, everyone)
    route("GET", "/wallboard", wallboard, WATCHERS)
    route("GET", "/api/calls/recent", api_recent_calls, WATCHERS)
    route("GET", "/api/stats/today", api_today, WATCHERS)
    route("GET", "/api/queues", api_queues, WATCHERS)
    route("GET", "/ws/live", ws_live, WATCHERS)
    app[ROUTE_ROLES] = roles
    return app


def _login_html(error: str) -> str:
    note = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return LOGIN_HTML.replace("{{error}}", note)


LOGIN_HTML = """<!doctype html>
<html lang="uk"><head><meta charset="utf-8"><title>1551 — вхід</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;background:#f3f5f8;display:flex;justify-content:center;
align-items:center;height:100vh;margin:0}
form{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 2px 8px #0002;min-width:18rem}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}
.error{color:#b00020}
</style></head><body>
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
<th>Answered</th><th>Abandoned</th><th>IVR only</th><th>SL 20 s</th><th>ASA, s</th>
<th>Avg talk, s</th></tr></thead><tbody></tbody></table></section>
<section><h2>Recent calls</h2><table id="calls"><thead><tr><th>Started</th><th>Caller</th>
<th>IVR</th><th>Queue</th><th>Wait, s</th><th>Talk, s</th><th>Operator</th><th>Outcome</th>
</tr></thead><tbody></tbody></table></section>
</main>
<script>
const esc = s => String(s ?? '').replace(/[&<>"']/g,
  c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const maskPhone = p => p && p.length > 4 ? p.slice(0, p.length - 4) + '**' + p.slice(-2) : p;
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
  document.querySelector('#today tbody').innerHTML = data.queues.map(q => {
    const sl = q.answered ? Math.round(100 * q.answered_within_sl / q.answered) + '%' : '—';
    return `<tr><td>${esc(q.queue)}</td><td>${q.offered}</td><td>${q.answered}</td>
      <td>${q.abandoned}</td><td>${q.ivr_only}</td><td>${sl}</td><td>${esc(q.asa)}</td>
      <td>${esc(q.avg_talk)}</td></tr>`;}).join('');
}
async function refreshCalls() {
  const data = await getJson('/api/calls/recent?limit=25');
  document.querySelector('#calls tbody').innerHTML = data.calls.map(c =>
    `<tr data-call-key="${esc(c.call_key)}"><td>${esc((c.started_at || '').slice(11, 19))}</td>
     <td>${esc(maskPhone(c.caller_number))} ${esc(c.caller_name)}</td>
     <td>${esc(c.ivr_choice)}</td><td>${esc(c.queue)}</td><td>${esc(c.wait_seconds)}</td>
     <td>${esc(c.talk_seconds)}</td><td>${esc(c.operator_name)}</td>
     <td class="${esc(c.outcome)}">${esc(c.outcome)}</td></tr>`).join('');
}
function refreshAll() { refreshQueues(); refreshToday(); refreshCalls(); }
let pending = null;
function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') +
                           location.host + '/ws/live');
  ws.onopen = () => { document.getElementById('live').textContent = 'live'; refreshAll(); };
  ws.onmessage = ev => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'queues') { refreshQueues(); return; }
    clearTimeout(pending); pending = setTimeout(() => { refreshToday(); refreshCalls(); }, 300);
  };
  ws.onclose = () => { document.getElementById('live').textContent = 'reconnecting…';
                       setTimeout(connect, 2000); };
}
refreshAll(); connect(); setInterval(refreshAll, 30000);
</script></body></html>"""
