"""Why our AMI and FastAGI layers are our own: panoramisk 1.4's defects, pinned.

Each test feeds the same bytes to panoramisk and to our code. The panoramisk
half asserts the defect as it is today; should a release fix it, that half
fails and tells us the library could be used there again. The other half is
the regression test of our replacement.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.fast_agi import Request
from panoramisk.manager import Manager

from cti_bridge.ami_client import AmiClient
from cti_bridge.ami_protocol import AmiMessage, AmiParser
from ivr.agi_protocol import ReplyParser
from tests.support.fake_ami_server import FakeAmiServer
from tests.support.paths import AMI_FIXTURES

FIXTURE = AMI_FIXTURES / "answered.txt"
NAME = "Тарас Шевченко"


def _split_inside_name() -> tuple[bytes, bytes]:
    data = FIXTURE.read_bytes()
    cut = data.index(NAME.encode()) + 1  # inside the two-byte "Т"
    return data[:cut], data[cut:]


def test_utf8_character_split_across_reads() -> None:
    first, second = _split_inside_name()

    seen: list[Any] = []

    class Factory:
        save_stream = None

        def dispatch(self, message: Any) -> None:
            seen.append(message)

    proto = AMIProtocol()
    proto.connection_made(None)
    proto.factory = Factory()
    proto.encoding = "utf8"
    proto.data_received(first)
    proto.data_received(second)
    names = {m.get("CallerIDName") for m in seen if m.get("CallerIDName", "").endswith("Шевченко")}
    assert NAME[1:] in names  # panoramisk: the split "Т" was silently dropped

    parser = AmiParser()
    ours = parser.feed(first) + parser.feed(second)
    assert NAME in {m.get("CallerIDName") for m in ours}


async def test_exception_in_a_plain_event_handler() -> None:
    manager = Manager(loop=asyncio.get_running_loop())

    def broken(_manager: Any, _event: Any) -> None:
        raise RuntimeError("bug in one handler")

    manager.register_event("Newchannel", broken)
    message = type("Msg", (), {"event": "Newchannel"})()
    # panoramisk: the exception escapes dispatch(), i.e. out of data_received,
    # which drops the connection and the rest of that read
    with pytest.raises(RuntimeError):
        manager.dispatch(message)

    server = FakeAmiServer()
    port = await server.start()
    client = AmiClient("127.0.0.1", port, "bridge", "s3cret", ping_interval=0)
    received: list[str] = []

    def broken_too(_msg: AmiMessage) -> None:
        raise RuntimeError("bug in one handler")

    client.on_event("Newchannel", broken_too)
    hangup_seen = asyncio.Event()

    def record(msg: AmiMessage) -> None:
        received.append(msg.event or "")
        if msg.event == "Hangup":
            hangup_seen.set()

    client.on_event("*", record)
    try:
        await client.start()
        await server.emit({"Event": "Newchannel", "Uniqueid": "1.1"},
                          {"Event": "Hangup", "Uniqueid": "1.1"})
        await asyncio.wait_for(hangup_seen.wait(), 5)
        assert client.connected
        assert received[-2:] == ["Newchannel", "Hangup"]
    finally:
        await client.close()
        await server.stop()


class NullWriter:
    """Where panoramisk's Request writes its commands: nowhere."""

    def write(self, _data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


MULTILINE_520 = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
    "   Stream the given file, and receive DTMF data.\n"
    "520 End of proper usage.\n"
)


async def test_multiline_520_desynchronises_panoramisk() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data((MULTILINE_520 + "200 result=1\n").encode())

    request = Request(None, {}, reader, NullWriter())
    await request.send_command("GET DATA")
    # panoramisk read one usage line; the next command now reads the rest of the
    # usage text as its reply and fails to parse it
    with pytest.raises(ValueError):
        await request.send_command("SET VARIABLE X 1")

    parser = ReplyParser()
    replies = [r for line in (MULTILINE_520 + "200 result=1\n").splitlines()
               if (r := parser.feed(line)) is not None]
    assert [r.code for r in replies] == [520, 200]
    assert replies[1].result == "1"


async def test_inline_hangup_is_taken_as_the_reply_by_panoramisk() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"HANGUP\n200 result=0\n")

    request = Request(None, {}, reader, NullWriter())
    first = await request.send_command("STREAM FILE hello \"\"")
    assert first.get("error") == "AGIResultHangup"  # the real reply is left unread

    parser = ReplyParser()
    assert parser.feed("HANGUP") is None
    reply = parser.feed("200 result=0")
    assert reply is not None and reply.code == 200 and parser.hangup_seen
