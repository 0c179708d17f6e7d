"""A FastAGI client that talks to the server the way Asterisk 22 does.

It connects, sends the ``agi_*`` environment and a blank line, then reads one
command line at a time and writes the replies the test scripts. Every read is
guarded by a generous timeout so a broken server fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

GUARD = 5.0  # seconds; a guard against hangs, never a timing assertion


def environment(
    script: str = "ivr",
    *,
    uniqueid: str = "1714000000.42",
    channel: str = "PJSIP/trunk-00000001",
    callerid: str = "380441234567",
    calleridname: str = "Олена Петренко",
    args: Iterable[str] = (),
    extra: dict[str, str] | None = None,
) -> list[str]:
    """The environment lines in the order res_agi.c writes them (no blank line)."""
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1/{script}",
        "agi_channel": channel,
        "agi_language": "uk",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": callerid,
        "agi_calleridname": calleridname,
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "1551",
        "agi_rdnis": "unknown",
        "agi_context": "hotline-inbound",
        "agi_extension": "1551",
        "agi_priority": "3",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140245171255872",
    }
    env.update(extra or {})
    lines = [f"{key}: {value}" for key, value in env.items()]
    lines += [f"agi_arg_{n}: {value}" for n, value in enumerate(args, start=1)]
    return lines


Responder = Callable[[str], list[str]]


class FakeAsterisk:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.commands: list[str] = []

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", *, source: str | None = None
    ) -> FakeAsterisk:
        """``source`` picks the address we connect from (e.g. ``127.0.0.2``: any
        127/8 address is this machine, so an allow-list can be tried on loopback)."""
        local_addr = (source, 0) if source else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=local_addr), GUARD
        )
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, *lines: str) -> None:
        await self.send_raw("".join(f"{line}\n" for line in lines).encode())

    async def send_env(self, script: str = "ivr", **kwargs: Any) -> None:
        await self.send(*environment(script, **kwargs), "")

    async def read_command(self) -> str | None:
        """The next command line without ``\\n``, or None once the server closed."""
        raw = await asyncio.wait_for(self.reader.readline(), GUARD)
        if not raw:
            return None
        assert raw.endswith(b"\n"), f"command not ended by a newline: {raw!r}"
        line = raw.decode()[:-1]
        self.commands.append(line)
        return line

    async def expect(self, command: str) -> str:
        line = await self.read_command()
        assert line == command, f"expected {command!r}, got {line!r}"
        return line

    async def wait_eof(self) -> bytes:
        """Wait until the server closes; returns anything it still sent."""
        return await asyncio.wait_for(self.reader.read(), GUARD)

    async def wait_refused(self) -> None:
        """Wait until the server drops us without having sent a byte (by a
        close or a reset)."""
        try:
            data = await asyncio.wait_for(self.reader.read(), GUARD)
        except ConnectionError:  # a reset, or a broken pipe left by a write (a flood)
            data = b""
        assert data == b"", f"a refused peer got data: {data!r}"

    async def flood(self, line: bytes, total: int, chunk: int = 64 * 1024) -> int:
        """Write ``line`` over and over, up to ``total`` bytes, until the server
        cuts the connection; returns how many bytes the socket took."""
        block = line * max(chunk // len(line), 1)
        sent = 0
        try:
            while sent < total:
                self.writer.write(block)
                await asyncio.wait_for(self.writer.drain(), GUARD)
                sent += len(block)
        except ConnectionError:  # reset or broken pipe: the server cut us off
            pass
        return sent

    async def converse(self, respond: Responder) -> list[str]:
        """Answer every command with ``respond(command)`` until the server closes."""
        while (line := await self.read_command()) is not None:
            await self.send(*respond(line))
        return self.commands

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def menu_responder(get_data_replies: list[str]) -> Responder:
    """Replies as a live channel: GET DATA gets the next scripted reply line(s),
    separated by ``|`` (e.g. ``"HANGUP|511 Command Not Permitted on a dead channel"``)."""
    pending = list(get_data_replies)

    def respond(command: str) -> list[str]:
        if command.startswith("GET DATA"):
            return pending.pop(0).split("|")
        if command.startswith("STREAM FILE"):
            return ["200 result=0 endpos=8000"]
        if command == "ANSWER":
            return ["200 result=0"]
        if command.startswith("SET VARIABLE"):
            return ["200 result=1"]
        return ["510 Invalid or unknown command"]

    return respond
