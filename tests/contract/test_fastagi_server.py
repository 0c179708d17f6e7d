"""The FastAGI server against a client that speaks like Asterisk, over real sockets."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from hotline.core.logs import configure_logging
from ivr.agi_protocol import AgiProtocolError
from ivr.server import (
    AgiCommandError,
    AgiHangup,
    AgiSession,
    EnvLimits,
    FastAgiServer,
    Route,
)
from tests.support.fake_agi_client import GUARD, FakeAsterisk, environment

ServerFactory = Callable[..., Awaitable[FastAgiServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[FastAgiServer] = []

    async def make(
        routes: dict[str, Route], host: str = "127.0.0.1", **kwargs: Any
    ) -> FastAgiServer:
        server = FastAgiServer(routes, host, 0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


class Recorder:
    """A route that remembers its sessions and runs a scripted body."""

    def __init__(self, body: Callable[[AgiSession], Awaitable[object]] | None = None) -> None:
        self.sessions: list[AgiSession] = []
        self.errors: list[BaseException] = []
        self.done = asyncio.Event()
        self._body = body

    async def __call__(self, session: AgiSession) -> None:
        self.sessions.append(session)
        try:
            if self._body is not None:
                await self._body(session)
        except Exception as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()


async def test_port_zero_binds_a_real_port(make_server: ServerFactory) -> None:
    server = await make_server({})
    assert server.port > 0


async def test_normal_session_commands_and_replies(make_server: ServerFactory) -> None:
    results: dict[str, object] = {}

    async def body(session: AgiSession) -> None:
        await session.answer()
        results["pressed"] = await session.stream_file("hello", "12")
        results["data"] = await session.get_data("basic-pbx-ivr-main", 3000, 1)
        results["timeout"] = await session.get_data("basic-pbx-ivr-main", 3000, 1)
        results["var"] = await session.get_variable("CALLERID(name)")
        results["unset"] = await session.get_variable("NOPE")
        await session.set_variable("HOTLINE_QUEUE", "housing")
        await session.verbose("hello there")

    route = Recorder(body)
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr", args=["uk"])
    await agi.expect("ANSWER")
    await agi.send("200 result=0")
    await agi.expect('STREAM FILE "hello" "12"')
    await agi.send("200 result=49 endpos=2000")
    await agi.expect('GET DATA "basic-pbx-ivr-main" 3000 1')
    await agi.send("200 result=3")
    await agi.expect('GET DATA "basic-pbx-ivr-main" 3000 1')
    await agi.send("200 result= (timeout)")
    await agi.expect('GET VARIABLE "CALLERID(name)"')
    await agi.send("200 result=1 (Олена Петренко)")
    await agi.expect('GET VARIABLE "NOPE"')
    await agi.send("200 result=0")
    await agi.expect('SET VARIABLE "HOTLINE_QUEUE" "housing"')
    await agi.send("200 result=1")
    await agi.expect('VERBOSE "hello there" 1')
    await agi.send("200 result=1")
    assert await agi.wait_eof() == b""  # the server closes: the dialplan goes on
    await agi.close()

    assert route.errors == []
    assert results == {
        "pressed": "1",
        "data": ("3", False),
        "timeout": ("", True),
        "var": "Олена Петренко",
        "unset": None,
    }
    env = route.sessions[0].env
    assert (env.script, env.args, env.uniqueid) == ("ivr", ["uk"], "1714000000.42")


async def test_route_matches_path_even_with_query(make_server: ServerFactory) -> None:
    route = Recorder()
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr?lang=uk&source=night")
    await agi.wait_eof()
    await agi.close()
    assert len(route.sessions) == 1
    assert route.sessions[0].env.query == {"lang": "uk", "source": "night"}


async def test_unknown_route_is_logged_and_closed(make_server: ServerFactory) -> None:
    route = Recorder()
    server = await make_server({"ivr": route})
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("nope?x=1")
        assert await agi.wait_eof() == b""  # nothing was sent: just closed
        await agi.close()
    assert route.sessions == []
    [event] = [e for e in logs if e["event"] == "agi_route_not_found"]
    assert event["route"] == "nope" and event["uniqueid"] == "1714000000.42"


async def test_eof_inside_environment_ends_the_session(make_server: ServerFactory) -> None:
    """panoramisk loops on b'' here and freezes the event loop."""
    route = Recorder()
    server = await make_server({"ivr": route})
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send("agi_network: yes", "agi_network_script: ivr", "agi_uniq")  # cut mid-line
        agi.writer.write_eof()
        assert await agi.wait_eof() == b""
        await agi.close()

        # The loop is alive and the server still serves a full session.
        second = await FakeAsterisk.connect(server.port)
        await second.send_env("ivr")
        await asyncio.wait_for(route.done.wait(), GUARD)
        await second.wait_eof()
        await second.close()
    assert len(route.sessions) == 1
    assert any(e["event"] == "agi_env_incomplete" for e in logs)


async def test_silent_peer_does_not_delay_other_sessions(make_server: ServerFactory) -> None:
    route = Recorder()
    server = await make_server({"ivr": route}, env_timeout=60.0)
    silent = await FakeAsterisk.connect(server.port)
    normal = await FakeAsterisk.connect(server.port)
    await normal.send_env("ivr")
    await asyncio.wait_for(route.done.wait(), GUARD)  # well under env_timeout
    await normal.wait_eof()
    await normal.close()
    assert len(route.sessions) == 1
    assert not silent.reader.at_eof()  # still waiting for its environment
    await server.stop()  # cancels the silent session…
    assert await silent.wait_eof() == b""  # …and closes its socket
    await silent.close()


async def test_silent_peer_is_dropped_after_env_timeout(make_server: ServerFactory) -> None:
    server = await make_server({}, env_timeout=0.2)
    with capture_logs() as logs:
        silent = await FakeAsterisk.connect(server.port)
        await silent.send("agi_network: yes")  # starts, then says nothing more
        assert await silent.wait_eof() == b""
        await silent.close()
    assert any(e["event"] == "agi_env_timeout" for e in logs)


async def test_multiline_520_does_not_desynchronise(make_server: ServerFactory) -> None:
    seen: dict[str, object] = {}

    async def body(session: AgiSession) -> None:
        with pytest.raises(AgiCommandError) as err:
            await session.command("GET DATA")
        seen["code"], seen["usage"] = err.value.code, err.value.usage
        seen["next"] = await session.get_variable("X")

    route = Recorder(body)
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("GET DATA")
    await agi.send(
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]",
        "       Stream the given file, and receive DTMF data.",
        "520 End of proper usage.",
    )
    await agi.expect('GET VARIABLE "X"')
    await agi.send("200 result=1 (x-value)")
    await agi.wait_eof()
    await agi.close()
    assert route.errors == []
    assert seen["code"] == 520
    assert "Usage: GET DATA" in str(seen["usage"])
    assert seen["next"] == "x-value"


async def test_510_raises_command_error(make_server: ServerFactory) -> None:
    route = Recorder(lambda s: s.command("FROB"))
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("FROB")
    await agi.send("510 Invalid or unknown command")
    await agi.wait_eof()
    await agi.close()
    [error] = route.errors
    assert isinstance(error, AgiCommandError) and error.code == 510


async def test_inline_hangup_then_511_raises_hangup(make_server: ServerFactory) -> None:
    async def body(session: AgiSession) -> None:
        await session.stream_file("hello")
        await session.get_data("basic-pbx-ivr-main", 5000, 1)

    route = Recorder(body)
    server = await make_server({"ivr": route})
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("ivr")
        await agi.expect('STREAM FILE "hello" ""')
        await agi.send("200 result=0 endpos=100")
        await agi.expect('GET DATA "basic-pbx-ivr-main" 5000 1')
        await agi.send("HANGUP", "511 Command Not Permitted on a dead channel or intercept routine")
        await agi.wait_eof()
        await agi.close()
    [error] = route.errors
    assert isinstance(error, AgiHangup)
    assert route.sessions[0].hung_up
    assert [e["event"] for e in logs if e["event"].startswith("agi_session_")] == [
        "agi_session_start",
        "agi_session_hangup",
    ]


async def test_hangup_notice_before_a_200_reply_still_returns_it(
    make_server: ServerFactory,
) -> None:
    got: list[str | None] = []

    async def body(session: AgiSession) -> None:
        got.append(await session.get_variable("HOTLINE_QUEUE"))

    route = Recorder(body)
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect('GET VARIABLE "HOTLINE_QUEUE"')
    await agi.send("HANGUP", "200 result=1 (general)")  # GET VARIABLE works on a dead channel
    await agi.wait_eof()
    await agi.close()
    assert got == ["general"]
    assert route.sessions[0].hung_up


async def test_socket_closed_by_asterisk_mid_command_is_a_hangup(
    make_server: ServerFactory,
) -> None:
    route = Recorder(lambda s: s.answer())
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("ANSWER")
    await agi.close()
    await asyncio.wait_for(route.done.wait(), GUARD)
    [error] = route.errors
    assert isinstance(error, AgiHangup)


async def test_failing_route_is_logged_with_uniqueid_and_closed(
    make_server: ServerFactory,
) -> None:
    async def body(session: AgiSession) -> None:
        raise RuntimeError("flow bug")

    route = Recorder(body)
    server = await make_server({"ivr": route})
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("ivr", uniqueid="1714000000.77")
        assert await agi.wait_eof() == b""
        await agi.close()
        # the server keeps serving after a failed route
        again = await FakeAsterisk.connect(server.port)
        await again.send_env("ivr")
        await again.wait_eof()
        await again.close()
    failures = [e for e in logs if e["event"] == "agi_route_failed"]
    assert len(failures) == 2
    assert failures[0]["uniqueid"] == "1714000000.77"
    assert failures[0]["log_level"] == "error" and failures[0]["exc_info"] is True


async def test_undecodable_bytes_are_replaced_and_logged(make_server: ServerFactory) -> None:
    route = Recorder()
    server = await make_server({"ivr": route})
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send("agi_network: yes", "agi_network_script: ivr")
        await agi.send_raw(b"agi_calleridname: \xd0\x9e\xff\xfe\n\n")  # "О" then junk
        await agi.wait_eof()
        await agi.close()
    [session] = route.sessions
    assert session.env.calleridname == "О\ufffd\ufffd"
    [event] = [e for e in logs if e["event"] == "agi_undecodable_bytes"]
    assert event["key"] == "agi_calleridname"


async def test_stop_cancels_running_sessions(make_server: ServerFactory) -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def body(session: AgiSession) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a flow stuck forever
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await make_server({"ivr": Recorder(body)})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await asyncio.wait_for(started.wait(), GUARD)
    await asyncio.wait_for(server.stop(), GUARD)
    assert cancelled.is_set()
    assert await agi.wait_eof() == b""
    await agi.close()
    with pytest.raises(OSError):
        await FakeAsterisk.connect(server.port)


async def test_caller_number_is_masked_in_real_log_output(
    make_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = structlog.get_config()
    configure_logging("json")
    try:
        server = await make_server({})
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("nope", callerid="380441234567")
        await agi.wait_eof()
        await agi.close()
    finally:
        structlog.configure(**saved)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    [event] = [e for e in lines if e["event"] == "agi_route_not_found"]
    assert event["caller"] == "38044*****67"
    assert "380441234567" not in json.dumps(lines)


async def test_garbage_reply_ends_the_session(make_server: ServerFactory) -> None:
    after: list[BaseException] = []

    async def body(session: AgiSession) -> None:
        try:
            await session.answer()
        finally:
            try:
                await session.verbose("after garbage")  # the stream is unusable now
            except AgiHangup as exc:
                after.append(exc)

    route = Recorder(body)
    server = await make_server({"ivr": route})
    agi = await FakeAsterisk.connect(server.port)
    await agi.send_env("ivr")
    await agi.expect("ANSWER")
    await agi.send("this is not AGI")
    assert await agi.wait_eof() == b""  # no VERBOSE was written after the garbage
    await agi.close()
    [error] = route.errors
    assert isinstance(error, AgiProtocolError)
    assert len(after) == 1


# --- bounds: what one peer, or many, can make the server hold ---------------

MiB = 1024 * 1024


def _memory_kib() -> dict[str, int]:
    status = Path("/proc/self/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.M)}


def _reset_peak_memory() -> None:
    """Linux: make VmHWM (the peak resident size) start again from now."""
    Path("/proc/self/clear_refs").write_text("5")


async def test_oversized_environment_is_cut_at_the_cap_and_memory_stays_bounded(
    make_server: ServerFactory,
) -> None:
    """One peer streamed 1.4 GB of environment lines and the server grew to 1.6 GB."""
    route = Recorder()
    # A long env_timeout: only the caps may stop the flood.
    server = await make_server({"ivr": route}, env_timeout=60.0)
    offered = 64 * MiB
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send("agi_network: yes", "agi_network_script: ivr")
        _reset_peak_memory()
        before = _memory_kib()["VmRSS"]
        sent = await agi.flood(b"agi_padding: " + b"x" * 100 + b"\n", offered)
        await agi.wait_refused()
        peak = _memory_kib()["VmHWM"]
        await agi.close()
    assert route.sessions == []
    # What the server could have held is at most what the socket took: the cap
    # (64 KiB) plus the kernel's socket buffers, not the flood.
    print(f"flood: socket took {sent} of {offered} bytes; peak RSS +{peak - before} KiB")
    assert sent < offered // 4, f"the server took {sent} bytes"
    assert (peak - before) * 1024 < 24 * MiB, f"peak resident size grew {peak - before} KiB"
    [event] = [e for e in logs if e["event"] == "agi_env_too_large"]  # logged once
    assert event["reason"] == "environment over 256 lines" and event["bytes"] <= 64 * 1024


@pytest.mark.parametrize(
    ("limits", "lines", "reason"),
    [
        (EnvLimits(max_lines=30), [f"agi_arg_{n}: x" for n in range(1, 40)], "over 30 lines"),
        (EnvLimits(max_bytes=2048), [f"agi_arg_{n}: {'y' * 200}" for n in range(1, 20)],
         "over 2048 bytes"),
        (EnvLimits(max_line_bytes=1024), [f"agi_calleridname: {'z' * 5000}"], "over 1024 bytes"),
    ],
    ids=["lines", "total-bytes", "line-bytes"],
)
async def test_environment_caps_end_the_session_once(
    make_server: ServerFactory, limits: EnvLimits, lines: list[str], reason: str
) -> None:
    route = Recorder()
    server = await make_server({"ivr": route}, env_limits=limits, env_timeout=60.0)
    with capture_logs() as logs:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send("agi_network: yes", "agi_network_script: ivr")
        await agi.flood("".join(f"{line}\n" for line in lines).encode(), 1)  # once
        await agi.send("")  # the block ends: the route would run now
        await agi.wait_refused()
        await agi.close()
        # the server is unharmed: a normal environment is served
        normal = await FakeAsterisk.connect(server.port)
        await normal.send_env("ivr")
        await asyncio.wait_for(route.done.wait(), GUARD)
        await normal.wait_eof()
        await normal.close()
    assert len(route.sessions) == 1
    [event] = [e for e in logs if e["event"] == "agi_env_too_large"]
    assert reason in event["reason"]


async def test_an_environment_just_under_the_caps_is_served(make_server: ServerFactory) -> None:
    route = Recorder()
    server = await make_server({"ivr": route}, env_limits=EnvLimits(max_lines=60))
    agi = await FakeAsterisk.connect(server.port)
    args = [f"a{n}" for n in range(60 - len(environment("ivr")))]
    await agi.send_env("ivr", args=args)
    await asyncio.wait_for(route.done.wait(), GUARD)
    await agi.wait_eof()
    await agi.close()
    [session] = route.sessions
    assert session.env.args == args


@pytest.mark.parametrize("held", ["idle", "in_route"])
async def test_peer_over_max_sessions_is_refused_at_once(
    make_server: ServerFactory, held: str
) -> None:
    """3,000 idle peers were all accepted and held; now the N+1st is closed at
    once (the dialplan takes its fallback) and served again once a slot frees."""
    release = asyncio.Event()
    running = asyncio.Semaphore(0)

    async def body(session: AgiSession) -> None:
        running.release()
        await release.wait()
        await session.set_variable("IVR_SOURCE", "fastagi")

    route = Recorder(body)
    server = await make_server({"ivr": route}, max_sessions=2, env_timeout=60.0)
    with capture_logs() as logs:
        first = await FakeAsterisk.connect(server.port)
        second = await FakeAsterisk.connect(server.port)
        if held == "in_route":
            for agi in (first, second):
                await agi.send_env("ivr")
                await asyncio.wait_for(running.acquire(), GUARD)
        else:
            async with asyncio.timeout(GUARD):  # both accepted, both silent
                # The server has no event for an accepted peer; its counter is polled.
                while server.active_sessions < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)

        extra = await FakeAsterisk.connect(server.port)
        await extra.wait_refused()
        await extra.close()
        assert server.active_sessions == 2

        # the held ones are still served
        if held == "idle":
            for agi in (first, second):
                await agi.send_env("ivr")
                await asyncio.wait_for(running.acquire(), GUARD)
        release.set()
        for agi in (first, second):
            await agi.expect('SET VARIABLE "IVR_SOURCE" "fastagi"')
            await agi.send("200 result=1")
            assert await agi.wait_eof() == b""
            await agi.close()

        # a slot is free again: the next peer is served
        later = await FakeAsterisk.connect(server.port)
        await later.send_env("ivr")
        await later.expect('SET VARIABLE "IVR_SOURCE" "fastagi"')
        await later.send("200 result=1")
        assert await later.wait_eof() == b""
        await later.close()
    assert len(route.sessions) == 3 and route.errors == []
    [refused] = [e for e in logs if e["event"] == "agi_peer_refused"]
    assert refused["reason"] == "busy" and refused["sessions"] == 2


@pytest.mark.parametrize(
    "allowed",
    [None, ["127.0.0.1"]],  # None: the default (127.0.0.1 and ::1)
    ids=["default", "explicit"],
)
async def test_peer_not_on_the_allow_list_is_refused(
    make_server: ServerFactory, allowed: list[str] | None
) -> None:
    route = Recorder()
    kwargs = {} if allowed is None else {"allowed_peers": allowed}
    server = await make_server({"ivr": route}, **kwargs)
    with capture_logs() as logs:
        stranger = await FakeAsterisk.connect(server.port, source="127.0.0.2")
        await stranger.wait_refused()
        await stranger.close()
        asterisk = await FakeAsterisk.connect(server.port, source="127.0.0.1")
        await asterisk.send_env("ivr")
        await asyncio.wait_for(route.done.wait(), GUARD)
        await asterisk.wait_eof()
        await asterisk.close()
    assert len(route.sessions) == 1
    [refused] = [e for e in logs if e["event"] == "agi_peer_refused"]
    assert refused["reason"] == "not_allowed" and "127.0.0.2" in refused["peer"]


async def test_allow_list_takes_networks(make_server: ServerFactory) -> None:
    """For Asterisk servers on other machines: addresses or networks."""
    route = Recorder()
    server = await make_server({"ivr": route}, "0.0.0.0", allowed_peers=["127.0.0.0/30"])
    for source in ("127.0.0.2", "127.0.0.3"):
        agi = await FakeAsterisk.connect(server.port, source=source)
        await agi.send_env("ivr")
        await agi.wait_eof()
        await agi.close()
    outsider = await FakeAsterisk.connect(server.port, source="127.0.0.9")
    await outsider.wait_refused()
    await outsider.close()
    assert len(route.sessions) == 2


def test_bad_allow_list_entry_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"asterisk\.example"):
        FastAgiServer({}, "127.0.0.1", 0, allowed_peers=["127.0.0.1", "asterisk.example"])
