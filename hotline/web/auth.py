"""Sign-in, sign-out, and the middlewares that answer errors and authenticate and
authorise every route by role (only routes declared public are reachable
without a session).

A session holds while its Redis row is genuine (see :mod:`hotline.web.sessions`)
and its person is active with the session epoch it was made under: one indexed
query per request, so deactivation, demotion and password resets end sessions
at once.
"""

from __future__ import annotations

from html import escape

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crm_sync.people import (
    MAX_LOGIN,
    MAX_PASSWORD,
    Account,
    PasswordCheckBusy,
    SignInCheck,
    account_states,
    check_sign_in,
    find_account,
    is_valid_login,
    record_sign_in,
)
from hotline.core.errors import Forbidden, HotlineError, NotSignedIn, UnavailableError
from hotline.core.logs import get_logger
from hotline.core.people import EVERYONE, EXECUTOR, LEADERSHIP, OPERATOR, WATCHERS, Principal
from hotline.web.common import (
    PASSWORDS,
    POOL,
    PRINCIPAL,
    ROUTE_ROLES,
    SESSION,
    SESSIONS,
    Handler,
    Route,
    error_page,
    error_response,
    html_response,
    is_api,
    principal,
    render,
    session,
)
from hotline.web.guard import SESSION_COOKIE, client_address, csrf_token, is_secure
from hotline.web.limits import LIMITER, SignInThrottled
from hotline.web.live import HUB
from hotline.web.sessions import SESSION_TTL_SECONDS, Session

COOKIE = SESSION_COOKIE
log = get_logger("hotline.web.auth")

_FORBIDDEN_TEXT = "This page is not available for your role."
_NOTHING_YET_TEXT = "You are signed in. There is no web page for your role yet."
_WRONG = "Wrong login or password."
#: Failures of what we depend on, whatever raised them: a clear 503, never a 500.
BACKEND_ERRORS = (
    aioredis.RedisError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, ConnectionRefusedError,
    TimeoutError,
)


class BackendUnavailable(UnavailableError):
    retry_after = 5


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors of the tree become JSON on the API and pages elsewhere; a backend that
    is down or out of connections is a 503, not a 500."""
    try:
        return await handler(request)
    except HotlineError as error:
        return _error_answer(request, error)
    except BACKEND_ERRORS as exc:
        log.warning("web_backend_unavailable", path=request.path,
                    error=f"{type(exc).__name__}: {exc}")
        return _error_answer(
            request, BackendUnavailable("the service is temporarily unavailable; try again shortly")
        )


def _error_answer(request: web.Request, error: HotlineError) -> web.Response:
    if is_api(request):
        return error_response(error)
    if request.path == "/login":  # the person is at the form: show it again, with why
        response = _login_page(request, error.message, error.http_status)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response
    return error_page(error)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is signed in, and may they use this route?"""
    allowed = request.app[ROUTE_ROLES].get(_canonical(request))
    if allowed == ():  # public on purpose
        return await handler(request)
    current = await current_session(request)
    if current is None:
        # Also for unknown paths: who is not signed in learns nothing about the routes.
        if is_api(request):
            raise NotSignedIn("sign in first")
        raise web.HTTPFound("/login")
    match_error = request.match_info.http_exception
    if match_error is not None:  # 404 / 405 for a signed-in user, not a misleading 403
        raise match_error
    who = current.who
    if allowed is None or who.role not in allowed:
        log.info("web_forbidden", login=who.login, role=who.role, path=request.path)
        if is_api(request):
            raise Forbidden("not allowed for your role")
        raise web.HTTPForbidden(text=message_page(request, "Forbidden", _FORBIDDEN_TEXT, who),
                                content_type="text/html")
    request[PRINCIPAL] = who
    request[SESSION] = current
    return await handler(request)


async def current_session(request: web.Request) -> Session | None:
    """The browser's session if it is genuine and its person's access is unchanged."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    current = await request.app[SESSIONS].get(token)
    if current is None:
        return None
    state = (await account_states(request.app[POOL], [current.who.login])).get(current.who.login)
    if state is not None and state.active and state.session_epoch == current.epoch:
        return current
    log.info("web_session_revoked", login=current.who.login,
             reason="gone" if state is None else "inactive" if not state.active else "changed")
    await request.app[SESSIONS].delete(token)
    await request.app[HUB].announce("user_changed")
    return None


def _canonical(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def message_page(request: web.Request, title: str, text: str, who: Principal) -> str:
    return render("message.html", title=title, text=text,
                  name=f"{who.display_name} ({who.role})", csrf=csrf_token(request))


def _login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    page = render("login.html", csrf=csrf_token(request))
    note = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return html_response(page.replace("{{error}}", note), status=status,
                         headers={"Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.Response:
    return _login_page(request)


async def login_submit(request: web.Request) -> web.Response:
    address = client_address(request)
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # bad encoding, charset, multipart
        return _login_page(request, "The sign-in form could not be read; please try again.", 400)
    login_field, password_field = form.get("login", ""), form.get("password", "")
    if not isinstance(login_field, str) or not isinstance(password_field, str):
        return _login_page(request, "Login and password must be text fields.", 400)
    login, password = login_field.strip(), password_field
    if not login or not password:
        return _login_page(request, "Enter your login and password.", 400)
    if not is_valid_login(login):
        # What was typed is not logged: it may be a password typed into the wrong field.
        log.info("web_login_rejected", reason="malformed_login", client=address)
        return _login_page(
            request, f"A login is up to {MAX_LOGIN} letters, digits, '.', '-' or '_'.", 400
        )
    pool = request.app[POOL]
    limiter = request.app[LIMITER]
    try:
        reservation = await limiter.reserve(login, address)
    except SignInThrottled as refused:
        await _throttled(request, login, address, refused)
        raise
    if len(password) > MAX_PASSWORD:  # no one has such a password; spare the scrypt
        account = await find_account(pool, login)
        result = SignInCheck(account, False, "unknown_login" if account is None else "too_long")
    else:
        try:
            result = await check_sign_in(pool, request.app[PASSWORDS], login, password)
        except PasswordCheckBusy:
            await limiter.give_back(reservation)
            log.warning("web_login_busy", client=address)
            raise
    if not result.ok or result.account is None:
        await _audit(request, result.account, address, "failure", result.reason)
        known = {"login": result.account.login} if result.account is not None else {}
        log.info("web_login_failed", reason=result.reason, client=address, **known)
        return _login_page(request, _WRONG, 401)
    account = result.account
    await limiter.succeeded(reservation)
    sessions = request.app[SESSIONS]
    old = request.cookies.get(COOKIE, "")
    if old:  # no stale session left behind
        await sessions.delete(old)
        await request.app[HUB].announce("session_ended")
    token = await sessions.create(account.principal, account.session_epoch)
    await _audit(request, account, address, "success", "ok")
    log.info("web_login", login=account.login, role=account.role, client=address)
    response = web.HTTPFound("/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=is_secure(request), max_age=SESSION_TTL_SECONDS)
    raise response


async def _throttled(
    request: web.Request, login: str, address: str | None, refused: SignInThrottled
) -> None:
    log.info("web_login_throttled", scope=refused.scope, client=address,
             retry_after=refused.retry_after)
    if refused.first:  # one audit row when a limit trips, not one per refused guess
        account = await find_account(request.app[POOL], login)
        await _audit(request, account, address, "refused", f"too_many_failures_{refused.scope}")


async def _audit(
    request: web.Request, account: Account | None, address: str | None, outcome: str,
    reason: str,
) -> None:
    await record_sign_in(request.app[POOL], account=account, address=address, outcome=outcome,
                         reason=reason)


async def logout(request: web.Request) -> web.Response:
    await request.app[SESSIONS].delete_id(session(request).sid)
    await request.app[HUB].announce("session_ended")  # its websockets close too
    log.info("web_logout", login=principal(request).login, client=client_address(request))
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE, path="/", samesite="Strict")
    raise response


async def home(request: web.Request) -> web.Response:
    who = principal(request)
    if who.role == LEADERSHIP:
        raise web.HTTPFound("/dashboard")
    if who.role in WATCHERS:
        raise web.HTTPFound("/wallboard")
    if who.role == EXECUTOR:
        raise web.HTTPFound("/executor")
    if who.role == OPERATOR:
        raise web.HTTPFound("/desk")
    return html_response(message_page(request, "1551", _NOTHING_YET_TEXT, who))


ROUTES = [
    Route("GET", "/login", login_page, None),
    Route("POST", "/login", login_submit, None),
    Route("POST", "/logout", logout, EVERYONE),
    Route("GET", "/", home, EVERYONE),
]
