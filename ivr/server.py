"""FastAGI server on asyncio streams.

Written instead of ``panoramisk.fast_agi`` because of its defects (DESIGN.md):
it spins on ``b""`` when a peer leaves inside the environment block, a
multi-line 520 desynchronises the stream, and routes never match a URL with a
query string. A session ends by closing the socket; Asterisk then continues
the dialplan, which is how a failed route reaches its fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hotline.core import metrics
from hotline.core.logs import get_logger
from ivr.agi_protocol import (
    AgiCommandError,
    AgiEnvironment,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    AgiTimeout,
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
    "FastAgiServer",
    "Route",
]

LOGGER_NAME = "ivr.server"


class _Lines:
    """Line reader that decodes with ``errors="replace"`` and says so once per session."""

    def __init__(self, reader: asyncio.StreamReader, log: Any) -> None:
        self._reader = reader
        self.log = log
        self._warned = False

    async def readline(self) -> str | None:
        """The next line without its ending, or None at EOF (a partial last line is dropped)."""
        raw = await self._reader.readline()
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
    ) -> None:
        self.routes = dict(routes)
        self.host = host
        self.port = port
        self.env_timeout = env_timeout
        self.command_timeout = command_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        get_logger(LOGGER_NAME).info(
            "agi_server_started", host=self.host, port=self.port, routes=sorted(self.routes)
        )

    async def stop(self) -> None:
        """Stop listening, cancel the sessions still running and wait for them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
        task = asyncio.create_task(self._session(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        # Bound per session, not at import: structlog snapshots its configuration
        # when a logger is bound, and the masking processor must be in it.
        lines = _Lines(reader, get_logger(LOGGER_NAME, peer=str(peer)))
        try:
            env = await self._read_environment(lines)
            if env is not None:
                await self._run_route(env, lines, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_environment(self, lines: _Lines) -> AgiEnvironment | None:
        env_lines: list[str] = []
        try:
            async with asyncio.timeout(self.env_timeout):
                while True:
                    line = await lines.readline()
                    if line is None:  # EOF inside the block: the peer left
                        lines.log.info("agi_env_incomplete", lines=len(env_lines))
                        return None
                    if not line:
                        return parse_environment(env_lines)
                    env_lines.append(line)
        except TimeoutError:
            lines.log.warning("agi_env_timeout", lines=len(env_lines), timeout=self.env_timeout)
        except (ConnectionError, OSError, ValueError) as exc:  # ValueError: line over the limit
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
