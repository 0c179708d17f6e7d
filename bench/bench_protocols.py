"""Throughput of the protocol layers, reported as figures and ratios (not tests).

    .venv/bin/python bench/bench_protocols.py

- AMI parsing: our incremental parser vs panoramisk 1.4's AMIProtocol on the
  recorded Asterisk 22 transcripts, fed in 1,460-byte TCP-sized reads.
- Call tracker: AMI messages per second through the live call model.
- FastAGI: whole IVR sessions per second through the real server on loopback
  (environment, answer, greeting, menu, three SET VARIABLEs), 50 at a time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cti_bridge.ami_protocol import AmiParser  # noqa: E402
from cti_bridge.call_tracker import CallTracker  # noqa: E402
from hotline.core.logs import configure_logging  # noqa: E402
from hotline.settings import Settings  # noqa: E402
from ivr.flows import build_routes  # noqa: E402
from ivr.menu import load_ivr_config  # noqa: E402
from ivr.server import FastAgiServer  # noqa: E402
from tests.support.fake_agi_client import FakeAsterisk, menu_responder  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "ami"
CHUNK = 1460


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def timed(fn: Callable[[], int], min_seconds: float = 1.0) -> tuple[float, int]:
    """(seconds per run, units per run) over enough runs to last ``min_seconds``."""
    runs, units, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        units = fn()
        runs += 1
    return (time.perf_counter() - start) / runs, units


def bench_ami() -> None:
    data = b"".join(p.read_bytes() for p in sorted(FIXTURES.glob("*.txt")))
    pieces = chunks(data)

    def ours() -> int:
        parser = AmiParser()
        return sum(len(parser.feed(piece)) for piece in pieces)

    def panoramisk() -> int:
        from panoramisk.ami_protocol import AMIProtocol

        count = 0

        class Factory:
            save_stream = None

            def dispatch(self, _msg: object) -> None:
                nonlocal count
                count += 1

        proto = AMIProtocol()
        proto.connection_made(None)
        proto.factory = Factory()
        proto.encoding = "utf8"
        for piece in pieces:
            proto.data_received(piece)
        return count

    ours_s, ours_n = timed(ours)
    pan_s, pan_n = timed(panoramisk)
    mb = len(data) / 1e6
    print(f"AMI parse, ours:       {ours_n / ours_s:10,.0f} messages/s  {mb / ours_s:6.1f} MB/s")
    print(f"AMI parse, panoramisk: {pan_n / pan_s:10,.0f} events/s    {mb / pan_s:6.1f} MB/s"
          f"  (ours / panoramisk: {pan_s / ours_s:.2f}x; panoramisk also drops split UTF-8)")

    parser = AmiParser()
    messages = [msg for piece in pieces for msg in parser.feed(piece)]

    def track() -> int:
        tracker = CallTracker("bench", ["hotline"])
        for msg in messages:
            tracker.handle(msg)
        return len(messages)

    tr_s, tr_n = timed(track)
    print(f"call tracker:          {tr_n / tr_s:10,.0f} AMI messages/s")


async def bench_fastagi(sessions: int = 2000, concurrency: int = 50) -> None:
    config = load_ivr_config(Settings().config_path)

    class NullJournal:
        async def record_step(self, step: object) -> None:
            return None

    server = FastAgiServer(build_routes(config, NullJournal(), "bench"), "127.0.0.1", 0)
    await server.start()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            agi = await FakeAsterisk.connect(server.port)
            await agi.send_env("ivr")
            await agi.converse(menu_responder(["200 result=1"]))
            await agi.close()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(sessions)))
    elapsed = time.perf_counter() - start
    await server.stop()
    print(f"FastAGI IVR sessions:  {sessions / elapsed:10,.0f} sessions/s "
          f"({sessions} sessions, {concurrency} concurrent, client and server on one core each)")


if __name__ == "__main__":
    configure_logging("json", "warning")  # per-session info lines would dominate
    bench_ami()
    asyncio.run(bench_fastagi())
