"""Live notifications published over Redis pub/sub (JSON messages).

The CTI side publishes; each web process has one subscriber that fans the
messages out to its browsers (``hotline/web/live.py``). Live data is ephemeral:
when Redis is down ``publish`` logs ``live_bus_unavailable`` once per outage and
drops the message instead of raising into the AMI event handling.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from hotline.core.logs import get_logger


class RedisLiveBus:
    """:class:`~hotline.core.ports.LiveBus` on Redis pub/sub."""

    def __init__(self, redis_url: str, *, timeout: float = 2.0) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=timeout,
            socket_timeout=timeout,
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

    async def close(self) -> None:
        await self._redis.aclose()
