from __future__ import annotations

import asyncio
import json
import socket

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from crm_sync.live_bus import RedisLiveBus


async def test_publish_reaches_a_subscriber_as_json(redis_url: str) -> None:
    bus = RedisLiveBus(redis_url)
    listener = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe("calls", "queues")
        await bus.publish("calls", {"event": "ringing", "caller_name": "Олена", "n": 1})
        await bus.publish("queues", {"queue": "housing", "waiting": 3})
        received: list[tuple[str, dict[str, object]]] = []
        async with asyncio.timeout(5):
            while len(received) < 2:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    received.append((message["channel"], json.loads(message["data"])))
        assert received == [
            ("calls", {"event": "ringing", "caller_name": "Олена", "n": 1}),
            ("queues", {"queue": "housing", "waiting": 3}),
        ]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
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
