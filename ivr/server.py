"""FastAGI server on an ``asyncio.Protocol``: no StreamReader, one task per session.

Written instead of ``panoramisk.fast_agi`` because of its defects (DESIGN.md):
it spins on ``b""`` when a peer leaves inside the environment block, a
multi-line 520 desynchronises the stream, and routes never match a URL with a
query string. A session ends by closing the socket; Asterisk then continues
the dialplan, which is how a failed route reaches its fallback.

Why a protocol and not streams (profiled, bench/bench_fastagi.py): with
streams each of the ~25 environment lines went through a coroutine
``readline`` and every command through ``asyncio.timeout`` and ``drain``;
those were most of the server's own time. Here the environment is split and
checked in ``data_received`` from whatever bytes arrived, a command is one
write and one future that ``data_received`` resolves, and its timeout is one
timer handle. Under uvloop (used by ``hotline run`` when installed) the loop
itself costs less again.

Bounds (a peer must not be able to exhaust the process): only Asterisk's
addresses (``allowed_peers``) are served; at most ``max_sessions`` connections
are held at once, silent ones included; the environment is capped in lines and
bytes (:class:`EnvLimits`) and every line by ``max_line_bytes``; what a peer
sends while no command waits is buffered up to two lines' worth, then reading
pauses. A refused peer is closed at once, so the dialplan goes on to its
fallback instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from hotline.core import metrics
from hotline.core.aio import cancel_and_wait
from hotline.core.logs import get_logger
from ivr.agi_protocol import (
    AgiCommandError,
    AgiEnvironment,
    AgiError,
    AgiHangup,
    AgiLimitExceeded,
    AgiProtocolError,
    AgiReply,
    AgiTimeout,
    EnvLimits,
    ReplyParser,
    encode_command,
    parse_environment,
)

__all__ = [
    "AgiCommandError",
    "AgiError",
    "AgiHangup",
    "AgiSession",
    "AgiTimeout",
    "EnvLimits",
    "FastAgiServer",
    "Route",
]

LOGGER_NAME = "ivr.server"
#: Asterisk on the same machine, over IPv4 or IPv6.
DEFAULT_ALLOWED_PEERS = ("127.0.0.1", "::1")
#: Enough for Asterisk's calls in the IVR at peak; far below the usual 1024 open files.
DEFAULT_MAX_SESSIONS = 512
#: A burst of calls waits in the kernel's accept queue instead of losing its
#: SYN (a lost SYN costs the caller a second's retransmission).
MAX_BACKLOG = 4096

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_peers(peers: Iterable[str]) -> list[IpNetwork]:
    """``["127.0.0.1", "10.1.0.0/24", "::1"]`` → networks; ValueError names a bad entry."""
    networks: list[IpNetwork] = []
    for peer in peers:
        try:
            networks.append(ipaddress.ip_network(peer.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {peer!r}") from None
    return networks


def peer_address(peername: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP from ``getpeername()``; an IPv4-mapped IPv6 address (a
    dual-stack listener) counts as the IPv4 address it carries."""
    if not isinstance(peername, tuple) or not peername:
        return None
    try:
        address = ipaddress.ip_address(str(peername[0]).partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _refuse(transport: asyncio.BaseTransport) -> None:
    """Close at once with a reset: nothing is read or kept, nothing lingers.

    Asterisk's AGI() returns at once. It reports AGISTATUS=SUCCESS, not FAILURE
    (seen on 22.10: the kernel completed the handshake before we could refuse);
    the dialplan sends the call to its fallback because the route never set
    IVR_SOURCE, whatever AGISTATUS says.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]  # every stream transport has it


# What a connection is doing; a plain int compares fastest in data_received.
_ENV, _ROUTE, _DONE = 0, 1, 2


class _Connection(asyncio.Protocol):
    """One FastAGI connection: the environment block, then replies to commands.

    All parsing happens in :meth:`data_received`, synchronously; the session's
    task only wakes for a complete environment (it is created then) and for a
    complete reply.
    """

    def __init__(self, server: FastAgiServer) -> None:
        self.server = server
        self.limits = server.env_limits
        self.loop = server._loop
        self.transport: Any = None
        self.log: Any = None
        self.state = _ENV
        self.buf = bytearray()
        self.scan = 0  # where the first environment line not yet checked starts
        self.env_lines = 0
        self.env_bytes = 0
        # One timer per connection, for the environment and then for replies:
        # it fires at ``timer_at``; a command whose deadline is later only
        # moves ``deadline`` and the timer re-arms itself when it fires early.
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline = 0.0
        self.task: asyncio.Task[None] | None = None
        self.warned = False  # undecodable bytes are logged once per session
        # the command waiting for its reply
        self.parser = ReplyParser()
        self.waiter: asyncio.Future[AgiReply] | None = None
        self.eof = False  # nothing more will come: EOF, or the connection is gone
        self.lost_error: Exception | None = None
        self.paused = False

    # --- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        server = self.server
        peername = transport.get_extra_info("peername")
        if server._server is None:  # accepted while stopping
            self.state = _DONE
            transport.close()
            return
        refusal = server._refusal(peername)
        if refusal is not None:
            self.state = _DONE
            _refuse(transport)
            metrics.AGI_SESSIONS_FAILED.labels(reason="refused").inc()
            get_logger(LOGGER_NAME).warning(
                "agi_peer_refused", peer=str(peername), reason=refusal,
                sessions=len(server._connections),
            )
            return
        server._connections.add(self)
        # Bound per session, not at import: structlog snapshots its configuration
        # when a logger is bound, and the masking processor must be in it.
        self.log = get_logger(LOGGER_NAME, peer=str(peername))
        self._arm(self.loop.time() + server.env_timeout)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _ROUTE:
            self.buf += data
            if self.waiter is not None:
                self._feed_replies()
            elif len(self.buf) > 2 * self.limits.max_line_bytes:
                # Nothing asked for it: keep no more than a StreamReader would.
                self.transport.pause_reading()
                self.paused = True
        elif state == _ENV:
            self.buf += data
            try:
                self._feed_environment()
            except AgiLimitExceeded as exc:
                # Once per session: the session ends here and nothing more is read.
                self.log.warning(
                    "agi_env_too_large", reason=str(exc), lines=self.env_lines,
                    bytes=self.env_bytes,
                )
                self._end_environment(failed=True)

    def eof_received(self) -> bool:
        self.eof = True
        if self.state == _ENV:
            # EOF inside the block: the peer left (a partial last line is dropped).
            self.log.info("agi_env_incomplete", lines=self.env_lines)
            self._end_environment(failed=False)
        elif self.waiter is not None:
            self._feed_replies()
        # Half-open: what we still write (nothing, normally) may go out; the
        # session closes the socket when its route ends.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost_error = exc
        if self.state == _ENV:
            if exc is not None:
                self.log.warning("agi_env_read_failed", error=repr(exc))
                metrics.AGI_SESSIONS_FAILED.labels(reason="environment").inc()
            self._end_environment(failed=False)
        elif self.waiter is not None:
            self._feed_replies()

    # --- the environment ---------------------------------------------------------

    def _feed_environment(self) -> None:
        buf, limits = self.buf, self.limits
        start = self.scan
        # The usual case: the whole block in one piece, checked at C speed.
        if start == 0 and (end := buf.find(b"\n\n")) > 0 and buf[0] != 10:
            block = bytes(buf[:end])
            lines = block.split(b"\n")
            if (
                b"\r" not in block
                and len(lines) <= limits.max_lines
                and end + 1 <= limits.max_bytes
                and max(map(len, lines)) <= limits.max_line_bytes
            ):
                self.env_lines, self.env_bytes = len(lines), end + 1
                del buf[: end + 2]
                self._start_route(self._decode_lines(lines))
                return
        # Line by line, exactly: a block in pieces, "\r\n" endings, a cap reached.
        max_line, max_lines, max_bytes = (
            limits.max_line_bytes, limits.max_lines, limits.max_bytes
        )
        while (nl := buf.find(b"\n", start)) >= 0:
            size = nl + 1 - start
            if size == 1 or (size == 2 and buf[start] == 13):  # the blank line
                block = bytes(buf[:start])
                del buf[: nl + 1]
                self.scan = 0
                lines = [line.rstrip(b"\r") for line in block.split(b"\n")[:-1]]
                self._start_route(self._decode_lines(lines))
                return
            if size > max_line + 2:  # + "\r\n"
                raise AgiLimitExceeded(f"line over {max_line} bytes")
            self.env_bytes += size
            if self.env_lines >= max_lines:
                raise AgiLimitExceeded(f"environment over {max_lines} lines")
            if self.env_bytes > max_bytes:
                raise AgiLimitExceeded(f"environment over {max_bytes} bytes")
            self.env_lines += 1
            start = nl + 1
        self.scan = start
        if len(buf) - start > max_line + 1:  # a line still open, already too long
            raise AgiLimitExceeded(f"line over {max_line} bytes")

    def _decode_lines(self, lines: list[bytes]) -> list[str]:
        try:
            return [line.decode("utf-8") for line in lines]
        except UnicodeDecodeError:
            decoded = []
            for line in lines:
                try:
                    decoded.append(line.decode("utf-8"))
                except UnicodeDecodeError:
                    text = line.decode("utf-8", errors="replace")
                    self._warn_undecodable(text)
                    decoded.append(text)
            return decoded

    def _warn_undecodable(self, text: str) -> None:
        if not self.warned:
            self.warned = True
            # The key only: the value may be a caller's name or number.
            self.log.warning("agi_undecodable_bytes", key=text.partition(":")[0][:40])

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._timer_fired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timer_fired(self) -> None:
        self.timer = None
        if self.state == _ENV:
            self.log.warning(
                "agi_env_timeout", lines=self.env_lines, timeout=self.server.env_timeout
            )
            self._end_environment(failed=True)
        elif self.waiter is not None:
            if self.loop.time() >= self.deadline:
                self._resolve(self.waiter, None, TimeoutError())
            else:
                self._arm(self.deadline)

    def _end_environment(self, *, failed: bool) -> None:
        """No session: count it if it failed, close, free the slot."""
        if failed:
            metrics.AGI_SESSIONS_FAILED.labels(reason="environment").inc()
        self.state = _DONE
        self.buf.clear()
        self._disarm()
        self.transport.close()
        self.server._connections.discard(self)

    def _start_route(self, lines: list[str]) -> None:
        self.state = _ROUTE  # the timer, if it fires now, finds no command waiting
        env = parse_environment(lines)
        self.task = self.loop.create_task(self.server._serve(self, env))

    # --- commands ----------------------------------------------------------------

    def send(self, line: bytes, timeout: float) -> asyncio.Future[AgiReply]:
        """Write one command; the future gets its reply, or AgiHangup at EOF,
        TimeoutError after ``timeout``, AgiProtocolError for garbage."""
        loop = self.loop
        waiter: asyncio.Future[AgiReply] = loop.create_future()
        self.waiter = waiter
        if not self.eof:
            # No drain: one short line, then nothing more is written before its
            # reply, so the write buffer cannot grow.
            self.transport.write(line)
            self.deadline = deadline = loop.time() + timeout
            if self.timer is None or self.timer_at > deadline:
                self._arm(deadline)
            if self.paused:
                self.paused = False
                self.transport.resume_reading()
        if self.buf or self.eof:
            self._feed_replies()
        return waiter

    def _feed_replies(self) -> None:
        waiter = self.waiter
        if waiter is None:
            return
        buf = self.buf
        try:
            while (nl := buf.find(b"\n")) >= 0:
                raw = bytes(buf[:nl])
                del buf[: nl + 1]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = raw.decode("utf-8", errors="replace")
                    self._warn_undecodable(line)
                reply = self.parser.feed(line)
                if reply is not None:
                    self._resolve(waiter, reply, None)
                    return
            if len(buf) > self.limits.max_line_bytes + 1:
                raise AgiLimitExceeded(f"line over {self.limits.max_line_bytes} bytes")
        except AgiProtocolError as exc:
            self._resolve(waiter, None, exc)
            return
        if self.eof:
            error = self.lost_error
            self._resolve(waiter, None, AgiHangup(
                "connection closed by Asterisk" if error is None else f"connection lost: {error}"
            ))

    def _resolve(
        self, waiter: asyncio.Future[AgiReply], reply: AgiReply | None,
        error: BaseException | None,
    ) -> None:
        self.waiter = None
        if waiter.done():  # the route was cancelled meanwhile
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(reply)  # type: ignore[arg-type]

    def close(self) -> None:
        self.state = _DONE
        self.waiter = None
        self._disarm()
        self.buf.clear()
        self.transport.close()


class AgiSession:
    """One FastAGI connection, given to a route. Commands run one at a time."""

    def __init__(
        self, env: AgiEnvironment, connection: _Connection, command_timeout: float, log: Any
    ) -> None:
        self.env = env
        self.log = log
        self._connection = connection
        self._command_timeout = command_timeout
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def hung_up(self) -> bool:
        return self._connection.parser.hangup_seen or self._closed

    async def command(
        self, cmd: str, *args: str | int, reply_timeout: float | None = None
    ) -> AgiReply:
        """Send one command and return its 200 reply.

        Raises AgiHangup (511, socket closed), AgiCommandError (510, 520),
        AgiTimeout (no reply within ``reply_timeout``, default ``command_timeout``).
        """
        line = encode_command(cmd, *args).encode("utf-8")
        async with self._lock:
            if self._closed:
                raise AgiHangup("connection closed")
            try:
                reply = await self._connection.send(
                    line, reply_timeout or self._command_timeout
                )
            except AgiHangup:
                self._closed = True
                raise
            except TimeoutError as exc:  # before OSError: TimeoutError is one
                # The stream position is unknown now: no later command may use it.
                self._closed = True
                raise AgiTimeout(f"no reply to {cmd!r}") from exc
            except (ConnectionError, OSError) as exc:
                self._closed = True
                raise AgiHangup(f"connection lost: {exc}") from exc
            except AgiProtocolError:
                self._closed = True
                raise
        code = reply.code
        if code == 200:
            return reply
        if code == 511:
            raise AgiHangup(reply.text)
        if code in (510, 520):
            raise AgiCommandError(f"{cmd}: {reply.lines[0]}", code, reply.text)
        raise AgiProtocolError(f"unexpected reply to {cmd!r}: {reply.text!r}")

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        """Play a sound; returns the escape digit pressed, or ``""``.

        ``result=-1`` (missing file or a channel going away) is returned as
        ``""``: if the channel is dead the next command gets 511 anyway.
        """
        reply = await self.command("STREAM FILE", name, escape_digits)
        code = int(reply.result or "0")
        return chr(code) if code > 0 else ""

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``prompt`` and collect digits: ``(digits, timed_out)``."""
        reply = await self.command(
            "GET DATA",
            prompt,
            timeout_ms,
            max_digits,
            # The reply comes after the whole prompt and the digit timeout.
            reply_timeout=self._command_timeout + timeout_ms / 1000,
        )
        if reply.result == "-1":  # ast_app_getdata failed: the caller hung up
            raise AgiHangup("GET DATA returned -1")
        return reply.result or "", reply.data == "timeout"

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def verbose(self, msg: str, level: int = 1) -> None:
        await self.command("VERBOSE", msg, level)


Route = Callable[[AgiSession], Awaitable[None]]


class FastAgiServer:
    """Accepts Asterisk's FastAGI connections and runs the route named by the URL path."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        host: str,
        port: int,
        *,
        env_timeout: float = 5.0,
        command_timeout: float = 30.0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        env_limits: EnvLimits | None = None,
        allowed_peers: Iterable[str] = DEFAULT_ALLOWED_PEERS,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be positive, got {max_sessions}")
        self.routes = dict(routes)
        self.host = host
        self.port = port
        self.env_timeout = env_timeout
        self.command_timeout = command_timeout
        self.max_sessions = max_sessions
        self.env_limits = env_limits or EnvLimits()
        self.allowed_peers = parse_peers(allowed_peers)
        # Single addresses as getpeername() writes them: the usual peer (Asterisk
        # on 127.0.0.1) is let in by one set lookup, no address parsing.
        self._allowed_hosts = frozenset(
            str(net.network_address) for net in self.allowed_peers
            if net.num_addresses == 1
        )
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._connections: set[_Connection] = set()
        self._started: dict[str, Any] = {}  # metric children by route, looked up once

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def active_sessions(self) -> int:
        """Connections held: routes running and peers still sending their environment."""
        return len(self._connections)

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port,
            backlog=max(100, min(self.max_sessions, MAX_BACKLOG)),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        get_logger(LOGGER_NAME).info(
            "agi_server_started", host=self.host, port=self.port, routes=sorted(self.routes),
            max_sessions=self.max_sessions,
            allowed_peers=[str(net) for net in self.allowed_peers],
            event_loop=type(loop).__module__.partition(".")[0],
        )

    async def stop(self) -> None:
        """Stop listening, cancel the sessions still running and wait for them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        connections = list(self._connections)
        tasks = []
        for conn in connections:
            if conn.task is not None:
                tasks.append(conn.task)
            else:  # still in its environment: no task to cancel, just close
                conn._end_environment(failed=False)
        await cancel_and_wait(*tasks)
        await server.wait_closed()
        get_logger(LOGGER_NAME).info(
            "agi_server_stopped", port=self.port, cancelled_sessions=len(connections)
        )

    def _refusal(self, peername: Any) -> str | None:
        """Why a new connection is not served (``not_allowed``, ``busy``), or None."""
        if not (
            isinstance(peername, tuple) and peername and peername[0] in self._allowed_hosts
        ):
            address = peer_address(peername)
            if address is None or not any(address in net for net in self.allowed_peers):
                return "not_allowed"
        if len(self._connections) >= self.max_sessions:
            return "busy"
        return None

    async def _serve(self, conn: _Connection, env: AgiEnvironment) -> None:
        """The session's task: the route, then the socket closed and the slot freed."""
        try:
            log = conn.log.bind(
                uniqueid=env.uniqueid, channel=env.channel, caller=env.callerid, route=env.script
            )
            conn.log = log
            route = self.routes.get(env.script)
            if route is None:
                log.warning("agi_route_not_found", known=sorted(self.routes))
                metrics.AGI_SESSIONS_FAILED.labels(reason="no_route").inc()
                return
            session = AgiSession(env, conn, self.command_timeout, log)
            log.info("agi_session_start", query=env.query)
            started = self._started.get(env.script)
            if started is None:
                started = self._started[env.script] = metrics.AGI_SESSIONS.labels(
                    route=env.script
                )
            started.inc()
            metrics.AGI_SESSIONS_ACTIVE.inc()
            try:
                await route(session)
            except AgiHangup as exc:
                log.info("agi_session_hangup", reason=str(exc))
            except Exception:
                # Closing the socket lets the dialplan go on to its fallback.
                log.exception("agi_route_failed")
                metrics.AGI_SESSIONS_FAILED.labels(reason="route_error").inc()
            else:
                log.info("agi_session_end", hung_up=session.hung_up)
            finally:
                metrics.AGI_SESSIONS_ACTIVE.dec()
        finally:
            conn.close()
            self._connections.discard(conn)
