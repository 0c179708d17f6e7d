"""Operations endpoints, public on purpose (no browser session):

- ``/healthz``: cheap, the database and Redis answer;
- ``/readyz``: every part this process runs is ready (200), or which are not (503);
- ``/metrics``: Prometheus text, only from allowed addresses or with the bearer token.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from hotline.core import health, metrics
from hotline.core.errors import Forbidden, NotSignedIn
from hotline.core.logs import get_logger
from hotline.web.common import POOL, REDIS, Route, error_response, json_response
from hotline.web.guard import client_address

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = ("127.0.0.1/32", "::1/128")

log = get_logger("hotline.web.ops")


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read ``/metrics``: a client address in ``allow``, or the bearer ``token``.

    The address is the TCP peer's: behind a reverse proxy on this host every
    request comes from 127.0.0.1, so there the proxy must refuse ``/metrics``
    itself, or ``allow`` be emptied and the token used.
    """

    allow: tuple[IpNetwork, ...]
    token: str = ""

    @classmethod
    def parse(cls, allow: Iterable[str] = LOOPBACK, token: str = "") -> MetricsAccess:
        """``allow`` in CIDR notation (a bare address is one host); ValueError if malformed."""
        return cls(tuple(ipaddress.ip_network(a.strip(), strict=False) for a in allow), token)

    def allows_address(self, remote: str | None) -> bool:
        if not remote:  # a Unix socket, say: no address to judge
            return False
        try:
            address = ipaddress.ip_address(remote.partition("%")[0])  # no IPv6 zone
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
        return any(address in network for network in self.allow)

    def allows_token(self, authorization: str) -> bool:
        scheme, _, presented = authorization.partition(" ")
        if not self.token or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token.encode())


READINESS = web.AppKey("readiness", health.Readiness)
METRICS_ACCESS = web.AppKey("metrics_access", MetricsAccess)


def configure(
    app: web.Application,
    readiness: health.Readiness | None,
    metrics_access: MetricsAccess | None,
) -> None:
    """Without a registry from the composition root, ready means the database and
    Redis answer; without an access rule, ``/metrics`` is for this host only."""
    if readiness is None:
        readiness = health.Readiness()
        readiness.add(health.DATABASE, lambda: app[POOL].fetchval("SELECT 1"))
        readiness.add(health.REDIS, lambda: app[REDIS].ping())
    app[READINESS] = readiness
    app[METRICS_ACCESS] = metrics_access or MetricsAccess.parse()


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
    return json_response(checks, status=status)


async def readyz(request: web.Request) -> web.Response:
    """The parts' names and whether each is ready; why not goes to the log only
    (the answer is public, the reasons name hosts and ports)."""
    report = await request.app[READINESS].check()
    body = {
        "status": "ready" if report.ready else "not_ready",
        "failing": report.failing,
        "parts": {name: "ready" if ok else "not_ready" for name, ok in report.parts.items()},
    }
    response = json_response(body, status=200 if report.ready else 503)
    response.headers["Cache-Control"] = "no-store"
    return response


async def metrics_page(request: web.Request) -> web.Response:
    access = request.app[METRICS_ACCESS]
    authorization = request.headers.get("Authorization", "")
    # Behind a trusted proxy the peer is the proxy: judge the client it names.
    client = client_address(request)
    if not access.allows_address(client) and not access.allows_token(authorization):
        log.info("web_metrics_refused", client=client, token_given=bool(authorization))
        if access.token:  # a token would help: say which kind (RFC 6750)
            response = error_response(NotSignedIn("a bearer token is required for /metrics"))
            error = ', error="invalid_token"' if authorization else ""
            response.headers["WWW-Authenticate"] = f'Bearer realm="metrics"{error}'
            return response
        return error_response(Forbidden("/metrics is not available from this address"))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(metrics.REGISTRY),
                        headers={"Content-Type": content_type, "Cache-Control": "no-store"})


ROUTES = [
    Route("GET", "/healthz", healthz, None),
    Route("GET", "/readyz", readyz, None),
    Route("GET", "/metrics", metrics_page, None),
]
