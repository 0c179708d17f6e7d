"""The web application factory: every module's routes, one role table, the
middlewares (errors, browser protections, sign-in) and the live feed's hub."""

from __future__ import annotations

import hashlib
import hmac

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from crm_sync.people import PasswordChecker
from hotline.core.health import Readiness
from hotline.web import (
    announcements,
    auth,
    call_panel,
    campaigns,
    crm_webhook,
    dashboard,
    delivery_reports,
    desk,
    executor,
    guard,
    informing,
    open311,
    openapi,
    ops,
    outbox_admin,
    reports,
    routing_admin,
    wallboard,
)
from hotline.web.common import (
    CSRF_KEY,
    OPTIONS,
    PASSWORDS,
    POOL,
    REDIS,
    ROUTE_ROLES,
    SESSIONS,
    Route,
)
from hotline.web.limits import LIMITER, LoginLimiter
from hotline.web.live import HUB, LiveHub, bounded_client
from hotline.web.options import WebOptions
from hotline.web.sessions import SessionStore

#: The web modules; a new page or API is one module with its ``ROUTES``.
MODULES = (auth, ops, wallboard, open311, openapi, executor, routing_admin, delivery_reports,
           crm_webhook, campaigns, outbox_admin, informing, dashboard, announcements, call_panel,
           reports, desk)
STATIC_PREFIX = "/static/"


def build_web_app(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    session_key: bytes,
    options: WebOptions | None = None,
    *,
    readiness: Readiness | None = None,
    metrics_access: ops.MetricsAccess | None = None,
) -> web.Application:
    """``session_key`` signs sessions and CSRF tokens: the same in every web process
    of a deployment, never stored in Redis (``hotline.app.web_session_key``).

    ``redis`` says where Redis is: the web opens its own bounded pool to it (requests
    wait for a connection rather than fail, and a storm of them cannot take the
    connections the other roles of the process use) and one connection for the
    live feed's subscriber."""
    options = options or WebOptions()
    redis = bounded_client(redis, options.redis_connections, options.redis_wait_seconds)
    app = web.Application(
        middlewares=[auth.errors_middleware, guard.guard_middleware, auth.auth_middleware],
        client_max_size=64 * 1024,
    )
    app[POOL] = pool
    app[REDIS] = redis
    app[OPTIONS] = options
    ops.configure(app, readiness, metrics_access)
    app[SESSIONS] = SessionStore(redis, _derive(session_key, "sessions"))
    app[CSRF_KEY] = _derive(session_key, "csrf")
    app[LIMITER] = LoginLimiter(
        redis, _derive(session_key, "sign-in-limits"),
        per_login=options.login_failures_per_login,
        per_address=options.login_failures_per_address,
        window_seconds=options.login_window_seconds,
    )
    passwords = PasswordChecker(options.hash_workers, options.hash_waiting)
    app[PASSWORDS] = passwords
    hub = LiveHub(redis, app[SESSIONS], pool, options)
    app[HUB] = hub
    app.on_startup.append(hub.start)
    app.on_shutdown.append(hub.stop)  # websockets closed before the runner waits for handlers

    async def close(_app: web.Application) -> None:
        passwords.close()
        await redis.aclose()

    app.on_cleanup.append(close)
    app.on_response_prepare.append(guard.add_security_headers)
    roles: dict[str, tuple[str, ...]] = {}
    routes: list[Route] = [route for module in MODULES for route in module.ROUTES]
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        # () marks a route public on purpose; a path absent from the table is refused.
        roles[route.path] = tuple(route.roles) if route.roles is not None else ()
    static = app.router.add_static(STATIC_PREFIX, _static_dir(), append_version=False)
    roles[static.canonical] = ()  # CSS and JS of the sign-in page too: nothing secret
    app[ROUTE_ROLES] = roles
    return app


def _derive(key: bytes, purpose: str) -> bytes:
    """One key per use, so that no token of one kind is valid as another."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def _static_dir() -> str:
    from importlib import resources

    return str(resources.files("hotline.web").joinpath("static"))
