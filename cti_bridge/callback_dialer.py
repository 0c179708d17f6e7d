"""The callback dialer: calls citizens back through AMI Originate (issue 9).

Part of the ``ami`` role: it needs the AMI link and the queues' live state,
which that role has, and every process running the role may run one — the
requests are claimed in the case store (:class:`hotline.core.ports.CallbackQueue`:
a per-queue advisory lock and ``FOR UPDATE SKIP LOCKED``), so two dialers never
place one attempt twice and never dial more callbacks than a queue has free
operators. Each attempt's Originate carries a ChannelId derived from the
request and the attempt: a second Originate of the same attempt (a dialer that
took over from a dead one) is refused by Asterisk while the first call exists.

A request is dialled when an operator of its queue is free, oldest original
arrival first; the citizen, once they answer, joins the queue at the front
(``[hotline-callback]`` in extensions.conf). An unanswered attempt is retried
after ``retry_seconds`` up to ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from cti_bridge.ami_client import AmiClient, AmiError
from cti_bridge.ami_protocol import AmiMessage
from hotline.core.aio import cancel_and_wait, raise_if_cancelled
from hotline.core.callflow import CallbackSettings, QueueLoad, free_operators
from hotline.core.logs import get_logger
from hotline.core.ports import CallbackQueue
from hotline.core.privacy import mask_phone
from hotline.core.records import CallbackJob

log = get_logger("cti_bridge.callback_dialer")
CONTEXT = "hotline-callback"
#: After a callback was answered the queue's summary lags behind (the citizen is
#: not yet in the queue): no new claim for that queue until this has passed.
SETTLE_SECONDS = 3.0


def loads_from_summary(items: list[AmiMessage]) -> dict[str, QueueLoad]:
    """QueueSummary's items → the load of each queue."""

    def num(msg: AmiMessage, key: str) -> int:
        try:
            return int(msg.get(key) or 0)
        except ValueError:
            return 0

    return {
        str(m.get("Queue")): QueueLoad(str(m.get("Queue")), num(m, "LoggedIn"),
                                       num(m, "Available"), num(m, "Callers"),
                                       num(m, "HoldTime"), num(m, "TalkTime"))
        for m in items if m.event == "QueueSummary" and m.get("Queue")
    }


class CallbackDialer:
    def __init__(
        self,
        ami: AmiClient,
        store: CallbackQueue,
        settings: CallbackSettings,
        name: str,
        server_id: str,
    ) -> None:
        self._ami = ami
        self._store = store
        self._settings = settings
        self.name = name
        self._server_id = server_id
        self._waiting: dict[str, asyncio.Future[AmiMessage]] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._settle_until: dict[str, float] = {}
        ami.on_event("OriginateResponse", self._on_originate_response)

    @property
    def lease_seconds(self) -> float:
        # Long enough for the ring and AMI's answer: a live dialer never loses its claim.
        return float(self._settings.ring_seconds + 30)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=f"callback-dialer-{self.name}")

    async def stop(self) -> None:
        """A call being placed is abandoned here: its request stays claimed until
        the lease runs out, then a dialer takes the same attempt again."""
        await cancel_and_wait(self._loop_task, *self._calls)
        self._loop_task = None

    async def wait_idle(self) -> None:
        """Until every callback started so far has its result recorded."""
        while self._calls:
            await asyncio.wait(list(self._calls))

    async def _run(self) -> None:
        while True:
            try:
                if self._ami.connected:
                    await self.run_once()
            except (AmiError, OSError) as exc:
                log.warning("callback_dialer_round_failed", dialer=self.name, error=str(exc))
            except Exception:  # a database error must not end the dialer
                log.exception("callback_dialer_round_failed", dialer=self.name)
            raise_if_cancelled()
            await asyncio.sleep(self._settings.poll_seconds)

    async def run_once(self) -> list[CallbackJob]:
        """One round: for each queue with callbacks due, claim as many as it has
        free operators (oldest first) and start them. Returns the jobs started."""
        queues = await self._store.queues_waiting()
        if not queues:
            return []
        loads = loads_from_summary(await self._ami.action_list("QueueSummary"))
        return await self.dispatch(queues, loads)

    async def dispatch(
        self, queues: list[str], loads: Mapping[str, QueueLoad]
    ) -> list[CallbackJob]:
        started: list[CallbackJob] = []
        now = time.monotonic()
        for queue in queues:
            if self._settle_until.get(queue, 0.0) > now:
                continue
            free = free_operators(loads.get(queue), 0)
            while True:
                job = await self._store.claim(queue, free, self.name, self.lease_seconds)
                if job is None:
                    break
                started.append(job)
                task = asyncio.create_task(self._place(job), name=f"callback-{job.key}")
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
        return started

    def channel_id(self, job: CallbackJob) -> str:
        return f"{self._server_id}-{job.key}"

    async def _place(self, job: CallbackJob) -> None:
        channel_id = self.channel_id(job)
        waiter: asyncio.Future[AmiMessage] = asyncio.get_running_loop().create_future()
        self._waiting[channel_id] = waiter
        answered, detail = False, ""
        try:
            log.info("callback_dialing", dialer=self.name, request_id=job.request_id,
                     attempt=job.attempt, queue=job.queue, caller=mask_phone(job.caller_number))
            await self._ami.action(
                "Originate",
                Channel=self._settings.dial.format(number=job.caller_number),
                Context=CONTEXT, Exten="s", Priority="1",
                Timeout=str(self._settings.ring_seconds * 1000),
                CallerID='"1551" <1551>',
                ChannelId=channel_id,
                Async="true",
                Variable=[f"HOTLINE_QUEUE={job.queue}", f"CALLBACK_ID={job.request_id}",
                          f"CALLBACK_ATTEMPT={job.attempt}"],
            )
            async with asyncio.timeout(self._settings.ring_seconds + 15):
                reply = await waiter
            answered = (reply.get("Response") or "").lower() == "success"
            detail = reply.get("Reason") or reply.get("Response") or ""
        except (AmiError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
        finally:
            self._waiting.pop(channel_id, None)
        if answered:
            self._settle_until[job.queue] = time.monotonic() + SETTLE_SECONDS
        status = await self._store.finish(job, answered, detail,
                                          float(self._settings.retry_seconds))
        log.info("callback_attempt_finished", dialer=self.name, request_id=job.request_id,
                 attempt=job.attempt, queue=job.queue, answered=answered, status=status,
                 detail=detail)

    def _on_originate_response(self, msg: AmiMessage) -> None:
        waiter = self._waiting.get(msg.get("Uniqueid") or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
