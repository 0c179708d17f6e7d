"""The FastAGI protocol code, entirely in memory."""

from __future__ import annotations

import pytest

from ivr.agi_protocol import (
    AgiProtocolError,
    AgiReply,
    ReplyParser,
    encode_command,
    parse_environment,
    split_script,
)
from tests.support.fake_agi_client import environment


def feed_all(parser: ReplyParser, *lines: str) -> list[AgiReply]:
    return [r for line in lines if (r := parser.feed(line)) is not None]


def test_environment_fields_args_and_raw() -> None:
    lines = environment("ivr", args=["uk", "a b"], extra={"agi_arg_10": "tenth"})
    env = parse_environment([*lines, "", "agi_after_blank: ignored"])
    assert env.script == "ivr"
    assert env.query == {}
    assert env.uniqueid == "1714000000.42"
    assert env.channel == "PJSIP/trunk-00000001"
    assert env.callerid == "380441234567"
    assert env.calleridname == "Олена Петренко"
    assert (env.language, env.context, env.extension) == ("uk", "hotline-inbound", "1551")
    # numeric order, not string order: agi_arg_10 comes after agi_arg_2
    assert env.args == ["uk", "a b", "tenth"]
    assert env.raw["agi_accountcode"] == ""
    assert "agi_after_blank" not in env.raw


def test_environment_keeps_value_spaces_and_colons() -> None:
    env = parse_environment(["agi_calleridname:  Ivan: CEO\r\n", "agi_network_script: ivr\n"])
    assert env.calleridname == " Ivan: CEO"


def test_route_path_is_split_from_query() -> None:
    env = parse_environment(["agi_network_script: ivr?lang=uk&retry=2", ""])
    assert env.script == "ivr"
    assert env.query == {"lang": "uk", "retry": "2"}
    assert split_script("/flows/status/?x=") == ("flows/status", {"x": ""})


def test_script_falls_back_to_agi_request_path() -> None:
    env = parse_environment(["agi_request: agi://127.0.0.1:4573/ivr?lang=en", ""])
    assert (env.script, env.query) == ("ivr", {"lang": "en"})


@pytest.mark.parametrize(
    ("line", "result", "data", "endpos"),
    [
        ("200 result=0", "0", None, None),
        ("200 result=1 (some value with spaces)", "1", "some value with spaces", None),
        ("200 result=1 (a (nested) value)", "1", "a (nested) value", None),
        ("200 result=0 endpos=12345", "0", None, 12345),
        ("200 result=49 (dtmf) endpos=8000", "49", "dtmf", 8000),
        ("200 result= (timeout)", "", "timeout", None),
        ("200 result=12 (timeout)", "12", "timeout", None),
        ("200 result=-1", "-1", None, None),
        ("200 result=1x", "1x", None, None),
        ("200 result=2\r", "2", None, None),
    ],
)
def test_200_replies(line: str, result: str, data: str | None, endpos: int | None) -> None:
    reply = ReplyParser().feed(line)
    assert reply is not None and reply.ok
    assert (reply.code, reply.result, reply.data, reply.endpos) == (200, result, data, endpos)


def test_510_and_511_are_single_line_errors() -> None:
    parser = ReplyParser()
    r510, r511 = feed_all(
        parser,
        "510 Invalid or unknown command",
        "511 Command Not Permitted on a dead channel or intercept routine",
    )
    assert (r510.code, r510.ok, r510.result) == (510, False, None)
    assert r511.code == 511 and "dead channel" in r511.text


def test_multiline_520_is_one_reply_and_the_next_reply_is_separate() -> None:
    parser = ReplyParser()
    usage = [
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]",
        "",
        "200 result=0 looks like a reply but is usage text",
        "520 End of proper usage.",
    ]
    assert [parser.feed(line) for line in usage[:-1]] == [None] * 4
    reply = parser.feed(usage[-1])
    assert reply is not None and reply.code == 520 and not reply.ok
    assert reply.lines == usage
    assert "Usage: GET DATA" in reply.text
    following = parser.feed("200 result=1 (next)")
    assert following is not None and following.data == "next"


def test_single_line_520() -> None:
    reply = ReplyParser().feed("520 Invalid command syntax.  Proper usage not available.")
    assert reply is not None and reply.code == 520


def test_inline_hangup_is_a_notice_not_a_reply() -> None:
    parser = ReplyParser()
    assert parser.feed("HANGUP") is None
    assert parser.hangup_seen
    reply = parser.feed("511 Command Not Permitted on a dead channel or intercept routine")
    assert reply is not None and reply.code == 511


@pytest.mark.parametrize(
    "line",
    # the last two pass the digits-only shortcut by and still meet the full grammar
    ["hello", "200 resul=1", "20 result=1", "2000 x", "200 result=1\tjunk", "200 result=-\x0b1",
     # short numeric lines: a protocol error, not an IndexError
     "1", "20", "5\r\n"],
)
def test_garbage_is_a_protocol_error(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        ReplyParser().feed(line)


def test_encode_command_quotes_strings_not_ints() -> None:
    assert encode_command("GET DATA", "file", 5000, 1) == 'GET DATA "file" 5000 1\n'
    assert encode_command("ANSWER") == "ANSWER\n"
    assert encode_command("STREAM FILE", "hello", "") == 'STREAM FILE "hello" ""\n'
    assert (
        encode_command("SET VARIABLE", "NOTE", 'say "hi" \\ bye')
        == 'SET VARIABLE "NOTE" "say \\"hi\\" \\\\ bye"\n'
    )


@pytest.mark.parametrize("bad", ["two\nlines", "carriage\rreturn"])
def test_encode_command_refuses_line_breaks(bad: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_command("VERBOSE", bad, 1)


def test_encode_command_refuses_bool() -> None:
    with pytest.raises(TypeError):
        encode_command("VERBOSE", "x", True)
