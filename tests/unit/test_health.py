"""The readiness registry (pure: asyncio only)."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from hotline.core import health


async def test_every_part_ready_is_ready() -> None:
    readiness = health.Readiness()
    readiness.add(health.DATABASE, lambda: True)

    async def pong() -> bool:
        return True

    readiness.add(health.REDIS, pong)
    report = await readiness.check()
    assert report.ready
    assert report.failing == []
    assert dict(report.parts) == {"database": True, "redis": True}


async def test_failing_parts_are_named_whatever_way_they_fail() -> None:
    readiness = health.Readiness(timeout=0.05)

    def refused() -> bool:
        raise ConnectionRefusedError("connect to 127.0.0.1:5432 refused")

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    readiness.add(health.DATABASE, refused)
    readiness.add(health.REDIS, hangs)
    readiness.add(health.AMI_LINK, lambda: False)
    readiness.add(health.FASTAGI_LISTENER, lambda: True)
    report = await readiness.check()
    assert not report.ready
    assert report.failing == ["ami_link", "database", "redis"]
    assert report.parts["fastagi_listener"] is True
    assert "ConnectionRefusedError" in report.reasons["database"]
    assert "no answer within" in report.reasons["redis"]


async def test_a_process_not_yet_started_or_stopping_is_not_ready() -> None:
    readiness = health.Readiness(running=False)
    readiness.add(health.DATABASE, lambda: True)
    report = await readiness.check()
    assert report.failing == [health.SERVICE]
    readiness.running = True
    assert (await readiness.check()).ready


async def test_a_part_registered_twice_is_checked_once_and_can_be_removed() -> None:
    readiness = health.Readiness()
    readiness.add(health.DATABASE, lambda: False)
    readiness.add(health.DATABASE, lambda: True)  # the agi and web parts both need it
    assert readiness.names == ["database"]
    assert (await readiness.check()).ready
    readiness.add(health.AMI_LINK, lambda: False)
    readiness.remove(health.AMI_LINK)
    assert (await readiness.check()).ready


async def test_a_change_is_logged_once_not_every_probe() -> None:
    up = [True]
    readiness = health.Readiness()
    readiness.add(health.AMI_LINK, lambda: up[0])
    with capture_logs() as logs:
        await readiness.check()
        up[0] = False
        await readiness.check()
        await readiness.check()
        up[0] = True
        await readiness.check()
    assert [entry["event"] for entry in logs] == ["readiness_ok", "readiness_lost", "readiness_ok"]
    assert logs[1]["failing"] == ["ami_link"]
