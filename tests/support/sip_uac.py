"""A minimal SIP user agent (UDP) that places one call, for tests against the
real Asterisk's PJSIP: INVITE, digest authentication, ACK, then BYE.

Debian 12 ships no sipp; this speaks just enough RFC 3261 for a trunk call
(the media is not sent: the test is about signalling and call records).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import cast


@dataclass
class SipResponse:
    status: int
    headers: dict[str, str]
    raw: str


def _parse(data: bytes) -> SipResponse | None:
    text = data.decode(errors="replace")
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    match = re.match(r"SIP/2\.0 (\d{3})", head[0])
    if match is None:
        return None  # a request from Asterisk (e.g. BYE); handled by the caller
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return SipResponse(int(match.group(1)), headers, text)


def digest(method: str, uri: str, challenge: str, user: str, password: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, nc = secrets.token_hex(8), "00000001"
    if "auth" in params.get("qop", ""):
        response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
                + (f', opaque="{params["opaque"]}"' if "opaque" in params else ""))
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5')


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


@dataclass
class SipCall:
    """One call from a trunk: ``await call.place()``, then ``await call.hang_up()``."""

    port: int  # Asterisk's SIP port on 127.0.0.1
    user: str
    password: str
    caller_number: str
    caller_name: str
    exten: str = "1551"
    call_id: str = field(default_factory=lambda: secrets.token_hex(12) + "@127.0.0.1")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    to_header: str = ""
    remote_target: str = ""
    cseq: int = 0
    seen: list[int] = field(default_factory=list)  # every final and provisional status

    async def __aenter__(self) -> SipCall:
        loop = asyncio.get_running_loop()
        self._inbox = _Inbox()
        await loop.create_datagram_endpoint(lambda: self._inbox, local_addr=("127.0.0.1", 0))
        assert self._inbox.transport is not None
        self.local_port = self._inbox.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._inbox.transport is not None:
            self._inbox.transport.close()

    @property
    def uri(self) -> str:
        return f"sip:{self.exten}@127.0.0.1:{self.port}"

    def _send(self, method: str, uri: str, cseq: int, extra: str = "", body: str = "") -> None:
        branch = "z9hG4bK" + secrets.token_hex(8)
        message = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f'From: "{self.caller_name}" <sip:{self.user}@127.0.0.1>;tag={self.from_tag}\r\n'
            f"To: {self.to_header or f'<{self.uri}>'}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@127.0.0.1:{self.local_port}>\r\n"
            f'P-Asserted-Identity: "{self.caller_name}" <sip:{self.caller_number}@127.0.0.1>\r\n'
            f"{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        assert self._inbox.transport is not None
        self._inbox.transport.sendto(message.encode(), ("127.0.0.1", self.port))

    async def _response(self, timeout: float = 10.0) -> SipResponse:
        async with asyncio.timeout(timeout):
            while True:
                data = await self._inbox.queue.get()
                response = _parse(data)
                if response is not None:
                    self.seen.append(response.status)
                    return response
                self._answer_request(data)

    def _answer_request(self, data: bytes) -> None:
        """Asterisk hung up (BYE) or probes us (OPTIONS): say 200 OK."""
        text = data.decode(errors="replace")
        keep = [line for line in text.split("\r\n\r\n")[0].split("\r\n")[1:]
                if line.split(":")[0].lower() in {"via", "from", "to", "call-id", "cseq"}]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
        assert self._inbox.transport is not None
        self._inbox.transport.sendto(reply.encode(), ("127.0.0.1", self.port))

    def _sdp(self) -> str:
        return (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.local_port + 2} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        )

    async def place(self) -> SipResponse:
        """INVITE until answered; returns the 200 OK (raises on a failure status)."""
        self.cseq += 1
        sdp_type = "Content-Type: application/sdp\r\n"
        self._send("INVITE", self.uri, self.cseq, sdp_type, self._sdp())
        authenticated = False
        while True:
            response = await self._response()
            if response.status < 200:
                continue
            if response.status in (401, 407) and authenticated:
                self.to_header = response.headers["to"]
                self._send("ACK", self.uri, self.cseq)
                raise PermissionError(f"credentials refused: {response.status}")
            if response.status in (401, 407):
                authenticated = True
                self.to_header = response.headers["to"]
                self._send("ACK", self.uri, self.cseq)
                self.to_header = ""
                header = "www-authenticate" if response.status == 401 else "proxy-authenticate"
                auth = digest("INVITE", self.uri, response.headers[header], self.user,
                              self.password)
                name = "Authorization" if response.status == 401 else "Proxy-Authorization"
                self.cseq += 1
                self._send("INVITE", self.uri, self.cseq, f"{name}: {auth}\r\n{sdp_type}",
                           self._sdp())
                continue
            if response.status != 200:
                raise AssertionError(f"call refused: {response.raw.splitlines()[0]}")
            self.to_header = response.headers["to"]
            contact = re.search(r"<([^>]+)>", response.headers.get("contact", ""))
            self.remote_target = contact.group(1) if contact else self.uri
            self._send("ACK", self.remote_target, self.cseq)
            return response

    async def hang_up(self) -> int:
        self.cseq += 1
        self._send("BYE", self.remote_target, self.cseq)
        while True:
            response = await self._response()
            if response.headers.get("cseq", "").endswith("BYE"):
                return response.status
