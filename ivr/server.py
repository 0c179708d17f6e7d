"""FastAGI server on asyncio streams.

Written instead of ``panoramisk.fast_agi`` because of its defects (DESIGN.md):
it spins on ``b""`` when a peer leaves inside the environment block, a
multi-line 520 desynchronises the stream, and routes never match a URL with a
query string. A session ends by closing the socket; Asterisk then continues
the dialplan, which is how a failed route reaches its fallback.

Bounds (a peer must not be able to exhaust the process): only Asterisk's
addresses (``allowed_peers``) are served; at most ``max_sessions`` sessions
run at once; the environment is capped in lines and bytes (:class:`EnvLimits`)
and every line by the StreamReader's limit. A refused peer is closed at once,
so the dialplan goes on to its fallback instead of waiting.
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
    EnvironmentCollector,
    EnvLimits,
    ReplyParser,
    encode_command,
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


def _refuse(writer: asyncio.StreamWriter) -> None:
    """Close at once with a reset: nothing is read or kept, nothing lingers.

    Asterisk's AGI() returns at once. It reports AGISTATUS=SUCCESS, not FAILURE
    (seen on 22.10: the kernel completed the handshake before we could refuse);
    the dialplan sends the call to its fallback because the route never set
    IVR_SOURCE, whatever AGISTATUS says.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Lines:
    """Line reader that decodes with ``errors="replace"`` and says so once per session."""

    def __init__(self, reader: asyncio.StreamReader, log: Any, max_line_bytes: int) -> None:
        self._reader = reader
        self.log = log
        self._max_line_bytes = max_line_bytes
        self._warned = False
        #: Bytes the last line took on the wire, its ending included.
        self.last_size = 0

    async def readline(self) -> str | None:
        """The next line without its ending, or None at EOF (a partial last line is dropped).

        Raises AgiLimitExceeded for a line over the reader's limit (the reader
        has dropped what it buffered of it).
        """
        try:
            raw = await self._reader.readline()
        except ValueError as exc:  # StreamReader's limit overrun
            raise AgiLimitExceeded(f"line over {self._max_line_bytes} bytes") from exc
        self.last_size = len(raw)
        if not raw.endswith(b"\n"):
            return None
        try:
            return raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not self._warned:
                self._warned = True
                # The key only: the value may be a caller's name or number.
                self.log.warning("agi_undecodable_bytes", key=text.partition(":")[0][:40])
            return text


class AgiSession:
    """One FastAGI connection, given to a route. Commands run one at a time."""

    def __init__(
        self,
        env: AgiEnvironment,
        lines: _Lines,
        writer: asyncio.StreamWriter,
        command_timeout: float,
        log: Any,
    ) -> None:
        self.env = env
        self.log = log
        self._lines = lines
        self._writer = writer
        self._command_timeout = command_timeout
        self._parser = ReplyParser()
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def hung_up(self) -> bool:
        return self._parser.hangup_seen or self._closed

    async def command(
        self, cmd: str, *args: str | int, reply_timeout: float | None = None
    ) -> AgiReply:
        """Send one command and return its 200 reply.

        Raises AgiHangup (511, socket closed), AgiCommandError (510, 520),
        AgiTimeout (no reply within ``reply_timeout``, default ``command_timeout``).
        """
        line = encode_command(cmd, *args)
        async with self._lock:
            if self._closed:
                raise AgiHangup("connection closed")
            try:
                self._writer.write(line.encode("utf-8"))
                await self._writer.drain()
                async with asyncio.timeout(reply_timeout or self._command_timeout):
                    reply = await self._read_reply()
            except (ConnectionError, OSError) as exc:
                self._closed = True
                raise AgiHangup(f"connection lost: {exc}") from exc
            except TimeoutError as exc:
                # The stream position is unknown now: no later command may use it.
                self._closed = True
                raise AgiTimeout(f"no reply to {cmd!r}") from exc
            except AgiProtocolError:
                self._closed = True
                raise
        if reply.code == 200:
            return reply
        if reply.code == 511:
            raise AgiHangup(reply.text)
        if reply.code in (510, 520):
            raise AgiCommandError(f"{cmd}: {reply.lines[0]}", reply.code, reply.text)
        raise AgiProtocolError(f"unexpected reply to {cmd!r}: {reply.text!r}")

    async def _read_reply(self) -> AgiReply:
        while True:
            line = await self._lines.readline()
            if line is None:
                self._closed = True
                raise AgiHangup("connection closed by Asterisk")
            reply = self._parser.feed(line)
            if reply is not None:
                return reply

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
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            # The reader's limit bounds one line, and what a peer can make us
            # buffer before a line ends.
            self._on_connect, self.host, self.port, limit=self.env_limits.max_line_bytes
        )
        self.port = self._server.sockets[0].getsockname()[1]
        get_logger(LOGGER_NAME).info(
            "agi_server_started", host=self.host, port=self.port, routes=sorted(self.routes),
            max_sessions=self.max_sessions,
            allowed_peers=[str(net) for net in self.allowed_peers],
        )

    async def stop(self) -> None:
        """Stop listening, cancel the sessions still running and wait for them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        await cancel_and_wait(*tasks)
        await server.wait_closed()
        get_logger(LOGGER_NAME).info(
            "agi_server_stopped", port=self.port, cancelled_sessions=len(tasks)
        )

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so that the session task is ours to track and cancel
        # (asyncio would otherwise create an untracked one for a coroutine).
        if self._server is None:  # accepted while stopping
            writer.close()
            return
        refusal = self._refusal(writer.get_extra_info("peername"))
        if refusal is not None:
            _refuse(writer)
            metrics.AGI_SESSIONS_FAILED.labels(reason="refused").inc()
            get_logger(LOGGER_NAME).warning(
                "agi_peer_refused", peer=str(writer.get_extra_info("peername")),
                reason=refusal, sessions=len(self._tasks),
            )
            return
        task = asyncio.create_task(self._session(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refusal(self, peername: Any) -> str | None:
        """Why a new connection is not served (``not_allowed``, ``busy``), or None."""
        address = peer_address(peername)
        if address is None or not any(address in net for net in self.allowed_peers):
            return "not_allowed"
        if len(self._tasks) >= self.max_sessions:
            return "busy"
        return None

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        # Bound per session, not at import: structlog snapshots its configuration
        # when a logger is bound, and the masking processor must be in it.
        lines = _Lines(
            reader, get_logger(LOGGER_NAME, peer=str(peer)), self.env_limits.max_line_bytes
        )
        try:
            env = await self._read_environment(lines)
            if env is not None:
                await self._run_route(env, lines, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_environment(self, lines: _Lines) -> AgiEnvironment | None:
        collector = EnvironmentCollector(self.env_limits)
        try:
            async with asyncio.timeout(self.env_timeout):
                while True:
                    line = await lines.readline()
                    if line is None:  # EOF inside the block: the peer left
                        lines.log.info("agi_env_incomplete", lines=len(collector.lines))
                        return None
                    env = collector.feed(line, lines.last_size)
                    if env is not None:
                        return env
        except TimeoutError:
            lines.log.warning(
                "agi_env_timeout", lines=len(collector.lines), timeout=self.env_timeout
            )
        except AgiLimitExceeded as exc:
            # Once per session: the session ends here and nothing more is read.
            lines.log.warning(
                "agi_env_too_large", reason=str(exc), lines=len(collector.lines),
                bytes=collector.size,
            )
        except (ConnectionError, OSError) as exc:
            lines.log.warning("agi_env_read_failed", error=repr(exc))
        metrics.AGI_SESSIONS_FAILED.labels(reason="environment").inc()
        return None

    async def _run_route(
        self, env: AgiEnvironment, lines: _Lines, writer: asyncio.StreamWriter
    ) -> None:
        log = lines.log.bind(
            uniqueid=env.uniqueid, channel=env.channel, caller=env.callerid, route=env.script
        )
        lines.log = log
        route = self.routes.get(env.script)
        if route is None:
            log.warning("agi_route_not_found", known=sorted(self.routes))
            metrics.AGI_SESSIONS_FAILED.labels(reason="no_route").inc()
            return
        session = AgiSession(env, lines, writer, self.command_timeout, log)
        log.info("agi_session_start", query=env.query)
        metrics.AGI_SESSIONS.labels(route=env.script).inc()
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
