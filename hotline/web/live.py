"""The live feed of one web process: ONE Redis subscriber, fanned out to every
open websocket.

Websockets hold no Redis connection of their own (100 of them used to drain the
shared pool and lock every user out), and the subscriber has a connection of its
own, outside the shared pool. Each websocket has a bounded queue; a browser too
slow to keep up is closed and reconnects (its page reloads its data on open).

Personal messages (an operator's screen-pop, their member states) come on
``hotline:desk:op:<login>``: the same subscriber listens to the pattern and gives
each only to that person's *personal* websockets (the desk), never to anyone
else's; personal websockets get nothing of the broadcast channel.

Sessions end their websockets: the sessions and people behind the open sockets
are checked again every ``recheck_seconds``, and at once when a process
announces on :data:`CONTROL_CHANNEL` that a session ended (sign-out) or a
person's access changed. Announcements only trigger the check: what closes a
socket is what Redis and the case store say, not the announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

from crm_sync.people import account_states
from hotline.core import metrics
from hotline.core.aio import cancel_and_wait, raise_if_cancelled
from hotline.core.desk import OPERATOR_CHANNEL_PATTERN, OPERATOR_CHANNEL_PREFIX
from hotline.core.errors import TooManyRequests, UnavailableError
from hotline.core.live import LIVE_CHANNEL
from hotline.core.logs import get_logger
from hotline.web.options import WebOptions
from hotline.web.sessions import SessionStore

#: Hints between web processes: ``{"type": "session_ended" | "user_changed"}``.
CONTROL_CHANNEL = "hotline:web:control"
#: Close codes the page understands: 4401 sends it to the sign-in form.
CLOSE_SIGNED_OUT = 4401
CLOSE_TOO_SLOW = 1013  # "try again later"
CLOSE_FEED_LOST = 1012  # "service restart"
CLOSE_GOING_AWAY = 1001
READY_WAIT_SECONDS = 3.0
STOP_WAIT_SECONDS = 2.0
BACKEND_ERRORS = (OSError, aioredis.RedisError, asyncpg.PostgresError, asyncpg.InterfaceError)

log = get_logger("hotline.web.live")


class LiveFeedFull(UnavailableError):
    error_id = "live_feed_full"
    retry_after = 5


@dataclass(frozen=True)
class _End:
    code: int
    reason: str


class LiveClient:
    """One open websocket: who holds it and what waits to be sent to it."""

    def __init__(self, login: str, sid: str, queue_size: int, *, personal: bool = False) -> None:
        self.login = login
        self.sid = sid
        #: A desk's socket: only this person's own messages, none of the broadcast.
        self.personal = personal
        self._queue: asyncio.Queue[str | _End] = asyncio.Queue(maxsize=queue_size)
        self.ended: _End | None = None

    def offer(self, text: str) -> None:
        if self.ended is not None:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.end(CLOSE_TOO_SLOW, "too slow")

    def end(self, code: int, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = _End(code, reason)
        while not self._queue.empty():  # what it has not got yet no longer matters
            self._queue.get_nowait()
        self._queue.put_nowait(self.ended)

    async def pump(self, ws: web.WebSocketResponse) -> None:
        """Send what arrives until told to end, then close the socket with the reason."""
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _End):
                    await ws.close(code=item.code, message=item.reason.encode())
                    return
                await ws.send_str(item)
        except ConnectionError:  # the browser went away first
            return


class LiveHub:
    def __init__(
        self, redis: aioredis.Redis, sessions: SessionStore, pool: asyncpg.Pool,
        options: WebOptions,
    ) -> None:
        self._redis = redis
        self._subscriber = _dedicated_client(redis)
        self._sessions = sessions
        self._pool = pool
        self._options = options
        self._clients: set[LiveClient] = set()
        self._per_user: Counter[str] = Counter()
        self._personal: dict[str, set[LiveClient]] = {}
        self._ready = asyncio.Event()
        self._recheck_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def count(self) -> int:
        """Open websockets in this process."""
        return len(self._clients)

    def count_for(self, login: str) -> int:
        return self._per_user[login]

    # --- lifecycle --------------------------------------------------------------

    async def start(self, _app: web.Application | None = None) -> None:
        self._tasks = [asyncio.create_task(self._subscribe_forever(), name="live-subscriber"),
                       asyncio.create_task(self._recheck_forever(), name="live-recheck")]

    async def stop(self, _app: web.Application | None = None) -> None:
        self._stopping = True
        self._end_all(CLOSE_GOING_AWAY, "server stopping")
        for task in self._tasks:
            task.cancel()
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_WAIT_SECONDS)
        if pending:
            # A cancellation swallowed where no raise_if_cancelled() looks: a closed
            # socket ends the read for sure, and the loop sees _stopping.
            await self._subscriber.connection_pool.disconnect()
            for task in pending:
                await cancel_and_wait(task)
        self._tasks = []
        await self._subscriber.aclose()

    # --- websockets -------------------------------------------------------------

    async def admit(self, login: str, sid: str, *, personal: bool = False) -> LiveClient:
        """A place for one more websocket, or an error of the tree (503 / 429)."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), READY_WAIT_SECONDS)
            except TimeoutError:
                raise UnavailableError("the live feed is not available") from None
        if len(self._clients) >= self._options.ws_per_process:
            log.warning("web_live_full", limit=self._options.ws_per_process)
            raise LiveFeedFull("the live feed is full on this server; try again shortly")
        if self._per_user[login] >= self._options.ws_per_user:
            log.info("web_live_user_limit", login=login, limit=self._options.ws_per_user)
            raise TooManyRequests(
                f"at most {self._options.ws_per_user} live connections per person; "
                "close other wallboard tabs", retry_after=5,
            )
        client = LiveClient(login, sid, self._options.ws_queue, personal=personal)
        self._clients.add(client)
        if personal:
            self._personal.setdefault(login, set()).add(client)
        self._per_user[login] += 1
        metrics.WEBSOCKET_CLIENTS.inc()
        return client

    def leave(self, client: LiveClient) -> None:
        if client in self._clients:
            self._clients.remove(client)
            metrics.WEBSOCKET_CLIENTS.dec()
            mine = self._personal.get(client.login)
            if mine is not None:
                mine.discard(client)
                if not mine:
                    del self._personal[client.login]
            self._per_user[client.login] -= 1
            if self._per_user[client.login] <= 0:
                del self._per_user[client.login]

    async def serve(
        self, request: web.Request, login: str, sid: str, *, personal: bool = False,
        greeting: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> web.WebSocketResponse:
        """Run one websocket until the browser leaves or its session ends. ``greeting``
        gives what the socket gets first (the current state), read once it is admitted
        so that nothing published meanwhile is missed."""
        client = await self.admit(login, sid, personal=personal)
        try:
            if greeting is not None:
                for text in await greeting():
                    client.offer(text)
            ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
            await ws.prepare(request)
            pump = asyncio.create_task(client.pump(ws))
            try:
                async for msg in ws:  # the page sends nothing; reading sees pings and close
                    if msg.type == WSMsgType.ERROR:
                        break
                if client.ended is not None:  # let the pump finish its close frame
                    await asyncio.wait({pump}, timeout=5)
            finally:
                await cancel_and_wait(pump)
                if not ws.closed:
                    await ws.close()
        finally:
            self.leave(client)
        return ws

    # --- announcements --------------------------------------------------------------

    async def announce(self, kind: str) -> None:
        """Tell every web process to check its websockets now (best effort: the
        periodic check catches up if Redis cannot be told)."""
        self._recheck_now.set()
        try:
            await self._redis.publish(CONTROL_CHANNEL, json.dumps({"type": kind}))
        except BACKEND_ERRORS as exc:
            log.warning("web_live_announce_failed", kind=kind, error=_describe(exc))

    # --- the subscriber ---------------------------------------------------------------

    async def _subscribe_forever(self) -> None:
        backoff = 0.5
        while not self._stopping:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LIVE_CHANNEL, CONTROL_CHANNEL)
                await pubsub.psubscribe(OPERATOR_CHANNEL_PATTERN)
                raise_if_cancelled()  # redis-py's wait_for can swallow it (Python 3.11)
                if self._stopping:
                    return
                self._ready.set()
                log.info("web_live_subscribed")
                backoff = 0.5
                while not self._stopping:
                    # Blocking, without a read timeout (fewer places for redis-py to
                    # swallow a cancellation). A dead server is an EOF or, across a
                    # network, a TCP keepalive failure.
                    message = await pubsub.get_message(timeout=None)
                    raise_if_cancelled()
                    if message is not None:
                        self._dispatch(message)
            except BACKEND_ERRORS as exc:
                if not self._stopping:
                    log.warning("web_live_lost", error=_describe(exc), retry_in=backoff)
            except Exception:  # a bug: loud, with its traceback, and the feed tries again
                log.exception("web_live_subscriber_failed", retry_in=backoff)
            finally:
                was_ready = self._ready.is_set()
                self._ready.clear()
                if was_ready:  # the pages reconnect and reload when the feed is back
                    self._end_all(CLOSE_FEED_LOST, "live feed interrupted")
                with contextlib.suppress(*BACKEND_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel, data = _text(message.get("channel")), _text(message.get("data"))
        if kind == "pmessage":
            if channel.startswith(OPERATOR_CHANNEL_PREFIX):
                login = channel[len(OPERATOR_CHANNEL_PREFIX):]
                for client in list(self._personal.get(login, ())):
                    client.offer(data)
            return
        if kind != "message":
            return
        if channel == CONTROL_CHANNEL:
            self._recheck_now.set()
            return
        for client in list(self._clients):
            if not client.personal:
                client.offer(data)

    def _end_all(self, code: int, reason: str) -> None:
        for client in list(self._clients):
            client.end(code, reason)

    # --- sessions behind the sockets -----------------------------------------------------

    async def _recheck_forever(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck_now.wait(), self._options.recheck_seconds)
            self._recheck_now.clear()
            try:
                await self.recheck()
            except BACKEND_ERRORS as exc:  # judged again next time; the feed goes on
                log.warning("web_live_recheck_failed", error=_describe(exc))
            raise_if_cancelled()

    async def recheck(self) -> None:
        """Close every websocket whose session is gone or whose person's access changed."""
        clients = [c for c in self._clients if c.ended is None]
        if not clients:
            return
        sessions = await self._sessions.get_many(sorted({c.sid for c in clients}))
        states = await account_states(
            self._pool, {s.who.login for s in sessions.values() if s is not None}
        )
        for client in clients:
            current = sessions.get(client.sid)
            state = states.get(client.login)
            if (current is None or state is None or not state.active
                    or current.who.login != client.login
                    or state.session_epoch != current.epoch):
                log.info("web_live_session_ended", login=client.login)
                client.end(CLOSE_SIGNED_OUT, "signed out")


def _dedicated_client(shared: aioredis.Redis) -> aioredis.Redis:
    """A client to the same server with a pool of its own: the subscriber never
    competes with requests for a connection."""
    pool = shared.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.pop("socket_timeout", None)  # a quiet channel is no error
    if issubclass(pool.connection_class, aioredis.Connection):  # TCP, not a unix socket
        kwargs["socket_keepalive"] = True
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=2, **kwargs,
    ))


def bounded_client(template: aioredis.Redis, connections: int, wait: float) -> aioredis.Redis:
    """A client to the same server whose pool has ``connections`` connections and
    makes a request wait up to ``wait`` seconds for one (then a ConnectionError: a 503),
    instead of failing at once when a storm has them all."""
    pool = template.connection_pool
    return aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool(
        connection_class=pool.connection_class, max_connections=connections, timeout=wait,
        **pool.connection_kwargs,
    ))


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


HUB = web.AppKey("live_hub", LiveHub)
