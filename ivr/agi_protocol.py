"""FastAGI protocol, pure: lines in, environment / replies out, no I/O.

Facts from Asterisk 22 ``res/res_agi.c`` (see DESIGN.md): the environment is
``agi_key: value`` lines ending in a blank line; replies are
``200 result=<n> [(data)] [endpos=<n>]``, ``510``, ``511`` or a ``520`` that
can span several lines (``520-…`` until ``520 …``); with AGISIGHUP an inline
``HANGUP`` line can arrive between replies and is not a reply itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from hotline.core.errors import PeerError


class AgiError(PeerError):
    """Base of everything a FastAGI session can raise."""

    error_id = "agi_error"


class AgiHangup(AgiError):
    """The channel is gone: ``HANGUP`` seen, a 511 reply, or the socket closed."""

    error_id = "agi_hangup"


class AgiCommandError(AgiError):
    """Asterisk rejected a command: 510 (unknown) or 520 (usage, text in ``usage``)."""

    error_id = "agi_command_refused"

    def __init__(self, message: str, code: int, usage: str = "") -> None:
        super().__init__(message, details={"code": code})
        self.code = code
        self.usage = usage


class AgiProtocolError(AgiError):
    """The peer sent something that is not AGI (a remote error, not ours)."""

    error_id = "agi_protocol_error"


class AgiLimitExceeded(AgiProtocolError):
    """The peer sent more than a FastAGI session may: a line or an environment
    over its cap (Asterisk's own environment is ~25 short lines)."""

    error_id = "agi_limit_exceeded"


class AgiTimeout(AgiError):
    """Asterisk did not answer a command in time."""

    error_id = "agi_timeout"


HANGUP_LINE = "HANGUP"

_REPLY_200 = re.compile(
    r"^200 result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?: endpos=(?P<endpos>-?\d+))?\s*$"
)
_ARG_KEY = re.compile(r"^agi_arg_(\d+)$")


@dataclass(frozen=True)
class AgiEnvironment:
    """The ``agi_*`` block Asterisk sends on connect.

    ``script`` is the route path of ``agi_network_script`` without the query
    string (``ivr?lang=uk`` gives ``script="ivr"``, ``query={"lang": "uk"}``).
    """

    script: str
    query: dict[str, str]
    uniqueid: str
    channel: str
    callerid: str
    calleridname: str
    language: str
    context: str
    extension: str
    args: list[str]
    raw: dict[str, str]


def split_script(network_script: str) -> tuple[str, dict[str, str]]:
    """``"ivr/?a=1&b=2"`` → ``("ivr", {"a": "1", "b": "2"})``; slashes at the ends do not count."""
    path, _, query = network_script.partition("?")
    return path.strip("/"), dict(parse_qsl(query, keep_blank_values=True)) if query else {}


def parse_environment(lines: Iterable[str]) -> AgiEnvironment:
    """Build the environment from its lines; stops at the first blank line.

    Lines without a ``:`` are ignored (Asterisk never sends them).
    """
    raw: dict[str, str] = {}
    # Runs once per call on every line: kept to a few C calls per line.
    for line in lines:
        key, sep, value = line.rstrip("\r\n").partition(":")
        if not sep:
            if not key:  # the blank line
                break
            continue
        # Asterisk writes "key: value"; drop that one space only, the value
        # itself (a caller name) may start with spaces.
        raw[key.strip()] = value[1:] if value[:1] == " " else value

    script_field = raw.get("agi_network_script")
    if script_field is None:  # not FastAGI: take the path of agi_request
        url = urlsplit(raw.get("agi_request", ""))
        script_field = url.path + ("?" + url.query if url.query else "")
    script, query = split_script(script_field)

    numbered = sorted(
        (int(m.group(1)), value)
        for key, value in raw.items()
        if key.startswith("agi_arg_") and (m := _ARG_KEY.match(key))
    )
    return AgiEnvironment(
        script=script,
        query=query,
        uniqueid=raw.get("agi_uniqueid", ""),
        channel=raw.get("agi_channel", ""),
        callerid=raw.get("agi_callerid", ""),
        calleridname=raw.get("agi_calleridname", ""),
        language=raw.get("agi_language", ""),
        context=raw.get("agi_context", ""),
        extension=raw.get("agi_extension", ""),
        args=[value for _, value in numbered],
        raw=raw,
    )


@dataclass(frozen=True)
class EnvLimits:
    """Caps on what a peer may send before its session starts.

    Asterisk 22 sends about 25 ``agi_*`` lines plus at most 128 ``agi_arg_N``
    (``MAX_ARGS`` in res_agi.c), each well under a kilobyte; the defaults leave
    room for that and stop a peer that streams more (memory stays bounded).
    """

    max_lines: int = 256
    max_line_bytes: int = 8192
    max_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if min(self.max_lines, self.max_line_bytes, self.max_bytes) < 1:
            raise ValueError(f"environment limits must be positive: {self}")


class EnvironmentCollector:
    """Collects environment lines under :class:`EnvLimits`; pure, no I/O.

    :meth:`feed` takes one line (without its ending) and the number of bytes it
    took on the wire; it returns the environment at the blank line that ends
    the block, None before, and raises :class:`AgiLimitExceeded` once a cap is
    passed (the caller ends the session; nothing more is kept).
    """

    def __init__(self, limits: EnvLimits) -> None:
        self.limits = limits
        self.lines: list[str] = []
        self.size = 0

    def feed(self, line: str, size: int) -> AgiEnvironment | None:
        if not line:
            return parse_environment(self.lines)
        self.size += size
        if size > self.limits.max_line_bytes + 2:  # + "\r\n"
            raise AgiLimitExceeded(f"environment line of {size} bytes")
        if len(self.lines) >= self.limits.max_lines:
            raise AgiLimitExceeded(f"environment over {self.limits.max_lines} lines")
        if self.size > self.limits.max_bytes:
            raise AgiLimitExceeded(f"environment over {self.limits.max_bytes} bytes")
        self.lines.append(line)
        return None


@dataclass(frozen=True)
class AgiReply:
    """One complete reply. ``result`` and ``data`` are set for 200 only;
    ``lines`` holds every line of the reply (several for a multi-line 520)."""

    code: int
    result: str | None = None
    data: str | None = None
    endpos: int | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ReplyParser:
    """Incremental reply parser: feed one line at a time, get a reply when complete.

    A ``HANGUP`` line is a notice, not a reply: it sets :attr:`hangup_seen`
    and :meth:`feed` keeps waiting for the real reply.
    """

    def __init__(self) -> None:
        self.hangup_seen = False
        self._usage: list[str] | None = None  # inside a multi-line 520

    def feed(self, line: str) -> AgiReply | None:
        line = line.rstrip("\r\n")
        if self._usage is not None:
            self._usage.append(line)
            if line.startswith("520 "):
                lines, self._usage = self._usage, None
                return AgiReply(code=520, lines=lines)
            return None
        if line[:11] == "200 result=":  # the usual reply, without the regex
            rest = line[11:]
            if rest.isdigit() or (rest[:1] == "-" and rest[1:].isdigit()):
                return AgiReply(code=200, result=rest, lines=[line])
        if line == HANGUP_LINE:
            self.hangup_seen = True
            return None
        if not line:  # stray blank line between replies: nothing to answer
            return None
        if line.startswith("520-"):
            self._usage = [line]
            return None
        if line.startswith("200"):
            m = _REPLY_200.match(line)
            if m is None:
                raise AgiProtocolError(f"malformed 200 reply: {line!r}")
            endpos = m.group("endpos")
            return AgiReply(
                code=200,
                result=m.group("result"),
                data=m.group("data"),
                endpos=int(endpos) if endpos is not None else None,
                lines=[line],
            )
        code = line[:3]
        if len(code) == 3 and code.isdigit() and (len(line) == 3 or line[3] == " "):
            return AgiReply(code=int(code), lines=[line])
        raise AgiProtocolError(f"not an AGI reply: {line!r}")


def quote_arg(arg: str | int) -> str:
    """Ints go bare; strings are always double-quoted, with ``"`` and ``\\``
    backslash-escaped the way ``parse_args`` in res_agi.c reads them."""
    if isinstance(arg, str):
        if "\\" in arg or '"' in arg:
            arg = arg.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{arg}"'
    if isinstance(arg, bool):  # bool is an int; "True" would be a silent bug
        raise TypeError("AGI arguments are str or int, not bool")
    if isinstance(arg, int):
        return str(arg)
    raise TypeError(f"AGI arguments are str or int, not {type(arg).__name__}")


def encode_command(command: str, *args: str | int) -> str:
    """``encode_command("GET DATA", "file", 5000, 1)`` → ``'GET DATA "file" 5000 1\\n'``.

    A line break in the command or an argument would inject a second command,
    so it is refused.
    """
    parts = [command.strip(), *map(quote_arg, args)]
    line = " ".join(parts)
    if "\n" in line or "\r" in line:
        raise ValueError("AGI command or argument contains a line break")
    if not parts[0]:
        raise ValueError("empty AGI command")
    return line + "\n"
