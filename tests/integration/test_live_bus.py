from __future__ import annotations

import asyncio
import socket

from structlog.testing import capture_logs

from crm_sync.live_bus import BusMessage, RedisLiveBus


async def test_publish_subscribe_round_trip(redis_url: str) -> None:
    bus = RedisLiveBus(redis_url)
    try:
        async with bus.subscribe("calls", "queues") as messages:
            await bus.publish("calls", {"event": "ringing", "caller_name": "Олена", "n": 1})
            await bus.publish("queues", {"queue": "housing", "waiting": 3})
            received: list[BusMessage] = []
            async with asyncio.timeout(5):
                async for message in messages:
                    received.append(message)
                    if len(received) == 2:
                        break
        assert received == [
            BusMessage("calls", {"event": "ringing", "caller_name": "Олена", "n": 1}),
            BusMessage("queues", {"queue": "housing", "waiting": 3}),
        ]
    finally:
        await bus.close()


async def test_publish_without_redis_logs_once_and_does_not_raise() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with capture_logs() as logs:
        bus = RedisLiveBus(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        await bus.publish("calls", {"event": "ringing"})
        await bus.publish("calls", {"event": "answered"})
        await bus.close()
    assert [e["event"] for e in logs] == ["live_bus_unavailable"]
