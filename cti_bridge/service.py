"""The CTI service: AMI events → live call model → case store and live feed.

Events reach the tracker in arrival order (the AMI client awaits handlers one
after another); writes to the case store go through a retrying sink, so a
database outage delays records but never loses them, and never stalls AMI.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from cti_bridge.ami_client import AmiClient, AmiError
from cti_bridge.ami_protocol import AmiMessage
from cti_bridge.call_tracker import RESYNC_VARIABLES, AsteriskSnapshot, CallTracker
from cti_bridge.operator_states import EVENTS as OPERATOR_EVENTS
from cti_bridge.operator_states import OperatorStateTracker
from hotline.core import metrics
from hotline.core.aio import cancel_and_wait, raise_if_cancelled
from hotline.core.live import LIVE_CHANNEL, QUEUES_KEY, call_event, queues_event
from hotline.core.logs import get_logger
from hotline.core.ports import CallSink, LiveBus, OperatorStateSink
from hotline.core.records import CallRecord

log = get_logger("cti_bridge.service")


def boot_epoch_from_core_status(reply: AmiMessage) -> int:
    """Asterisk's start time as an epoch, from CoreStatus (local date and time)."""
    date, clock = reply.get("CoreStartupDate"), reply.get("CoreStartupTime")
    if not date or not clock:
        raise ValueError("CoreStatus reply without CoreStartupDate/CoreStartupTime")
    started = datetime.strptime(f"{date} {clock}", "%Y-%m-%d %H:%M:%S")
    return int(time.mktime(started.timetuple()))


class CtiService:
    def __init__(
        self,
        ami: AmiClient,
        tracker: CallTracker,
        sink: CallSink,
        bus: LiveBus,
        redis: aioredis.Redis,
        operator_states: OperatorStateSink,
        *,
        queue_poll_seconds: float = 5.0,
    ) -> None:
        self._ami = ami
        self._tracker = tracker
        self._sink = sink
        self._operators = OperatorStateTracker()
        self._synced_generation = -1
        self._sync_lock = asyncio.Lock()
        self._operator_states = operator_states
        self._bus = bus
        self._redis = redis
        self._poll_seconds = queue_poll_seconds
        self._poller: asyncio.Task[None] | None = None
        ami.on_event("*", self._on_event)
        for name in OPERATOR_EVENTS:
            ami.on_event(name, self._on_operator_event)
        ami.on_connected(self._on_connected)

    @property
    def ami(self) -> AmiClient:
        return self._ami

    async def start(self) -> None:
        await self._ami.start()
        self._poller = asyncio.create_task(self._poll_queues(), name="queue-summary-poller")

    async def stop(self) -> None:
        await cancel_and_wait(self._poller)
        self._poller = None
        await self._ami.close()

    async def _on_connected(self, *_: Any) -> None:
        metrics.ami_logged_in(self._ami.generation)
        await self._ensure_synced()

    async def _ensure_synced(self) -> None:
        """Once per AMI session, before its first event is applied: learn Asterisk's
        start time (part of every call key), finish the calls that ended unseen and
        rebuild those still up (events missed while the link was down).

        Runs from the event path too, because the first events of a session can
        be dispatched before the on_connected callback gets its turn.
        """
        if self._synced_generation == self._ami.generation:
            return
        async with self._sync_lock:
            generation = self._ami.generation
            if self._synced_generation == generation:
                return
            try:
                reply = await self._ami.action("CoreStatus")
                epoch = boot_epoch_from_core_status(reply)
                orphans = self._tracker.set_boot_epoch(epoch)
                snapshot = await self._read_snapshot()
                resynced = self._tracker.resync(snapshot)
            except (AmiError, ValueError) as exc:
                log.warning("asterisk_sync_failed", error=str(exc))
                return
            self._synced_generation = generation
            log.info("asterisk_connected", boot_epoch=epoch, version=self._ami.version,
                     finished_orphans=len(orphans), channels=len(snapshot.channels),
                     resynced_calls=len(resynced))
        for record in orphans + resynced:
            await self._save(record)

    async def _read_snapshot(self) -> AsteriskSnapshot:
        """The channels up now and, when there are any, the queues' callers and the
        channel variables that name a connected caller's member."""
        at = datetime.now(UTC)
        channels = [c for c in await self._ami.action_list("CoreShowChannels")
                    if c.event == "CoreShowChannel"]
        if not channels:
            return AsteriskSnapshot(channels=[], at=at)
        entries = [e for e in await self._ami.action_list("QueueStatus")
                   if e.event == "QueueEntry"]
        statuses = [s for s in await self._ami.action_list(
                        "Status", Variables=",".join(RESYNC_VARIABLES))
                    if s.event == "Status"]
        return AsteriskSnapshot(channels, entries, statuses, at=at)

    async def _on_event(self, msg: AmiMessage) -> None:
        await self._ensure_synced()
        for record in self._tracker.handle(msg):
            await self._save(record)

    async def _on_operator_event(self, msg: AmiMessage) -> None:
        change = self._operators.handle(msg)
        if change is not None:
            await self._operator_states.record_operator_state(change)
            log.info("operator_state", interface=change.interface, queue=change.queue,
                     state=change.state, reason=change.reason)

    async def _save(self, record: CallRecord) -> None:
        await self._sink.save_call(record)
        if record.outcome != "in_progress":
            metrics.call_finished(record)
            log.info(
                "call_recorded",
                call_key=record.call_key,
                uniqueid=record.uniqueid,
                linkedid=record.linkedid,
                outcome=str(record.outcome),
                queue=record.queue,
                caller=record.caller_number,
            )
        try:
            await self._bus.publish(LIVE_CHANNEL, call_event(record))
        except (OSError, aioredis.RedisError) as exc:
            log.warning("live_publish_failed", error=str(exc))

    async def _poll_queues(self) -> None:
        """Keep the queues' live summary in Redis for every web process."""
        while True:
            try:
                if self._ami.connected:
                    summary = await self.queue_summary()
                    metrics.queue_summary(summary)
                    await self._redis.set(QUEUES_KEY, json.dumps(summary), ex=60)
                    await self._bus.publish(LIVE_CHANNEL, queues_event())
            except (AmiError, OSError, aioredis.RedisError) as exc:
                log.warning("queue_summary_failed", error=str(exc))
            raise_if_cancelled()
            await asyncio.sleep(self._poll_seconds)

    async def queue_summary(self) -> dict[str, Any]:
        items = await self._ami.action_list("QueueSummary")
        queues = [
            {
                "queue": item.get("Queue"),
                "logged_in": int(item.get("LoggedIn") or 0),
                "available": int(item.get("Available") or 0),
                "callers": int(item.get("Callers") or 0),
                "hold_time": int(item.get("HoldTime") or 0),
                "talk_time": int(item.get("TalkTime") or 0),
                "longest_hold": int(item.get("LongestHoldTime") or 0),
            }
            for item in items
            if item.event == "QueueSummary"
        ]
        return {"queues": sorted(queues, key=lambda q: str(q["queue"])),
                "at": datetime.now(UTC).isoformat()}
