"""asyncio AMI client on plain streams, using :mod:`cti_bridge.ami_protocol`.

Own implementation rather than panoramisk's ``Manager``: that one creates
untracked tasks for dispatch and reconnect, lets an exception in a sync
callback kill the connection, has no per-action timeout and never checks Ping
replies. Here:

* one reader task per connection routes responses to their futures by ActionID
  and events to a queue; one dispatcher task (living across reconnections) runs
  the event handlers sequentially, in order of arrival. Handlers may await
  ``action()`` without deadlocking the reader.
* ``action()`` raises :class:`AmiActionError` when Asterisk answers
  ``Response: Error`` (the reply is in ``.reply``), :class:`AmiTimeout` after
  ``action_timeout``, :class:`AmiConnectionLost` when the link goes down first.
* a supervisor task (``start()``) reconnects with exponential backoff and runs the
  ``on_connected`` callbacks after every login; a ping watchdog per connection
  aborts a link whose Ping goes unanswered.
* the login is an MD5 challenge (``Action: Challenge``, then ``Login`` with
  ``Key: md5(challenge + secret)``): the secret never crosses the wire, so
  whatever listens on the port (say, while Asterisk restarts) does not learn it.
  There is no fallback to a plain-text login.
* input is bounded: the parser drops oversized messages (logged), and the event
  backlog sheds chatty events first when handlers fall behind (see
  :class:`EventBacklog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from hotline.core import metrics
from hotline.core.aio import cancel_and_wait
from hotline.core.errors import PeerError
from hotline.core.logs import get_logger

from .ami_protocol import AmiMessage, AmiParser, DroppedMessage, challenge_key, encode_action

# Sync or async: the result is awaited when it is awaitable.
EventHandler = Callable[[AmiMessage], object]
ConnectedCallback = Callable[[], object]
HeaderValue = str | list[str]

MAX_RECONNECT_DELAY = 30.0
# About 3 s of a 30 calls/s peak (~100 events a call), a few tens of MB at most.
MAX_QUEUED_EVENTS = 10_000
MAX_QUEUED_BYTES = 32 * 1024 * 1024
_MAX_NAMES_COUNTED = 256  # distinct event names in the drop counts (Asterisk has ~200)

#: Events a call's record, an operator's state or the link itself is made of:
#: queued even over the backlog's caps (up to twice them). Everything else
#: (Newexten, DTMF*, RTCP*, AGIExec*, DialState, most VarSet…) is shed first.
ESSENTIAL_EVENTS = (
    "Newchannel", "Newstate", "NewCallerid", "Hangup",
    "QueueCaller*", "QueueMember*", "Agent*", "Bridge*",
    "OriginateResponse", "FullyBooted", "Shutdown", "Reload",
)
#: The channel variables the call tracker builds a record from (VarSet).
ESSENTIAL_VARIABLES = frozenset(
    {"IVR_CHOICE", "IVR_SOURCE", "HOTLINE_QUEUE", "QUEUESTATUS", "IVR_EXIT"}
)


def essential_event(msg: AmiMessage) -> bool:
    """The default shedding policy: see ESSENTIAL_EVENTS and ESSENTIAL_VARIABLES."""
    name = msg.event or ""
    if name == "VarSet":
        return (msg.get("Variable") or "").upper() in ESSENTIAL_VARIABLES
    return any(fnmatchcase(name, pattern) for pattern in ESSENTIAL_EVENTS)


class AmiError(PeerError):
    """Base of every error this client raises."""

    error_id = "ami_error"


class AmiConnectError(AmiError):
    """The TCP connection to AMI could not be made (or broke during login)."""

    error_id = "ami_unreachable"
    http_status = 503


class AmiLoginError(AmiError):
    """Asterisk refused the login (wrong user/secret, ACL)."""

    error_id = "ami_login_refused"


class AmiTimeout(AmiError, TimeoutError):
    """No reply to an action within ``action_timeout``."""

    error_id = "ami_timeout"
    http_status = 504


class AmiConnectionLost(AmiError):
    """The link went down (or the client was closed) before the reply came."""

    error_id = "ami_connection_lost"
    http_status = 503


class AmiProtocolError(AmiError):
    """Asterisk's reply could not be taken (dropped by the parser's limits)."""

    error_id = "ami_protocol_error"
    http_status = 502


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``; the whole reply is in ``reply``."""

    error_id = "ami_action_refused"

    def __init__(self, action: str, reply: AmiMessage) -> None:
        super().__init__(f"AMI action {action} failed: {reply.get('Message', '')}")
        self.action = action
        self.reply = reply


class EventBacklog:
    """Events waiting for the handlers, bounded in count and in bytes.

    Under the caps every event waits its turn. Over either cap, events that are
    not ``essential`` are shed and counted by name (one warning when shedding
    starts, one with the counts when the backlog is back under half its caps);
    essential ones are still queued, up to twice the caps, so a call's closing
    events survive a burst. Past that even they are dropped, each one logged as
    an error with its channel: never silently.
    """

    def __init__(
        self,
        log: Any,
        *,
        max_events: int = MAX_QUEUED_EVENTS,
        max_bytes: int = MAX_QUEUED_BYTES,
        essential: Callable[[AmiMessage], bool] = essential_event,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("the AMI event backlog needs room for at least one event")
        self.max_events, self.max_bytes = max_events, max_bytes
        self._essential = essential
        self._queue: asyncio.Queue[AmiMessage] = asyncio.Queue()
        self._log = log
        self.bytes = 0
        #: Every event dropped since the client was made, by event name.
        self.dropped: Counter[str] = Counter()
        self._episode: Counter[str] | None = None  # drops since shedding started
        self._episode_started = 0.0

    def __len__(self) -> int:
        return self._queue.qsize()

    def put(self, msg: AmiMessage) -> bool:
        """Queue ``msg``, or drop it by the policy above; True when queued."""
        count, size = self._queue.qsize(), self.bytes + msg.size
        if count >= self.max_events or size > self.max_bytes:
            essential = self._essential(msg)
            beyond = count >= 2 * self.max_events or size > 2 * self.max_bytes
            if not essential or beyond:
                self._drop(msg, essential)
                return False
        self._queue.put_nowait(msg)
        self.bytes += msg.size
        return True

    async def get(self) -> AmiMessage:
        msg = await self._queue.get()
        self.bytes -= msg.size
        if (
            self._episode is not None
            and self._queue.qsize() <= self.max_events // 2
            and self.bytes <= self.max_bytes // 2
        ):
            self._log.warning(
                "ami_backlog_recovered",
                dropped=sum(self._episode.values()),
                dropped_by_event=dict(self._episode.most_common(20)),
                seconds=round(time.monotonic() - self._episode_started, 1),
            )
            self._episode = None
        return msg

    def _drop(self, msg: AmiMessage, essential: bool) -> None:
        name = msg.event or ""
        if name not in self.dropped and len(self.dropped) >= _MAX_NAMES_COUNTED:
            name = "(other)"  # a stream of made-up event names must not grow the counts
        self.dropped[name] += 1
        metrics.AMI_EVENTS_DROPPED.labels(essential="yes" if essential else "no").inc()
        if self._episode is None:
            self._episode, self._episode_started = Counter(), time.monotonic()
            self._log.warning(
                "ami_backlog_shedding", queued=self._queue.qsize(), queued_bytes=self.bytes,
                max_events=self.max_events, max_bytes=self.max_bytes,
            )
        self._episode[name] += 1
        if essential:
            self._log.error(
                "ami_essential_event_dropped", ami_event=name, uniqueid=msg.get("Uniqueid"),
                linkedid=msg.get("Linkedid"), queued=self._queue.qsize(),
            )


@dataclass
class _Pending:
    action: str
    future: asyncio.Future[list[AmiMessage]]
    is_list: bool
    items: list[AmiMessage] = field(default_factory=list)
    reply: AmiMessage | None = None


@dataclass
class _Link:
    """One TCP connection and everything that dies with it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: AmiParser = field(default_factory=AmiParser)
    pending: dict[str, _Pending] = field(default_factory=dict)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class AmiClient:
    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 5.0,
        ping_interval: float = 10.0,
        reconnect_delay: float = 1.0,
        events: str = "on",
        max_queued_events: int = MAX_QUEUED_EVENTS,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        essential: Callable[[AmiMessage], bool] = essential_event,
    ) -> None:
        self.host, self.port, self.username = host, port, username
        self._secret = secret
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.reconnect_delay = reconnect_delay
        self.events = events
        self._handlers: list[tuple[str, EventHandler]] = []
        self._connected_callbacks: list[ConnectedCallback] = []
        self._link: _Link | None = None
        self._log = get_logger(__name__, ami=f"{host}:{port}")
        self._events = EventBacklog(
            self._log, max_events=max_queued_events, max_bytes=max_queued_bytes,
            essential=essential,
        )
        self._dispatcher: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self._closed = False
        #: Counts successful logins: a new value means a new AMI session, whose
        #: events may follow a gap (and, after a restart, a new Asterisk).
        self.generation = 0
        #: Messages the parser refused (too many lines or bytes), all links together.
        self.dropped_messages = 0

    def __repr__(self) -> str:  # never shows the secret
        return f"AmiClient({self.host}:{self.port}, user={self.username!r})"

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.lost.is_set()

    @property
    def version(self) -> str | None:
        """AMI version from the banner of the current connection."""
        return self._link.parser.version if self._link else None

    @property
    def backlog(self) -> EventBacklog:
        """Events waiting for the handlers, and the counts of those dropped."""
        return self._events

    # -- registration ------------------------------------------------------------

    def on_event(self, pattern: str, handler: EventHandler) -> None:
        """Call ``handler`` (sync or async) for events whose name matches ``pattern`` (fnmatch)."""
        self._handlers.append((pattern, handler))

    def on_connected(self, callback: ConnectedCallback) -> None:
        """Run ``callback`` after every successful (re)login made by ``start()``."""
        self._connected_callbacks.append(callback)

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and log in once; raises AmiConnectError / AmiLoginError."""
        if self._closed:
            raise AmiConnectionLost("the AMI client is closed")
        if self.connected:
            return
        if self._link is not None:  # a dead link nobody cleaned up (start() not running)
            await self._teardown(self._link, "replaced")
        self._link = await self._open()

    async def start(self) -> None:
        """Connect (unless connected) and keep the link up in the background."""
        if not self.connected:
            await self.connect()
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="ami-supervisor")

    async def close(self) -> None:
        """Stop everything: tasks cancelled and awaited, pending actions failed."""
        self._closed = True
        await self._cancel_and_wait(self._supervisor)
        if self._link is not None:
            await self._teardown(self._link, "client closed")
        await self._cancel_and_wait(self._dispatcher)
        self._supervisor = self._dispatcher = None
        self._link = None

    # -- actions -----------------------------------------------------------------

    async def action(self, name: str, /, **headers: HeaderValue) -> AmiMessage:
        """Send an action and return its response (raises AmiActionError on Error)."""
        return (await self._request(self._current_link(), name, headers, is_list=False))[0]

    async def action_list(self, name: str, /, **headers: HeaderValue) -> list[AmiMessage]:
        """Send an EventList action (QueueStatus, CoreShowChannels, …); return its items."""
        return await self._request(self._current_link(), name, headers, is_list=True)

    def _current_link(self) -> _Link:
        if self._link is None or self._link.lost.is_set():
            raise AmiConnectionLost(f"not connected to AMI at {self.host}:{self.port}")
        return self._link

    async def _request(
        self, link: _Link, name: str, headers: dict[str, HeaderValue], *, is_list: bool
    ) -> list[AmiMessage]:
        action_id = f"{self._id_prefix}-{next(self._ids)}"
        data = encode_action(name, headers, action_id)  # ValueError on CR/LF: caller's bug
        if link.lost.is_set():
            raise AmiConnectionLost(f"AMI link is down, {name} not sent")
        future: asyncio.Future[list[AmiMessage]] = asyncio.get_running_loop().create_future()
        link.pending[action_id] = _Pending(name, future, is_list)
        try:
            async with asyncio.timeout(self.action_timeout):
                link.writer.write(data)
                await link.writer.drain()  # inside the timeout: a peer that stops reading
                return await future
        except TimeoutError:
            raise AmiTimeout(
                f"AMI action {name} (ActionID {action_id}) got no reply "
                f"within {self.action_timeout}s"
            ) from None
        except OSError as exc:
            raise AmiConnectionLost(f"AMI link lost sending {name}: {exc}") from exc
        finally:
            link.pending.pop(action_id, None)

    # -- connection internals ------------------------------------------------------

    async def _open(self) -> _Link:
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.action_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            detail = str(exc) or "timed out"
            raise AmiConnectError(f"cannot connect to AMI at {where}: {detail}") from None
        link = _Link(reader, writer)
        link.tasks.append(asyncio.create_task(self._read_loop(link), name="ami-reader"))
        logged_in = False
        try:
            [reply] = await self._request(link, "Challenge", {"AuthType": "MD5"}, is_list=False)
            challenge = reply.get("Challenge")
            if not challenge:
                raise AmiLoginError(f"AMI at {where} answered Challenge without a challenge")
            await self._request(
                link,
                "Login",
                {
                    "AuthType": "MD5",
                    "Username": self.username,
                    "Key": challenge_key(challenge, self._secret),
                    "Events": self.events,
                },
                is_list=False,
            )
            logged_in = True
        except AmiActionError as exc:
            reason = exc.reply.get("Message") or "no reason given"
            raise AmiLoginError(
                f"Asterisk at {where} refused the login of user {self.username!r} "
                f"({exc.action}, MD5 challenge): {reason}"
            ) from None
        except AmiLoginError:
            raise
        except AmiError as exc:
            raise AmiConnectError(f"AMI at {where} did not complete the login: {exc}") from None
        finally:
            if not logged_in:  # refused, failed or cancelled (close() during a reconnect)
                await self._teardown(link, "login failed")
        if self._dispatcher is None:  # events flow only after a login
            self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="ami-dispatcher")
        if self.ping_interval > 0:
            link.tasks.append(asyncio.create_task(self._ping_loop(link), name="ami-ping"))
        self.generation += 1
        self._log.info("ami_connected", username=self.username, version=link.parser.version)
        return link

    async def _teardown(self, link: _Link, reason: str) -> None:
        self._mark_lost(link, reason)
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                await self._cancel_and_wait(task)
        link.writer.close()
        with contextlib.suppress(OSError):
            await link.writer.wait_closed()

    def _mark_lost(self, link: _Link, reason: str) -> None:
        """Fail what waits on this link and wake the supervisor; idempotent."""
        if link.lost.is_set():
            return
        link.lost.set()
        link.writer.transport.abort()  # ends the reader too when the watchdog calls this
        for pending in link.pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    AmiConnectionLost(f"AMI link lost ({reason}) before {pending.action} replied")
                )

    async def _supervise(self) -> None:
        while True:
            link = self._link
            if link is not None:
                for callback in self._connected_callbacks:
                    await self._call_safely(callback, "ami_on_connected_failed")
                await link.lost.wait()
                self._log.warning("ami_link_lost")
                await self._teardown(link, "link lost")
            self._link = None
            self._link = await self._reconnect()

    async def _reconnect(self) -> _Link:
        delay = self.reconnect_delay
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._open()
            except AmiError as exc:  # login errors too: the secret may be fixed in Asterisk
                self._log.warning("ami_reconnect_failed", error=str(exc), retry_in=delay)
                delay = min(max(delay, 0.1) * 2, MAX_RECONNECT_DELAY)

    async def _ping_loop(self, link: _Link) -> None:
        """The only way to notice a half-open TCP link (Asterisk gone, no RST)."""
        while not link.lost.is_set():
            await asyncio.sleep(self.ping_interval)
            try:
                await self._request(link, "Ping", {}, is_list=False)
            except AmiTimeout:
                self._log.warning("ami_ping_timeout", timeout=self.action_timeout)
                self._mark_lost(link, "ping timeout")
            except AmiConnectionLost:
                return
            except AmiActionError:
                pass  # an answer is an answer: the link is alive

    async def _read_loop(self, link: _Link) -> None:
        try:
            while data := await link.reader.read(65536):
                for msg in link.parser.feed(data):
                    try:
                        self._route(link, msg)
                    except Exception:  # a bug here must not cost the link
                        self._log.exception("ami_route_failed", ami_event=msg.event)
                if link.parser.dropped:
                    for dropped in link.parser.dropped:
                        self._refused(link, dropped)
                    link.parser.dropped.clear()
        except OSError as exc:
            self._log.warning("ami_read_failed", error=str(exc))
        finally:
            self._mark_lost(link, "connection closed")

    def _refused(self, link: _Link, dropped: DroppedMessage) -> None:
        """A message over the parser's limits: logged; an action waiting for it fails now."""
        self.dropped_messages += 1
        metrics.AMI_MESSAGES_DROPPED.inc()
        self._log.error(
            "ami_message_dropped", reason=dropped.reason, ami_event=dropped.event,
            action_id=dropped.action_id, lines=dropped.lines, size=dropped.size,
        )
        pending = link.pending.get(dropped.action_id) if dropped.action_id else None
        if pending is not None and not pending.future.done():
            pending.future.set_exception(AmiProtocolError(
                f"AMI reply to {pending.action} dropped: {dropped.reason}"
            ))

    def _route(self, link: _Link, msg: AmiMessage) -> None:
        if msg.errors:  # count only: the lines may hold callers' numbers
            self._log.warning("ami_malformed_lines", count=len(msg.errors), ami_event=msg.event)
        action_id = msg.action_id
        pending = link.pending.get(action_id) if action_id else None
        if pending is None or pending.future.done():
            if msg.is_event:
                self._events.put(msg)
            elif msg.is_response:
                self._log.debug("ami_unexpected_response", action_id=action_id)
            return
        if msg.is_response:
            if (msg.response or "").lower() == "error":
                pending.future.set_exception(AmiActionError(pending.action, msg))
            elif not pending.is_list:
                pending.future.set_result([msg])
            elif (msg.get("EventList") or "").lower() == "start":
                pending.reply = msg
            else:  # not a list action after all: no items
                pending.future.set_result([])
        elif msg.is_event and pending.is_list:
            if (msg.get("EventList") or "").lower() == "complete":
                expected = msg.get("ListItems")
                if expected is not None and expected != str(len(pending.items)):
                    self._log.warning(
                        "ami_list_count_mismatch",
                        action=pending.action,
                        expected=expected,
                        got=len(pending.items),
                    )
                pending.future.set_result(pending.items)
            else:
                pending.items.append(msg)
        else:
            self._events.put(msg)  # e.g. OriginateResponse carries its ActionID

    async def _dispatch_loop(self) -> None:
        while True:
            msg = await self._events.get()
            name = msg.event or ""
            for pattern, handler in list(self._handlers):
                if fnmatchcase(name, pattern):
                    await self._call_safely(
                        handler,
                        "ami_handler_failed",
                        msg,
                        ami_event=name,
                        uniqueid=msg.get("Uniqueid"),
                    )

    async def _call_safely(
        self, func: Callable[..., object], log_event: str, *args: Any, **ctx: Any
    ) -> None:
        """A failing callback is logged and skipped: it must not cost the link or other events."""
        try:
            result = func(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._log.exception(log_event, handler=getattr(func, "__qualname__", repr(func)), **ctx)

    async def _cancel_and_wait(self, task: asyncio.Task[None] | None) -> None:
        """Cancel and await ``task``; its own error is logged, not raised."""
        for error in await cancel_and_wait(task):
            self._log.error("ami_task_failed", task=task.get_name() if task else "",
                            error=repr(error))
