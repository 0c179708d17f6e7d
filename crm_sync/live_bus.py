"""Live notifications over Redis pub/sub (JSON messages).

The CTI side publishes; the web side subscribes per browser connection::

    async with bus.subscribe("calls", "queues") as messages:
        async for message in messages:
            await websocket.send_json({"channel": message.channel, **message.data})

Live data is ephemeral: when Redis is down ``publish`` logs
``live_bus_unavailable`` once per outage and drops the message instead of
raising into the AMI event handling.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from hotline.core.logs import get_logger


@dataclass(frozen=True)
class BusMessage:
    channel: str
    data: dict[str, Any]


class RedisLiveBus:
    """:class:`~hotline.core.ports.LiveBus` on Redis pub/sub."""

    def __init__(self, redis_url: str, *, timeout: float = 2.0) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        # Subscribers wait on quiet channels: no read timeout (older redis-py applies
        # socket_timeout to pub/sub reads too).
        self._sub_redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=timeout
        )
        self._log = get_logger("crm_sync.live_bus")
        self._outage = False

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        payload = json.dumps(message, ensure_ascii=False, default=str)
        try:
            await self._redis.publish(channel, payload)
        except (RedisError, OSError) as exc:
            if not self._outage:
                self._outage = True
                self._log.warning("live_bus_unavailable", error=f"{type(exc).__name__}: {exc}")
            return
        if self._outage:
            self._outage = False
            self._log.info("live_bus_recovered")

    def subscribe(self, channel: str, *channels: str) -> Subscription:
        """An async context manager: subscribed on entry (no message published after
        ``__aenter__`` returns is missed), an async iterator of :class:`BusMessage`."""
        return Subscription(self._sub_redis, (channel, *channels))

    async def close(self) -> None:
        await self._redis.aclose()
        await self._sub_redis.aclose()


class Subscription:
    def __init__(self, client: redis.Redis, channels: tuple[str, ...]) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._channels = channels

    async def __aenter__(self) -> Subscription:
        await self._pubsub.subscribe(*self._channels)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def __aiter__(self) -> AsyncIterator[BusMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[BusMessage]:
        async for raw in self._pubsub.listen():
            if raw.get("type") != "message":
                continue
            try:
                data = json.loads(raw["data"])
            except ValueError:
                continue  # not ours: every publisher here sends JSON objects
            if isinstance(data, dict):
                yield BusMessage(str(raw["channel"]), data)
