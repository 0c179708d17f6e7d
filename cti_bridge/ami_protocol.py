"""Asterisk Manager Interface wire format: bytes in, :class:`AmiMessage` out. No I/O.

Written instead of reusing panoramisk's parser because that one decodes each TCP
read on its own, so a UTF-8 character split across two reads (likely with a
Cyrillic caller name) is silently dropped.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

BANNER_PREFIX = "Asterisk Call Manager/"
_END_COMMAND = "--END COMMAND--"
# In a legacy ``Response: Follows`` message only these lines are headers; the
# rest (until --END COMMAND--) is raw CLI output, even if it contains a colon.
_FOLLOWS_HEADERS = frozenset({"response", "privilege", "actionid", "message"})
MAX_LINE = 1 << 20  # a line longer than this is garbage, not AMI; it is dropped


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: headers in wire order, repeated keys kept.

    ``errors`` holds the lines that could not be parsed (no colon, too long):
    they are reported, never fatal.
    """

    headers: tuple[tuple[str, str], ...]
    errors: tuple[str, ...] = ()
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


class AmiParser:
    """Incremental AMI parser: ``feed()`` any chunking of the stream, get whole messages.

    Lines end in ``\\r\\n`` (a lone ``\\n`` is accepted), a blank line ends a
    message. The first line may be the banner (``Asterisk Call Manager/11.0.0``).
    """

    def __init__(self) -> None:
        # The incremental decoder keeps a partial UTF-8 sequence for the next feed;
        # truly invalid bytes become U+FFFD instead of killing the connection.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._headers: list[tuple[str, str]] = []
        self._errors: list[str] = []
        self._follows = False  # inside a legacy "Response: Follows" block
        self._raw_output_started = False
        self._first_line = True
        self._skip_rest_of_line = False  # after dropping the head of an overlong line
        self.banner: str | None = None
        self.malformed_lines = 0

    @property
    def version(self) -> str | None:
        """AMI protocol version from the banner (``11.0.0`` on Asterisk 22)."""
        if self.banner is None:
            return None
        return self.banner.removeprefix(BANNER_PREFIX).strip()

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += self._decoder.decode(data)
        *lines, self._buffer = self._buffer.split("\n")
        if lines and self._skip_rest_of_line:
            self._skip_rest_of_line = False
            del lines[0]
        messages: list[AmiMessage] = []
        for line in lines:
            message = self._line(line.removesuffix("\r"))
            if message is not None:
                messages.append(message)
        if len(self._buffer) > MAX_LINE:
            self._error(self._buffer[:80] + "…(too long, dropped)")
            self._buffer = ""
            self._skip_rest_of_line = True
        return messages

    def _line(self, line: str) -> AmiMessage | None:
        if self._first_line:
            self._first_line = False
            if line.startswith(BANNER_PREFIX):
                self.banner = line
                return None
        if self._follows:
            return self._follows_line(line)
        if not line:
            return self._finish()
        key, colon, value = line.partition(":")
        if not colon or not key.strip():
            self._error(line)
            return None
        key = key.strip()
        self._headers.append((key, value.removeprefix(" ")))
        if len(self._headers) == 1 and key.lower() == "response":
            self._follows = value.strip().lower() == "follows"
        return None

    def _follows_line(self, line: str) -> AmiMessage | None:
        """Legacy Command output: raw lines until ``--END COMMAND--``, kept as ``Output``."""
        if line.endswith(_END_COMMAND):
            rest = line.removesuffix(_END_COMMAND)
            if rest:
                self._headers.append(("Output", rest))
            self._follows = self._raw_output_started = False
            return None
        key, colon, value = line.partition(":")
        if not self._raw_output_started and colon and key.strip().lower() in _FOLLOWS_HEADERS:
            self._headers.append((key.strip(), value.removeprefix(" ")))
        else:
            self._raw_output_started = True
            self._headers.append(("Output", line))
        return None

    def _error(self, line: str) -> None:
        self._errors.append(line)
        self.malformed_lines += 1

    def _finish(self) -> AmiMessage | None:
        if not self._headers and not self._errors:
            return None  # stray blank lines between messages
        message = AmiMessage(tuple(self._headers), tuple(self._errors))
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
