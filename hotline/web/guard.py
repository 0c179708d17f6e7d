"""Browser protections: who the client is behind a proxy, Origin and CSRF checks on
every state-changing request and websocket, and security headers on every response.

CSRF tokens are a signed double-submit: a random nonce in an HttpOnly cookie, and
in the form an HMAC of that nonce and the session cookie under a server key. A
page of another site can neither read the nonce nor compute the token, and a
token from one session does not work in another.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from http.cookies import SimpleCookie
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from hotline.core.errors import Forbidden, InvalidInput
from hotline.core.logs import get_logger
from hotline.web.common import CSRF_KEY, OPTIONS, Handler

CSRF_COOKIE = "hotline_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "hotline_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

#: No inline script or style anywhere: every page's JS and CSS are files under /static/.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it Chromium sends "Origin: null" on our own form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000"
#: Pages our own pages may frame (the desk embeds the in-call panel in an iframe);
#: matched on the route that answers. Every other page stays unframeable.
FRAMEABLE_ROUTES = frozenset({"/desk/call/{uniqueid}"})
FRAMEABLE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY.replace(
        "frame-ancestors 'none'", "frame-ancestors 'self'"),
    "X-Frame-Options": "SAMEORIGIN",
}
#: Pages that frame those (default-src 'none' would block any iframe): the operator's
#: desk. They may frame our own origin only, and only the routes above allow it.
FRAME_HOST_ROUTES = frozenset({"/desk"})
FRAME_HOST_POLICY = CONTENT_SECURITY_POLICY.replace(
    "default-src 'none';", "default-src 'none'; frame-src 'self';")

#: Routes whose clients are servers authenticated by an ``api_key`` in the request
#: (Open311), a signature (the SMS gateway's webhooks) or a token in the link (opt-out).
#: They read no cookie, so another site's page has nothing ambient to
#: borrow there, and a CSRF token (bound to a cookie) cannot be asked of them. Matched
#: on the route that answers (not on the raw path), so no other route is spared.
API_KEY_ROUTES = ("/open311/v2/", "/webhooks/sms/", "/webhooks/crm/", "/notifications/opt-out")

_NEW_NONCE: Any = web.RequestKey("csrf_nonce", str) if hasattr(web, "RequestKey") else "csrf_nonce"
log = get_logger("hotline.web.guard")


class CsrfFailed(Forbidden):
    error_id = "csrf_failed"


class OriginRefused(Forbidden):
    error_id = "origin_refused"


# --- the client behind a proxy ------------------------------------------------


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(request: web.Request, address: str | None) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in net for net in request.app[OPTIONS].proxy_networks)


def client_address(request: web.Request) -> str | None:
    """The browser's address: the peer, or behind trusted proxies the right-most
    ``X-Forwarded-For`` entry that is not one of them (what a client prepends is
    not believed)."""
    peer = request.remote
    if not _trusted(request, peer):
        return peer
    hops = [h.strip() for v in request.headers.getall(hdrs.X_FORWARDED_FOR, ())
            for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(request, hop):
            return hop if _ip(hop) is not None else peer
    return hops[0] if hops else peer


def is_secure(request: web.Request) -> bool:
    """HTTPS as the browser sees it: TLS here, or ``X-Forwarded-Proto`` from a
    trusted proxy (which must set the header, not pass on the client's)."""
    if request.secure:
        return True
    if not _trusted(request, request.remote):
        return False
    proto = request.headers.get(hdrs.X_FORWARDED_PROTO, "")
    return proto.split(",")[0].strip().lower() == "https"


def own_origin(request: web.Request) -> str:
    return f"{'https' if is_secure(request) else 'http'}://{request.host}".lower()


def _origin_allowed(request: web.Request, origin: str) -> bool:
    origin = origin.strip().rstrip("/").lower()
    return origin == own_origin(request) or origin in request.app[OPTIONS].origins


# --- CSRF ---------------------------------------------------------------------


def _nonce(request: web.Request) -> str:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(cookie) <= 100:
        return cookie
    new: str | None = request.get(_NEW_NONCE)
    if new is None:
        new = secrets.token_urlsafe(32)
        request[_NEW_NONCE] = new
    return new


def csrf_token(request: web.Request, session_token: str | None = None) -> str:
    """The token for a form on the page being rendered (bound to the session cookie,
    or to ``session_token`` when a response is about to set a new one)."""
    session = request.cookies.get(SESSION_COOKIE, "") if session_token is None else session_token
    message = f"{_nonce(request)}\n{session}".encode()
    return hmac.new(request.app[CSRF_KEY], message, hashlib.sha256).hexdigest()


async def _submitted_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.content_type not in FORM_TYPES:
        return ""
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # bad encoding, charset, multipart
        raise InvalidInput("The form could not be read; please try again.") from None
    value = form.get(CSRF_FIELD, "")
    return value if isinstance(value, str) else ""


def _csrf_ok(request: web.Request, submitted: str) -> bool:
    if CSRF_COOKIE not in request.cookies or not submitted:
        return False
    return hmac.compare_digest(submitted, csrf_token(request))


# --- the middleware and the headers ---------------------------------------------


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cross-site requests that change state, or open the live feed, are refused."""
    upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    if request.method not in SAFE_METHODS or upgrade:
        origin = request.headers.get(hdrs.ORIGIN)
        # Without an Origin the client is no browser (browsers send one on every POST
        # and websocket), so no other site's page speaks through it.
        if origin is not None and not _origin_allowed(request, origin):
            log.warning("web_origin_refused", origin=origin[:200], path=request.path,
                        client=client_address(request))
            raise OriginRefused("requests from another site are not accepted")
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise OriginRefused("requests from another site are not accepted")
    if request.method not in SAFE_METHODS and not _api_key_route(request):
        if not _csrf_ok(request, await _submitted_token(request)):
            log.info("web_csrf_refused", path=request.path, client=client_address(request))
            raise CsrfFailed("The form has expired; please reload the page and try again.")
    return await handler(request)


def _api_key_route(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.startswith(API_KEY_ROUTES)


def _route_in(request: web.Request, paths: frozenset[str]) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in paths


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, errors and static files included."""
    if _route_in(request, FRAMEABLE_ROUTES):
        for name, value in FRAMEABLE_HEADERS.items():
            response.headers.setdefault(name, value)
    elif _route_in(request, FRAME_HOST_ROUTES):
        response.headers.setdefault("Content-Security-Policy", FRAME_HOST_POLICY)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    secure = is_secure(request)
    if secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    nonce = request.get(_NEW_NONCE)
    if nonce is not None:
        # Response cookies are already headers when this hook runs: add the header.
        jar: SimpleCookie = SimpleCookie()
        jar[CSRF_COOKIE] = nonce
        morsel = jar[CSRF_COOKIE]
        morsel.update({"httponly": "yes", "samesite": "Strict", "path": "/"})
        if secure:
            morsel["secure"] = "yes"
        response.headers.add(hdrs.SET_COOKIE, morsel.OutputString())
