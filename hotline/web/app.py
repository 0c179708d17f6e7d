"""The web application factory: every module's routes, one role table."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from hotline.core.health import Readiness
from hotline.web import auth, ops, wallboard
from hotline.web.common import POOL, REDIS, ROUTE_ROLES, SESSIONS, Route
from hotline.web.sessions import SessionStore

#: The web modules; a new page or API is one module with its ``ROUTES``.
MODULES = (auth, ops, wallboard)
STATIC_PREFIX = "/static/"


def build_web_app(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    *,
    readiness: Readiness | None = None,
    metrics_access: ops.MetricsAccess | None = None,
) -> web.Application:
    app = web.Application(middlewares=[auth.auth_middleware], client_max_size=64 * 1024)
    app[POOL] = pool
    app[REDIS] = redis
    ops.configure(app, readiness, metrics_access)
    app[SESSIONS] = SessionStore(redis)
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


def _static_dir() -> str:
    from importlib import resources

    return str(resources.files("hotline.web").joinpath("static"))
