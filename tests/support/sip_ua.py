"""A real SIP user agent for the system tests: Debian 12's ``baresip``, headless.

Each :class:`Baresip` runs one baresip process with its configuration in a
private temporary folder, SIP and RTP on loopback only, driven through its
``ctrl_tcp`` command interface (netstrings of JSON on 127.0.0.1): commands
such as ``dial``, ``sndcode`` (DTMF, sent as RFC 4733 telephone-events when the
peer offers them, as Asterisk does) and ``hangup``; events such as
``REGISTER_OK``, ``CALL_INCOMING``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``.

Run as root (the sandbox needs it), baresip itself runs as ``nobody``: it needs
no privilege, and its folder (the account's password inside) is that user's,
0700. Audio: no sound card. What the UA hears is dumped to WAV files by the
``sndfile`` filter (so a test can tell that a prompt was played to it), and
what it hears is also what it says (``aubridge``: the player feeds the source).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BARESIP = "baresip"
RUN_AS = "nobody"
MODULES = "/usr/lib/baresip/modules"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_sip_port() -> int:
    """A port baresip can listen on: it takes UDP and TCP there and TLS on the next one."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and _free(port) and _free(port + 1):
            return port
    raise RuntimeError("no two free consecutive ports on 127.0.0.1")


def netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


def split_netstrings(buffer: bytearray) -> list[dict[str, Any]]:
    """Complete netstrings taken off the front of ``buffer``, decoded."""
    out: list[dict[str, Any]] = []
    while True:
        colon = buffer.find(b":")
        if colon < 1 or not buffer[:colon].isdigit():
            return out
        size = int(buffer[:colon])
        end = colon + 1 + size
        if len(buffer) < end + 1:
            return out
        out.append(json.loads(bytes(buffer[colon + 1 : end])))
        del buffer[: end + 1]


@dataclass
class Baresip:
    """One baresip user agent: ``account`` is its line in baresip's accounts file."""

    account: str
    name: str = "ua"
    sip_port: int = field(default_factory=free_sip_port)
    ctrl_port: int = 0  # 0: a free one, not next to sip_port
    sip_trace: bool = False  # every SIP message (SDP included) into its log
    events: list[dict[str, Any]] = field(default_factory=list)
    folder: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _writer: asyncio.StreamWriter | None = None
    _reader_task: asyncio.Task[None] | None = None
    _replies: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tokens: int = 0

    @staticmethod
    def installed() -> bool:
        return shutil.which(BARESIP) is not None and Path(MODULES, "ctrl_tcp.so").exists()

    def config(self) -> str:
        assert self.folder is not None
        return "\n".join([
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            "call_max_calls 2",
            "audio_player aubridge,hotline",
            "audio_source aubridge,hotline",
            "audio_alert aubridge,hotline",
            "rtp_timeout 0",
            f"module_path {MODULES}",
            "module g711.so",
            "module aubridge.so",
            "module sndfile.so",
            f"snd_path {self.folder / 'heard'}",
            "module_tmp uuid.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            "",
        ])

    async def start(self) -> None:
        if not self.installed():
            raise RuntimeError("baresip is not installed (apt-get install baresip-core)")
        while self.ctrl_port in (0, self.sip_port, self.sip_port + 1):
            self.ctrl_port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix=f"hotline-baresip-{self.name}-"))
        (self.folder / "heard").mkdir()
        (self.folder / "config").write_text(self.config())
        (self.folder / "accounts").write_text(self.account + "\n")
        (self.folder / "contacts").write_text("")
        user: int | None = None
        group: int | None = None
        if os.geteuid() == 0:  # never as root: it needs no privilege at all
            entry = pwd.getpwnam(RUN_AS)
            user, group = entry.pw_uid, entry.pw_gid
            for path in (self.folder, *self.folder.rglob("*")):
                os.chown(path, user, group)
        self.folder.chmod(0o700)
        (self.folder / "accounts").chmod(0o600)
        args = ["-s"] if self.sip_trace else []
        self._proc = await asyncio.to_thread(self._spawn, self.folder, user, group, args)
        started = False
        try:
            await self._connect()
            started = True
        finally:
            if not started:  # no process or folder left behind
                await self.stop()

    @staticmethod
    def _spawn(folder: Path, user: int | None, group: int | None, args: list[str]
               ) -> subprocess.Popen[bytes]:
        with open(folder / "baresip.log", "wb") as log:
            return subprocess.Popen(
                [BARESIP, "-4", *args, "-f", str(folder)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, user=user, group=group,
                extra_groups=[] if user is not None else None, cwd=folder,
                start_new_session=True,
            )

    async def _connect(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RuntimeError(f"baresip exited ({self._proc.returncode}): {self.log()}")
                try:
                    reader, self._writer = await asyncio.open_connection(
                        "127.0.0.1", self.ctrl_port)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        self._reader_task = asyncio.create_task(self._read(reader), name=f"baresip-{self.name}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            for message in split_netstrings(buffer):
                if message.get("response"):
                    future = self._replies.pop(str(message.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("event"):
                    self.events.append(message)
                    self._changed.set()

    async def command(self, command: str, params: str = "", timeout: float = 5.0
                      ) -> dict[str, Any]:
        assert self._writer is not None, "start() first"
        self._tokens += 1
        token = str(self._tokens)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[token] = future
        self._writer.write(netstring({"command": command, "params": params, "token": token}))
        await self._writer.drain()
        async with asyncio.timeout(timeout):
            reply = await future
        if not reply.get("ok"):
            raise RuntimeError(f"baresip refused {command} {params!r}: {reply.get('data')}")
        return reply

    async def wait_event(self, kind: str, timeout: float = 20.0,
                         where: Callable[[dict[str, Any]], bool] = lambda _e: True
                         ) -> dict[str, Any]:
        """The first event of type ``kind`` (seen so far or coming)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.events:
                        if event.get("type") == kind and where(event):
                            return event
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = [e.get("type") for e in self.events]
            raise AssertionError(f"baresip {self.name}: no {kind} within {timeout} s "
                                 f"(events {seen}); log: {self.log()}") from None

    def uid(self) -> int:
        """The user the baresip process runs as (from /proc)."""
        assert self._proc is not None
        status = Path(f"/proc/{self._proc.pid}/status").read_text()
        return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:")))

    async def registered(self) -> bool:
        """Whether the account's registration stands now (asked, not from events:
        the first REGISTER may be answered before the command link is up)."""
        reply = await self.command("reginfo")
        return "OK" in str(reply.get("data"))

    async def wait_registered(self, timeout: float = 20.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if await self.registered():
                        return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(f"baresip {self.name} did not register within {timeout} s; "
                                 f"log: {self.log()}") from None

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def send_dtmf(self, digits: str) -> None:
        await self.command("sndcode", digits)

    async def hang_up(self) -> None:
        await self.command("hangup")

    def heard_seconds(self) -> float:
        """Seconds of non-silent audio the UA received (the sndfile dumps)."""
        assert self.folder is not None
        loud = 0
        rate = 8000
        for dump in (self.folder / "heard").glob("*dec*.wav"):
            with contextlib.suppress(OSError, wave.Error, EOFError), wave.open(str(dump)) as w:
                rate = w.getframerate()
                frames = w.readframes(w.getnframes())
                width = w.getsampwidth()
                for i in range(0, len(frames) - width + 1, width * 80):
                    sample = int.from_bytes(frames[i : i + width], "little", signed=True)
                    loud += 80 if abs(sample) > 300 else 0
        return loud / rate

    def full_log(self) -> str:
        if self.folder is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.folder / "baresip.log").read_text(errors="replace")
        return ""

    def log(self) -> str:
        if self.folder is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self.folder / "baresip.log").read_text(errors="replace")
            # without the call status line it repeats several times a second
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("[0:")]
            return "\n".join(lines)[-3000:]
        return ""

    async def stop(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                await self.command("quit", timeout=2.0)
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._reader_task
        if self._proc is not None:
            try:
                await asyncio.to_thread(self._proc.wait, 5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    async def __aenter__(self) -> Baresip:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
