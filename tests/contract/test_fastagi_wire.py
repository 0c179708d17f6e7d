"""The FastAGI server's byte handling, over real sockets: how bytes arrive.

The server parses in ``data_received`` from whatever bytes the kernel hands
over, so these tests cut the stream where Asterisk (or a hostile peer) might:
an environment in pieces or with CRLF, a reply split mid-line, a HANGUP that
arrives while no command waits, a reply that never comes, a line that never
ends; and the same server under uvloop, which ``hotline run`` uses when
installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from ivr.agi_protocol import AgiLimitExceeded
from ivr.server import AgiHangup, AgiSession, AgiTimeout, EnvLimits, FastAgiServer, Route
from tests.support.fake_agi_client import GUARD, FakeAsterisk, environment
from tests.support.root import needs_uvloop

ServerFactory = Callable[..., Awaitable[FastAgiServer]]
Body = Callable[[AgiSession], Awaitable[object]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[FastAgiServer] = []

    async def make(routes: dict[str, Route], **kwargs: Any) -> FastAgiServer:
        server = FastAgiServer(routes, "127.0.0.1", 0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


class Recorder:
    """A route that keeps its sessions and what its body raised or returned."""

    def __init__(self, body: Body | None = None) -> None:
        self.sessions: list[AgiSession] = []
        self.errors: list[BaseException] = []
        self.results: list[object] = []
        self.done = asyncio.Event()
        self._body = body

    async def __call__(self, session: AgiSession) -> None:
        self.sessions.append(session)
        try:
            if self._body is not None:
                self.results.append(await self._body(session))
        except Exception as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()


def env_bytes(script: str = "ivr", ending: str = "\n", **kwargs: Any) -> bytes:
    return "".join(f"{line}{ending}" for line in [*environment(script, **kwargs), ""]).encode()


@pytest.mark.parametrize("piece", [1, 7, 100], ids=["byte-by-byte", "7-bytes", "100-bytes"])
async def test_environment_in_pieces_is_served(make_server: ServerFactory, piece: int) -> None:
    """Asterisk writes the environment line by line; TCP may cut it anywhere."""
    route = Recorder()
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    data = env_bytes(args=["uk", "a b"])
    for start in range(0, len(data), piece):
        await agi.send_raw(data[start : start + piece])
        await asyncio.sleep(0)  # let the server read each piece on its own
    await asyncio.wait_for(route.done.wait(), GUARD)
    await agi.wait_eof()
    await agi.close()
    [session] = route.sessions
    assert session.env.args == ["uk", "a b"]
    assert session.env.calleridname == "Олена Петренко"  # a UTF-8 name cut mid-character
    assert session.env.uniqueid == "1714000000.42"


async def test_environment_with_crlf_endings_is_served(make_server: ServerFactory) -> None:
    route = Recorder()
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_raw(env_bytes(ending="\r\n", args=["x"]))
    await asyncio.wait_for(route.done.wait(), GUARD)
    await agi.wait_eof()
    await agi.close()
    [session] = route.sessions
    assert (session.env.script, session.env.args, session.env.channel) == (
        "ivr", ["x"], "PJSIP/trunk-00000001"
    )


async def test_a_blank_first_line_is_an_empty_environment(make_server: ServerFactory) -> None:
    """Lines after the first blank line are not environment (here: no route)."""
    route = Recorder()
    server = await make_server({"ivr": route})
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_raw(b"\n" + env_bytes())
        assert await agi.wait_eof() == b""
        await agi.close()
    assert route.sessions == []
    [event] = [e for e in logs if e["event"] == "agi_route_not_found"]
    assert event["route"] == ""


async def test_bytes_after_the_blank_line_belong_to_the_first_reply(
    make_server: ServerFactory,
) -> None:
    """A HANGUP written right after the environment (the caller left at once)
    reaches the session with the first command's reply."""
    route = Recorder(lambda s: s.get_variable("X"))
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_raw(env_bytes() + b"HANGUP\n")
    await agi.expect('GET VARIABLE "X"')
    await agi.send("200 result=1 (x)")
    await agi.wait_eof()
    await agi.close()
    assert route.results == ["x"]
    assert route.sessions[0].hung_up


async def test_reply_split_mid_line_and_mid_character(make_server: ServerFactory) -> None:
    route = Recorder(lambda s: s.get_variable("CALLERID(name)"))
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect('GET VARIABLE "CALLERID(name)"')
    reply = "200 result=1 (Олена)\n".encode()
    for piece in (reply[:5], reply[5:15], reply[15:16], reply[16:]):  # 15: inside "О"
        await agi.send_raw(piece)
        await asyncio.sleep(0.01)
    await agi.wait_eof()
    await agi.close()
    assert route.errors == [] and route.results == ["Олена"]


async def test_hangup_between_commands_is_seen_by_the_next_one(
    make_server: ServerFactory,
) -> None:
    """The HANGUP notice comes while the route is busy elsewhere (no command
    waiting); the next command still gets its reply, and hung_up is set."""
    between = asyncio.Event()
    hangup_written = asyncio.Event()
    seen: dict[str, object] = {}

    async def body(session: AgiSession) -> None:
        await session.answer()
        between.set()
        await hangup_written.wait()
        seen["value"] = await session.get_variable("HOTLINE_QUEUE")
        seen["hung_up"] = session.hung_up

    route = Recorder(body)
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("ANSWER")
    await agi.send("200 result=0")
    await asyncio.wait_for(between.wait(), GUARD)
    await agi.send("HANGUP")
    await asyncio.sleep(0.05)  # the server reads it with no command waiting
    hangup_written.set()
    await agi.expect('GET VARIABLE "HOTLINE_QUEUE"')
    await agi.send("200 result=1 (general)")
    await agi.wait_eof()
    await agi.close()
    assert seen == {"value": "general", "hung_up": True}


async def test_no_reply_in_time_is_a_timeout_and_the_session_writes_nothing_more(
    make_server: ServerFactory,
) -> None:
    after: list[BaseException] = []

    async def body(session: AgiSession) -> None:
        try:
            await session.command("ANSWER", reply_timeout=0.2)
        finally:
            try:
                await session.verbose("after the timeout")
            except AgiHangup as exc:
                after.append(exc)

    route = Recorder(body)
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("ANSWER")
    # no reply: the server gives up and closes without writing VERBOSE
    assert await agi.wait_eof() == b""
    await agi.close()
    [error] = route.errors
    assert isinstance(error, AgiTimeout)
    assert len(after) == 1 and route.sessions[0].hung_up


async def test_eof_inside_a_reply_is_a_hangup(make_server: ServerFactory) -> None:
    route = Recorder(lambda s: s.answer())
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("ANSWER")
    await agi.send_raw(b"200 res")  # cut: the rest never comes
    agi.writer.write_eof()
    assert await agi.wait_eof() == b""
    await agi.close()
    [error] = route.errors
    assert isinstance(error, AgiHangup) and "closed by Asterisk" in str(error)


async def test_reply_line_over_the_cap_ends_the_session(make_server: ServerFactory) -> None:
    """A reply that never ends is cut at max_line_bytes, not buffered."""
    route = Recorder(lambda s: s.answer())
    server = await make_server({"ivr": route}, env_limits=EnvLimits(max_line_bytes=1024))
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("ANSWER")
    sent = await agi.flood(b"2" * 512, 8 * 1024 * 1024)
    await agi.wait_refused()
    await agi.close()
    [error] = route.errors
    assert isinstance(error, AgiLimitExceeded) and "over 1024 bytes" in str(error)
    assert sent < 8 * 1024 * 1024  # the server stopped reading


async def test_what_comes_while_no_command_waits_is_not_all_buffered(
    make_server: ServerFactory,
) -> None:
    """A peer that writes while the route is busy (a database lookup) fills the
    socket, not the server: reading pauses after two lines' worth."""
    busy = asyncio.Event()
    release = asyncio.Event()

    async def body(session: AgiSession) -> None:
        busy.set()
        await release.wait()
        await session.answer()

    route = Recorder(body)
    server = await make_server({"ivr": route}, env_limits=EnvLimits(max_line_bytes=1024))
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await asyncio.wait_for(busy.wait(), GUARD)
    offered = 64 * 1024 * 1024
    sent = 0
    block = b"x" * 65536
    try:
        while sent < offered:
            agi.writer.write(block)
            await asyncio.wait_for(agi.writer.drain(), 1.0)
            sent += len(block)
    except TimeoutError:  # the socket is full: the server is not reading
        pass
    release.set()
    await asyncio.wait_for(route.done.wait(), GUARD)
    agi.writer.transport.abort()
    assert sent < offered // 4, f"the server took {sent} bytes"
    [error] = route.errors
    assert isinstance(error, AgiLimitExceeded)  # the unended line, once a command reads it


async def test_stop_closes_a_peer_cut_off_inside_its_environment(
    make_server: ServerFactory,
) -> None:
    server = await make_server({"ivr": Recorder()}, env_timeout=60.0)
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_raw(env_bytes()[:100])  # half an environment, then nothing
    async with asyncio.timeout(GUARD):
        while server.active_sessions < 1:  # noqa: ASYNC110 - no event for an accepted peer
            await asyncio.sleep(0.01)
    await server.stop()
    await agi.wait_refused()  # closed; a reset if its bytes were still unread
    await agi.close()
    assert server.active_sessions == 0


# --- the same server under uvloop --------------------------------------------------


def test_under_uvloop_sessions_caps_and_refusals_hold() -> None:
    """``hotline run`` picks uvloop when installed: a session, an environment
    cap, a busy refusal (a reset through uvloop's socket object) and a stop."""
    uvloop = needs_uvloop()

    async def scenario() -> dict[str, object]:
        loop_name = type(asyncio.get_running_loop()).__module__
        release = asyncio.Event()
        got: list[object] = []

        async def body(session: AgiSession) -> None:
            got.append(await session.get_data("menu", 3000, 1))
            await release.wait()

        server = FastAgiServer({"ivr": body}, "127.0.0.1", 0, max_sessions=1,
                               env_limits=EnvLimits(max_lines=30))
        await server.start()
        try:
            with capture_logs() as logs:
                # over the environment cap: closed, the slot freed
                flood = await FakeAsterisk.connect(server.port)
                await flood.send(*[f"agi_arg_{n}: x" for n in range(1, 40)], "")
                await flood.wait_refused()
                await flood.close()
                # a normal session holds the only slot…
                agi = await FakeAsterisk.connect(server.port)
                await agi.send_env("ivr")
                await agi.expect('GET DATA "menu" 3000 1')
                await agi.send("200 result=2")
                # …so the next peer is refused with a reset
                extra = await FakeAsterisk.connect(server.port)
                await extra.wait_refused()
                await extra.close()
                release.set()
                assert await agi.wait_eof() == b""
                await agi.close()
        finally:
            await server.stop()
        events = [e["event"] for e in logs]
        return {"loop": loop_name, "got": got, "events": events}

    result = uvloop.run(scenario())
    assert str(result["loop"]).startswith("uvloop")
    assert result["got"] == [("2", False)]
    events = result["events"]
    assert isinstance(events, list)
    assert "agi_env_too_large" in events and "agi_peer_refused" in events
    assert "agi_session_end" in events
