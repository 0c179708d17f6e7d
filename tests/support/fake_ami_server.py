"""A small AMI server that behaves like Asterisk 22's manager.c where the client cares.

Banner ``Asterisk Call Manager/11.0.0``, Challenge and Login as manager.c does
them (``Action: Challenge`` with ``AuthType: MD5`` answers a random number, kept
for the session; ``Login`` takes ``AuthType: MD5`` + ``Key: md5(challenge +
secret)`` or a plain ``Secret``; a wrong one → ``Response: Error`` and the
connection closed; before a login only Login, Logoff and Challenge are allowed),
ActionID echoed, Ping/Pong, EventList actions, events pushed on demand,
transcripts replayed in small chunks, and the faults a client must survive: a
dropped connection, a Ping never answered, an action never answered. Every byte
a client sends is kept in ``received``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from cti_bridge.ami_protocol import AmiMessage, AmiParser, challenge_key

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def format_message(headers: Headers) -> bytes:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return "".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n"


def transcript_events(path: Path) -> bytes:
    """A recorded transcript without the banner and the recorder's own Login response."""
    data = path.read_bytes().removeprefix(BANNER)
    return data.split(b"\r\n\r\n", 1)[1]


class FakeAmiServer:
    def __init__(self, username: str = "bridge", secret: str = "s3cret") -> None:
        self.username, self.secret = username, secret
        self.answer_ping = True
        self.silent_actions: set[str] = set()  # lower-case names never answered
        # name → (complete, items); an item as pairs can repeat a header (Status's Variable)
        self.lists: dict[str, tuple[str, list[Headers]]] = {}
        self.replies: dict[str, dict[str, str]] = {}  # name → extra headers of its Success
        self.errors: dict[str, str] = {}  # lower-case name → Message of an Error reply
        self.logins = 0
        self.login_methods: list[str] = []  # "md5" or "plain", per accepted login
        self.challenge_supported = True  # False: an AMI that does not know Challenge
        self.received = bytearray()  # every byte of every client, in arrival order
        self.actions: list[AmiMessage] = []
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._authed: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop()
        if self._server is not None:
            await self._server.wait_closed()

    async def drop(self) -> None:
        """Cut every client connection, as an Asterisk restart would."""
        clients = list(self._conns.items())
        for writer, _task in clients:
            writer.transport.abort()
        for _writer, task in clients:
            await asyncio.wait([task])

    async def send(self, data: bytes, chunk: int | None = None) -> None:
        """Write raw bytes to every logged-in client, optionally in ``chunk``-byte writes."""
        for writer in list(self._authed):
            step = chunk or len(data) or 1
            for i in range(0, len(data), step):
                writer.write(data[i : i + step])
                await writer.drain()
                if chunk:
                    await asyncio.sleep(0)  # let the client read each piece separately

    async def emit(self, *events: Headers) -> None:
        """Several events in ONE write: they arrive in the client's same read."""
        await self.send(b"".join(format_message(e) for e in events))

    async def replay(self, path: Path, chunk: int = 7) -> None:
        await self.send(transcript_events(path), chunk)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[writer] = task
        parser, authed = AmiParser(), False
        challenge: str | None = None
        writer.write(BANNER)
        try:
            while data := await reader.read(4096):
                self.received += data
                for msg in parser.feed(data):
                    self.actions.append(msg)
                    name = (msg.get("Action") or "").lower()
                    if name == "challenge" and self.challenge_supported:
                        if (msg.get("AuthType") or "").lower() != "md5":
                            self._reply(writer, msg, "Error", Message="Must specify AuthType")
                            continue
                        # manager.c: "%ld" of ast_random(), the same for the whole session
                        challenge = challenge or str(secrets.randbelow(2**31))
                        self._reply(writer, msg, "Success", Challenge=challenge)
                    elif name == "login":
                        authed = await self._login(msg, writer, challenge)
                        if not authed:
                            return  # Asterisk closes the session after a failed login
                    elif not authed:
                        self._reply(writer, msg, "Error", Message="Authentication Required")
                    else:
                        self._action(writer, msg, name)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._conns.pop(writer, None)
            self._authed.discard(writer)
            writer.close()

    async def _login(
        self, msg: AmiMessage, writer: asyncio.StreamWriter, challenge: str | None
    ) -> bool:
        if (msg.get("AuthType") or "").lower() == "md5":
            method = "md5"
            ok = challenge is not None and msg.get("Key") == challenge_key(challenge, self.secret)
        else:
            method = "plain"
            ok = msg.get("Secret") == self.secret
        if msg.get("Username") != self.username or not ok:
            self._reply(writer, msg, "Error", Message="Authentication failed")
            await writer.drain()
            return False
        self.logins += 1
        self.login_methods.append(method)
        self._reply(writer, msg, "Success", Message="Authentication accepted")
        writer.write(format_message({"Event": "FullyBooted", "Status": "Fully Booted"}))
        self._authed.add(writer)
        return True

    def _action(self, writer: asyncio.StreamWriter, msg: AmiMessage, name: str) -> None:
        if name in self.silent_actions or (name == "ping" and not self.answer_ping):
            return
        if name == "ping":
            self._reply(writer, msg, "Success", Ping="Pong", Timestamp=f"{time.time():.6f}")
        elif name in self.lists:
            complete, items = self.lists[name]
            self._reply(writer, msg, "Success", EventList="start", Message="will follow")
            aid = {"ActionID": msg.action_id or ""}
            for item in items:
                pairs = list(item.items() if isinstance(item, Mapping) else item)
                writer.write(format_message([*pairs, *aid.items()]))
            done = {"Event": complete, **aid, "EventList": "Complete"}
            writer.write(format_message({**done, "ListItems": str(len(items))}))
        elif name in self.errors:
            self._reply(writer, msg, "Error", Message=self.errors[name])
        elif name == "bogus":
            self._reply(writer, msg, "Error", Message="Invalid/unknown command")
        else:
            self._reply(writer, msg, "Success", **self.replies.get(name, {"Message": "OK"}))

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, msg: AmiMessage, status: str, **extra: str) -> None:
        headers = {"Response": status}
        if msg.action_id is not None:  # echoed only when sent, like Asterisk
            headers["ActionID"] = msg.action_id
        writer.write(format_message({**headers, **extra}))
