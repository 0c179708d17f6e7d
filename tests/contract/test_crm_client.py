"""The CRM client against the fake CRM on loopback: what is worth retrying, what is
refused for good, the Idempotency-Key honoured, the listing read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from crm_sync.outbox.crm import CrmClient, message_of
from crm_sync.outbox.model import Outgoing, PermanentFailure, TemporaryFailure
from tests.support.fake_crm import FakeCrm


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCrm]:
    server = FakeCrm()
    await server.start()
    yield server
    await server.stop()


def _outgoing(key: str = "ev-1") -> Outgoing:
    new = message_of(7, "appeal.status_changed", key,
                     {"number": "2602-000001", "status": "accepted", "version": 3,
                      "citizen_ids": [5], "text": "private", "at": "2026-02-02T08:00:00+00:00"})
    assert new is not None
    return Outgoing(1, new.provider, new.key, new.recipient, new.subject, new.body, None,
                    new.meta, 1)


def test_an_event_of_no_appeal_makes_no_message() -> None:
    assert message_of(1, "appeal.updated", "k", {"status": "done"}) is None


async def test_a_repeated_key_is_one_event_at_the_crm_and_private_fields_stay(
    fake: FakeCrm
) -> None:
    client = CrmClient(fake.url, fake.api_key)
    try:
        first = await client.send(_outgoing())
        assert await client.send(_outgoing()) == first
    finally:
        await client.close()
    assert fake.keys == {"ev-1:crm": 1} and fake.posts == 2
    body = fake.received[0]
    assert body["status"] == "accepted" and body["version"] == 3
    assert "citizen_ids" not in body["appeal"] and "text" not in body["appeal"]
    assert "private" not in json.dumps(body)


@pytest.mark.parametrize("mode", ["down", "error", "throttle", "slow"])
async def test_an_unavailable_crm_is_a_temporary_failure(fake: FakeCrm, mode: str) -> None:
    fake.mode, fake.delay = mode, 2.0
    client = CrmClient(fake.url, fake.api_key, timeout=0.5)
    try:
        with pytest.raises(TemporaryFailure) as caught:
            await client.send(_outgoing())
    finally:
        await client.close()
    assert caught.value.throttled is (mode == "throttle")
    assert not fake.keys


async def test_a_refusal_is_permanent_and_a_dead_crm_temporary(fake: FakeCrm) -> None:
    client = CrmClient(fake.url, "wrong-key")
    try:
        with pytest.raises(PermanentFailure):
            await client.send(_outgoing())
    finally:
        await client.close()
    port = fake.port
    await fake.stop()
    client = CrmClient(f"http://127.0.0.1:{port}", fake.api_key)
    try:
        with pytest.raises(TemporaryFailure):
            await client.send(_outgoing())
    finally:
        await client.close()


async def test_the_listing_is_read_since_a_time(fake: FakeCrm) -> None:
    client = CrmClient(fake.url, fake.api_key)
    try:
        await client.send(_outgoing())
        listed = await client.list_appeals(datetime.now(UTC) - timedelta(hours=1))
        assert [(a["number"], a["status"]) for a in listed] == [("2602-000001", "accepted")]
        assert await client.list_appeals(datetime.now(UTC) + timedelta(hours=1)) == []
        fake.mode = "down"
        with pytest.raises(TemporaryFailure):
            await client.list_appeals(datetime.now(UTC))
    finally:
        await client.close()
