"""Asterisk Manager Interface wire format: bytes in, :class:`AmiMessage` out. No I/O.

Written instead of reusing panoramisk's parser because that one decodes each TCP
read on its own, so a UTF-8 character split across two reads (likely with a
Cyrillic caller name) is silently dropped. Here the stream is cut into lines as
bytes (``\\n`` never occurs inside a UTF-8 sequence) and each whole line is decoded.

Input is bounded: a message with more than ``max_headers`` lines or more than
``max_message_bytes`` bytes is dropped whole (reported in ``AmiParser.dropped``),
and parsing resumes after the next blank line. The parser then never holds more
than about one message's worth of memory, whatever the peer sends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

BANNER_PREFIX = "Asterisk Call Manager/"
_END_COMMAND = "--END COMMAND--"
# In a legacy ``Response: Follows`` message only these lines are headers; the
# rest (until --END COMMAND--) is raw CLI output, even if it contains a colon.
_FOLLOWS_HEADERS = frozenset({"response", "privilege", "actionid", "message"})
# Real Asterisk 22 events have a few dozen headers and stay under a few KiB
# (ChanVariable lines included); Asterisk itself accepts at most 128 headers in
# an action. Far above both, far below what would hurt.
MAX_HEADERS = 512
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: headers in wire order, repeated keys kept.

    ``errors`` holds the lines that could not be parsed (no colon): they are
    reported, never fatal. ``size`` is the message's length on the wire (0 when
    built in code); the client's event backlog is bounded in bytes with it.
    """

    headers: tuple[tuple[str, str], ...]
    errors: tuple[str, ...] = ()
    size: int = field(default=0, compare=False)
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for key, value in self.headers:
            index.setdefault(key.lower(), []).append(value)
        object.__setattr__(self, "_index", index)

    @classmethod
    def of(cls, *pairs: tuple[str, str], **headers: str) -> AmiMessage:
        """Build a message in code (tests, fake servers): ``AmiMessage.of(Event="Hangup")``."""
        return cls((*pairs, *headers.items()))

    def get(self, key: str, default: str | None = None) -> str | None:
        """First value of ``key`` (case-insensitive), or ``default``."""
        values = self._index.get(key.lower())
        return values[0] if values else default

    def getall(self, key: str) -> list[str]:
        return list(self._index.get(key.lower(), ()))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.headers)

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def is_event(self) -> bool:
        return "event" in self._index

    @property
    def is_response(self) -> bool:
        return "response" in self._index and "event" not in self._index


@dataclass(frozen=True, slots=True)
class DroppedMessage:
    """A message the parser refused whole, for the caller to log (no header values:
    they may hold callers' numbers)."""

    reason: str
    event: str | None
    action_id: str | None
    lines: int
    size: int


class AmiParser:
    """Incremental AMI parser: ``feed()`` any chunking of the stream, get whole messages.

    Lines end in ``\\r\\n`` (a lone ``\\n`` is accepted), a blank line ends a
    message. The first line may be the banner (``Asterisk Call Manager/11.0.0``).
    Oversized messages are dropped (see the module docstring); the caller takes
    the reports from ``dropped`` (and clears it).
    """

    def __init__(
        self, *, max_headers: int = MAX_HEADERS, max_message_bytes: int = MAX_MESSAGE_BYTES
    ) -> None:
        if max_headers < 1 or max_message_bytes < 64:
            raise ValueError("AMI parser limits too small to hold any real message")
        self.max_headers = max_headers
        self.max_message_bytes = max_message_bytes
        self._buffer = b""
        self._headers: list[tuple[str, str]] = []
        self._errors: list[str] = []
        self._size = 0  # bytes of the message in progress
        self._follows = False  # inside a legacy "Response: Follows" block
        self._raw_output_started = False
        self._first_line = True
        self._skip_rest_of_line = False  # after dropping the head of an overlong line
        self._discarding = False  # inside an oversized message, until its blank line
        self.banner: str | None = None
        self.malformed_lines = 0
        self.dropped: list[DroppedMessage] = []
        self.dropped_messages = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the message in progress (bounded by ``max_message_bytes``)."""
        return len(self._buffer) + self._size

    @property
    def version(self) -> str | None:
        """AMI protocol version from the banner (``11.0.0`` on Asterisk 22)."""
        if self.banner is None:
            return None
        return self.banner.removeprefix(BANNER_PREFIX).strip()

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        end = self._buffer.rfind(b"\n")
        messages: list[AmiMessage] = []
        if end >= 0:
            region, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            # One decode for all the whole lines; the byte lengths come from the
            # bytes, line for line (a "\n" survives decoding, even after bad bytes).
            sizes = [len(raw) + 1 for raw in region.split(b"\n")]
            lines = region.decode("utf-8", errors="replace").split("\n")
            if self._skip_rest_of_line:
                self._skip_rest_of_line = False
                del sizes[0], lines[0]
            for size, line in zip(sizes, lines, strict=True):
                message = self._sized_line(size, line.removesuffix("\r"))
                if message is not None:
                    messages.append(message)
        if len(self._buffer) + self._size > self.max_message_bytes:
            # A line still growing past the cap: its head goes now, its tail when it ends.
            if not self._discarding:
                self._drop(f"larger than {self.max_message_bytes} bytes", len(self._buffer))
            self._buffer = b""
            self._skip_rest_of_line = True
        return messages

    def _sized_line(self, size: int, line: str) -> AmiMessage | None:
        if self._discarding:
            if not line:
                self._discarding = False
            return None
        if self._first_line:
            self._first_line = False
            if line.startswith(BANNER_PREFIX):
                self.banner = line
                return None
        self._size += size
        if self._size > self.max_message_bytes:
            self._drop(f"larger than {self.max_message_bytes} bytes")
            if not line:  # the blank line that overflowed it also ended it
                self._discarding = False
            return None
        if not line and not self._follows:
            return self._finish()
        if len(self._headers) + len(self._errors) >= self.max_headers:
            self._drop(f"more than {self.max_headers} lines")
        elif self._follows:
            self._follows_line(line)
        else:
            key, colon, value = line.partition(":")
            if not colon or not key.strip():
                self._error(line)
                return None
            key = key.strip()
            self._headers.append((key, value.removeprefix(" ")))
            if len(self._headers) == 1 and key.lower() == "response":
                self._follows = value.strip().lower() == "follows"
        return None

    def _follows_line(self, line: str) -> None:
        """Legacy Command output: raw lines until ``--END COMMAND--``, kept as ``Output``."""
        if line.endswith(_END_COMMAND):
            rest = line.removesuffix(_END_COMMAND)
            if rest:
                self._headers.append(("Output", rest))
            self._follows = self._raw_output_started = False
            return
        key, colon, value = line.partition(":")
        if not self._raw_output_started and colon and key.strip().lower() in _FOLLOWS_HEADERS:
            self._headers.append((key.strip(), value.removeprefix(" ")))
        else:
            self._raw_output_started = True
            self._headers.append(("Output", line))

    def _error(self, line: str) -> None:
        self._errors.append(line)
        self.malformed_lines += 1

    def _drop(self, reason: str, pending: int = 0) -> None:
        """Forget the message in progress and skip to its blank line."""
        first = {key.lower(): value for key, value in reversed(self._headers)}
        self.dropped.append(DroppedMessage(
            reason=reason,
            event=first.get("event"),
            action_id=first.get("actionid"),
            lines=len(self._headers) + len(self._errors),
            size=self._size + pending,
        ))
        self.dropped_messages += 1
        self._headers, self._errors = [], []
        self._size = 0
        self._follows = self._raw_output_started = False
        self._first_line = False
        self._discarding = True

    def _finish(self) -> AmiMessage | None:
        size, self._size = self._size, 0
        if not self._headers and not self._errors:
            return None  # stray blank lines between messages
        message = AmiMessage(tuple(self._headers), tuple(self._errors), size)
        self._headers, self._errors = [], []
        return message


def encode_action(
    name: str, headers: Mapping[str, str | list[str]], action_id: str | None = None
) -> bytes:
    """Serialise an action. A list value repeats the header (``Variable``).

    CR or LF anywhere would let a value smuggle extra headers or a whole extra
    action (header injection), so they are refused with ``ValueError``.
    """
    lines = [("Action", name)]
    if action_id is not None:
        lines.append(("ActionID", action_id))
    for key, value in headers.items():
        if key.lower() in ("action", "actionid"):
            raise ValueError(f"AMI header {key!r} is set by encode_action itself")
        for item in [value] if isinstance(value, str) else value:
            lines.append((key, item))
    out: list[str] = []
    for key, value in lines:
        if not key or ":" in key or any(c in key for c in "\r\n \t"):
            raise ValueError(f"invalid AMI header name {key!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR/LF in the value of AMI header {key!r}")
        out.append(f"{key}: {value}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8")


def challenge_key(challenge: str, secret: str) -> str:
    """The ``Key`` of an MD5 challenge login: ``md5(challenge + secret)`` in hex.

    What manager.c computes for ``Action: Login`` with ``AuthType: MD5`` after
    ``Action: Challenge``; the secret itself never crosses the wire.
    """
    return hashlib.md5((challenge + secret).encode(), usedforsecurity=False).hexdigest()
