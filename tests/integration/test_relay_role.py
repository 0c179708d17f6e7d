"""The ``relay`` role of the composition root: started from the settings, it
delivers a citizen's notification through the loopback gateway, and its tasks are
gone once the service stops."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from crm_sync.migrate import migrate
from hotline.app import HotlineService, open_backends
from hotline.settings import Settings
from tests.support.databases import MakeDatabase
from tests.support.providers import LoopbackGateway
from tests.support.relay import eventually


async def test_the_relay_role_delivers_and_stops_its_tasks(
    make_database: MakeDatabase, redis_url: str, scratch_dir: Path
) -> None:
    gateway = LoopbackGateway()
    await gateway.start()
    settings = Settings()
    settings.service.roles = ["relay"]
    settings.service.state_dir = str(scratch_dir)
    settings.database.url = await make_database("relay_role")
    settings.redis.url = redis_url
    settings.relay.sms_url, settings.relay.sms_api_key = gateway.url, gateway.api_key
    settings.relay.poll_interval = 0.05
    backends = await open_backends(settings)
    await migrate(backends.pool)
    phone = f"+38067{uuid.uuid4().int % 10**7:07d}"
    citizen = await backends.pool.fetchval(
        """INSERT INTO citizens (phone, notify_channel, notify_consent, preferred_language)
           VALUES ($1, 'sms', true, 'en') RETURNING id""", phone)
    await backends.pool.execute(
        "INSERT INTO outbox (topic, key, payload) VALUES ('appeal.created', 'appeal:1:h:1', $1)",
        {"to_status": "registered", "number": "1551-2026-000001", "citizen_ids": [citizen],
         "category": {"name_en": "Lift"}})
    service = HotlineService(settings, backends)
    try:
        await service.start()

        async def arrived() -> bool:
            return len(gateway.arrivals) == 1
        await eventually(arrived, "the registration text at the gateway")
    finally:
        await service.stop()
        await backends.close()
        await gateway.stop()
    assert gateway.arrivals[0].to == phone
    assert gateway.arrivals[0].text.startswith("Appeal 1551-2026-000001 registered: Lift.")
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("relay-")]
    assert left == []
    assert (scratch_dir / "secrets" / "relay.toml").is_file()
