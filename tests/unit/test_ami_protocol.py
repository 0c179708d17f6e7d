"""AMI wire format: framing, UTF-8 across reads, repeated headers, bad input, encoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti_bridge.ami_protocol import AmiMessage, AmiParser, challenge_key, encode_action
from tests.support.paths import AMI_FIXTURES as FIXTURES

TRANSCRIPTS = sorted(FIXTURES.glob("*.txt"))
NAME = "Тарас Шевченко"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def parse(data: bytes) -> list[AmiMessage]:
    return AmiParser().feed(data)


def blocks(data: bytes) -> list[bytes]:
    """The transcript cut at message boundaries (each block ends with its blank line)."""
    parts = data.split(b"\r\n\r\n")
    assert parts[-1] == b""
    return [p + b"\r\n\r\n" for p in parts[:-1]]


def test_fixtures_are_present() -> None:
    assert [p.name for p in TRANSCRIPTS] == ["abandoned.txt", "answered.txt", "ivr_hangup.txt"]


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_parses_whole(path: Path) -> None:
    data = path.read_bytes()
    parser = AmiParser()
    messages = parser.feed(data)
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert parser.version == "11.0.0"
    assert parser.malformed_lines == 0
    assert len(messages) == data.count(b"\r\n\r\n")
    assert messages[0].response == "Success" and messages[0].action_id == "rec-1"
    assert all(m.is_event or m.is_response for m in messages)
    names = {m.get("CallerIDName") for m in messages if m.event == "NewCallerid"}
    assert names == {NAME}


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_split_at_every_byte_offset(path: Path) -> None:
    """Two feeds, cut at every offset of the file, parse exactly like one feed.

    Between messages the parser holds no state (the decoder is empty: a message
    ends in ASCII), so cutting the stream at offset k is the same as cutting the
    message that contains k; testing per message keeps this O(n·message) rather
    than O(n²) while still covering every offset of the file.
    """
    data = path.read_bytes()
    reference = parse(data)
    parts = blocks(data)
    assert len(parts) == len(reference)
    for index, block in enumerate(parts):
        for k in range(len(block) + 1):
            parser = AmiParser()
            if index:
                parser.feed(BANNER)  # the state at any later message boundary
            got = parser.feed(block[:k]) + parser.feed(block[k:])
            assert got == [reference[index]], f"{path.name}: offset {k} of message {index}"


def test_split_whole_stream_inside_cyrillic() -> None:
    """The literal two-feed split of the whole stream at every byte of the first names."""
    data = (FIXTURES / "answered.txt").read_bytes()
    reference = parse(data)
    encoded = NAME.encode()
    start = data.index(encoded)
    for k in range(start - 1, start + len(encoded) + 1):
        parser = AmiParser()
        assert parser.feed(data[:k]) + parser.feed(data[k:]) == reference, k


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_one_byte_at_a_time(path: Path) -> None:
    data = path.read_bytes()
    parser = AmiParser()
    got: list[AmiMessage] = []
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
    assert got == parse(data)
    assert parser.banner is not None


def test_repeated_headers_kept_in_order_and_case_insensitive() -> None:
    raw = (
        b"Response: Success\r\nActionID: 7\r\nMessage: Command output follows\r\n"
        b"Output: Name/username  Host\r\nOutput: 101/101  (Unspecified)\r\n"
        b"ChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n"
    )
    [msg] = parse(raw)
    assert msg.getall("output") == ["Name/username  Host", "101/101  (Unspecified)"]
    assert msg.getall("CHANVARIABLE") == ["A=1", "B=2"]
    assert msg.get("chanvariable") == "A=1"
    assert msg.get("missing") is None and msg.get("missing", "x") == "x"
    assert msg.getall("missing") == []
    assert msg.action_id == "7" and msg.response == "Success"
    assert msg.is_response and not msg.is_event
    assert [k for k, _ in msg][:3] == ["Response", "ActionID", "Message"]
    assert "OUTPUT" in msg and "nope" not in msg


def test_event_properties_and_empty_value() -> None:
    [msg] = parse(b"Event: Hangup\r\nAccountCode: \r\nCause-txt: Normal Clearing\r\n\r\n")
    assert msg.is_event and not msg.is_response and msg.event == "Hangup"
    assert msg.get("AccountCode") == "" and msg.get("cause-TXT") == "Normal Clearing"
    # An event that carries a Response header (OriginateResponse) is still an event.
    [orig] = parse(b"Event: OriginateResponse\r\nResponse: Success\r\nActionID: 3\r\n\r\n")
    assert orig.is_event and not orig.is_response and orig.action_id == "3"


def test_value_keeps_colons_and_inner_spaces() -> None:
    [msg] = parse(b"Event: X\r\nAppData: a:b: c\r\nEventTV: 2026-11-28T15:53:23.532+0000\r\n\r\n")
    assert msg.get("AppData") == "a:b: c"
    assert msg.get("EventTV") == "2026-11-28T15:53:23.532+0000"


def test_malformed_line_is_reported_not_fatal() -> None:
    parser = AmiParser()
    msgs = parser.feed(
        b"Event: A\r\nthis line has no colon\r\n: no key\r\nX: 1\r\n\r\nEvent: B\r\n\r\n"
    )
    assert [m.event for m in msgs] == ["A", "B"]
    assert msgs[0].errors == ("this line has no colon", ": no key")
    assert msgs[0].get("X") == "1"
    assert msgs[1].errors == ()
    assert parser.malformed_lines == 2


def test_garbage_only_block_is_surfaced() -> None:
    [msg] = parse(b"garbage\r\n\r\n")
    assert msg.headers == () and msg.errors == ("garbage",)
    assert not msg.is_event and not msg.is_response


def test_lone_lf_and_stray_blank_lines() -> None:
    msgs = parse(
        b"Asterisk Call Manager/11.0.0\n\r\n\nEvent: A\nK: v\n\n\r\nEvent: B\r\nK: w\r\n\r\n"
    )
    assert [(m.event, m.get("K")) for m in msgs] == [("A", "v"), ("B", "w")]


def test_no_banner_is_fine() -> None:
    parser = AmiParser()
    [msg] = parser.feed(b"Event: A\r\n\r\n")
    assert parser.banner is None and parser.version is None and msg.event == "A"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    [msg] = parse(b"Event: A\r\nCallerIDName: \xff\xfeok\r\n\r\n")
    assert msg.get("CallerIDName") == "\ufffd\ufffdok"


def test_incomplete_message_waits_for_more() -> None:
    parser = AmiParser()
    assert parser.feed(b"Event: A\r\nKey: va") == []
    assert parser.feed(b"lue\r\n") == []
    [msg] = parser.feed(b"\r\n")
    assert msg.get("Key") == "value"


def test_overlong_line_drops_its_message_and_resyncs() -> None:
    parser = AmiParser()
    assert parser.feed(b"Event: A\r\nActionID: 5\r\nJunk: " + b"x" * (2 << 20)) == []
    assert parser.buffered_bytes <= parser.max_message_bytes  # not 2 MiB held
    [msg] = parser.feed(b"\r\nK: v\r\n\r\nEvent: B\r\nK: w\r\n\r\n")
    assert (msg.event, msg.get("K"), msg.errors) == ("B", "w", ())
    [dropped] = parser.dropped
    assert dropped.event == "A" and dropped.action_id == "5"
    assert "bytes" in dropped.reason and dropped.size > parser.max_message_bytes
    assert parser.dropped_messages == 1 and parser.malformed_lines == 0


def test_message_with_too_many_headers_is_dropped_whole() -> None:
    parser = AmiParser(max_headers=10)
    many = b"".join(b"ChanVariable: V%d=x\r\n" % i for i in range(11))
    fits = b"".join(b"ChanVariable: V%d=x\r\n" % i for i in range(9))
    msgs = parser.feed(
        b"Event: Big\r\n" + many + b"\r\n" + b"Event: Fits\r\n" + fits + b"\r\n"
    )
    assert [m.event for m in msgs] == ["Fits"] and len(msgs[0].getall("ChanVariable")) == 9
    [dropped] = parser.dropped
    assert dropped.event == "Big" and dropped.lines == 10 and "10 lines" in dropped.reason


def test_garbage_lines_count_against_the_header_cap() -> None:
    parser = AmiParser(max_headers=50)
    msgs = parser.feed(b"Event: A\r\n" + b"no colon here\r\n" * 1000 + b"\r\nEvent: B\r\n\r\n")
    assert [m.event for m in msgs] == ["B"]
    assert parser.dropped_messages == 1 and parser.malformed_lines <= 50


def test_message_size_cap_is_exact() -> None:
    head = b"Event: A\r\nV: "
    fits = head + b"x" * (200 - len(head) - 4) + b"\r\n\r\n"
    assert len(fits) == 200
    [msg] = AmiParser(max_message_bytes=200).feed(fits)
    assert msg.size == 200 and msg.event == "A"
    too_big = head + b"x" * (200 - len(head) - 3) + b"\r\n\r\n"
    parser = AmiParser(max_message_bytes=200)
    assert parser.feed(too_big + b"Event: B\r\n\r\n")[0].event == "B"
    assert parser.dropped_messages == 1


def test_endless_follows_block_is_cut_and_the_stream_resyncs() -> None:
    parser = AmiParser(max_message_bytes=1024)
    flood = b"Response: Follows\r\nActionID: 9\r\n" + b"output line\r\n" * 500
    assert parser.feed(flood) == []
    [msg] = parser.feed(b"\r\nEvent: After\r\n\r\n")
    assert msg.event == "After"
    assert parser.dropped[0].action_id == "9"


def test_dropping_is_the_same_at_any_chunking() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n" + b"K: v\r\n" * 40 + b"\r\n"
        b"Event: Long\r\nV: " + b"y" * 700 + b"\r\n\r\nEvent: C\r\nN: \xd0\xa2\r\n\r\n"
    )
    whole = AmiParser(max_headers=20, max_message_bytes=512)
    reference = whole.feed(data)
    assert [m.event for m in reference] == ["C"] and whole.dropped_messages == 2
    for step in (1, 3, 7, 64):
        parser = AmiParser(max_headers=20, max_message_bytes=512)
        got = [m for i in range(0, len(data), step) for m in parser.feed(data[i : i + step])]
        assert got == reference and parser.dropped_messages == 2, step
        assert [d.event for d in parser.dropped] == ["A", "Long"]


def test_challenge_key_is_md5_of_challenge_then_secret() -> None:
    # echo -n '840656521s3cret' | md5sum
    assert challenge_key("840656521", "s3cret") == "b7c7c1f76457334bd37123b406486e61"
    assert challenge_key("1", "s3cret") != challenge_key("2", "s3cret")


def test_legacy_response_follows_keeps_command_output() -> None:
    raw = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 9\r\n"
        b"Name: value-looking output line\r\nplain line\r\n\r\nafter blank\r\n"
        b"last--END COMMAND--\r\n\r\nEvent: Next\r\n\r\n"
    )
    follows, nxt = parse(raw)
    assert follows.response == "Follows" and follows.action_id == "9"
    assert follows.get("Privilege") == "Command"
    assert follows.getall("Output") == [
        "Name: value-looking output line",
        "plain line",
        "",
        "after blank",
        "last",
    ]
    assert follows.errors == () and nxt.event == "Next"


def test_follows_end_marker_on_its_own_line() -> None:
    [msg] = parse(
        b"Response: Follows\r\nPrivilege: Command\r\nNo such command\r\n--END COMMAND--\r\n\r\n"
    )
    assert msg.getall("Output") == ["No such command"]


def test_encode_action() -> None:
    data = encode_action(
        "Originate",
        {"Channel": "Local/1551@hotline", "Variable": ["A=1", "NAME=Тарас"], "Async": "true"},
        "ab-1",
    )
    assert (
        data
        == (
            "Action: Originate\r\nActionID: ab-1\r\nChannel: Local/1551@hotline\r\n"
            "Variable: A=1\r\nVariable: NAME=Тарас\r\nAsync: true\r\n\r\n"
        ).encode()
    )
    assert encode_action("Ping", {}) == b"Action: Ping\r\n\r\n"
    # round trip through the parser
    [msg] = parse(data)
    assert msg.get("Action") == "Originate" and msg.getall("Variable") == ["A=1", "NAME=Тарас"]


@pytest.mark.parametrize(
    ("name", "headers", "action_id"),
    [
        ("Setvar", {"Value": "x\r\nAction: Hangup"}, "1"),
        ("Setvar", {"Value": "x\nAction: Hangup"}, "1"),
        ("Setvar", {"Value": ["ok", "bad\r"]}, "1"),
        ("Setvar\r\nAction: Hangup", {}, "1"),
        ("Setvar", {}, "1\r\nAction: Hangup"),
        ("Setvar", {"Bad\r\nKey": "v"}, "1"),
        ("Setvar", {"Bad:Key": "v"}, "1"),
        ("Setvar", {"": "v"}, "1"),
        ("Setvar", {"ActionID": "2"}, "1"),
    ],
)
def test_encode_action_refuses_injection(
    name: str, headers: dict[str, str | list[str]], action_id: str
) -> None:
    with pytest.raises(ValueError):
        encode_action(name, headers, action_id)


def test_message_builder_and_equality() -> None:
    a = AmiMessage.of(("Cause-txt", "Normal"), Event="Hangup")
    assert a.get("cause-txt") == "Normal" and a.event == "Hangup"
    assert a == AmiMessage((("Cause-txt", "Normal"), ("Event", "Hangup")))
    assert a != AmiMessage((("Event", "Hangup"),))
