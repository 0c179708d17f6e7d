"""Live model of citizen calls, built from AMI events. Pure: no I/O, no timers.

Which channel is "the call". A citizen call starts at a ``Newchannel`` in one of
the inbound contexts and is keyed by that channel's Uniqueid, which is also the
channel that joins the queue and queue_log's callid. With Local channels (the
simulated citizens in ``tests/fixtures/ami``) BOTH halves announce the inbound
context in Newchannel, but only ``;2`` runs the dialplan there (Answer, AGI,
Queue); ``;1`` is the originating side (it goes on to run the originator's
context). So ``Local/…;1`` channels never start a call.

Event order. Asterisk raises AgentComplete from app_queue's own subscription,
which can run after the caller channel's Hangup. Decision: the record is emitted
at Hangup with its outcome final; if the call was connected but AgentComplete
has not arrived yet, the call lingers (``linger_seconds``) and is emitted AGAIN
when AgentComplete brings TalkTime / Reason. Sinks upsert by ``call_key``: the
last record wins. Intermediate records are emitted at queue join and at
AgentConnect (for live views); everything else only updates memory.

AgentComplete under load. When app_queue's subscription runs after the caller
channel is gone, Asterisk 22 publishes AgentComplete WITHOUT the caller's
fields ("Empty caller_snapshot; sending incomplete event" in app_queue.c): no
Uniqueid, often no Dest* fields either, only Queue, Interface, MemberName,
HoldTime, TalkTime, Reason (16 of 492 answered calls in one 600-call run at
30 calls/s in the sandbox). Such an event is matched to the connected, not yet completed call of
that member (DestUniqueid when present, else Queue + Interface: with
``ringinuse = no`` a member is in one call at a time). If no AgentComplete
reaches us at all, the talk time is derived at Hangup from what AMI did send:
AgentConnect to the caller's BridgeLeave (or its Hangup), in whole seconds as
app_queue counts them, with ``talk_source = "derived"``. A late AgentComplete
still replaces it; queue_log reconciliation (``crm_sync.queue_log``) has the
last word.

Resync. While the AMI link is down every event is lost. After each (re)connect
the service reads what Asterisk says is up (CoreShowChannels, QueueStatus, and
Status with :data:`RESYNC_VARIABLES`) and :meth:`CallTracker.resync` rebuilds
the calls still up from it: calls whose channel is gone are finished; citizen
channels that started during the gap are adopted; a caller listed in a
QueueEntry waits in that queue (``Wait`` gives when it joined); a caller bridged
by ``Queue`` is connected to the member app_queue wrote into its channel
variables (``setinterfacevar``: MEMBERINTERFACE/MEMBERNAME; ``setqueueentryvar``:
QEHOLDTIME, the same hold time as queue_log's CONNECT). The AgentComplete that
arrives later brings the talk time as usual.

Timeout. On a queue timeout (and leavewhenempty) app_queue calls
``record_abandoned()``, so AMI shows QueueCallerAbandon although queue_log says
EXITWITHTIMEOUT / EXITEMPTY; the QUEUESTATUS that Queue() sets when it returns
tells them apart, and it overrides the abandon.

Memory. Finished calls are forgotten; calls with no event for
``stale_after_seconds`` (a Hangup lost during an AMI reconnect, an Asterisk
restart) are finished with ``hangup_cause_text = EXPIRED`` and returned by
``expire()``, which ``handle()`` also runs every ``sweep_seconds``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from hotline.core.records import CallOutcome, CallRecord, QueueAttempt

from .ami_protocol import AmiMessage

Clock = Callable[[], datetime]
EXPIRED = "expired: no Hangup event seen"
GONE = "ended while the AMI link was down"
_UNIQUEID_EPOCH = re.compile(r"(\d+)\.\d+$")  # "[systemname-]epoch.seq"
# QUEUESTATUS values set when Queue() returns without a connected agent.
_QUEUE_STATUS_OUTCOME = {
    "TIMEOUT": "timeout",
    "LEAVEEMPTY": "exitempty",
    "LEAVEUNAVAIL": "exitempty",
}
# Queue() refused to even queue the caller: no QueueCallerJoin, no attempt.
_JOIN_REFUSED = frozenset({"JOINEMPTY", "JOINUNAVAIL", "FULL"})
#: Channel variables the resync asks Status for (the queues set the member's and
#: the hold time with setinterfacevar / setqueueentryvar / setqueuevar = yes).
RESYNC_VARIABLES = (
    "MEMBERINTERFACE", "MEMBERNAME", "QEHOLDTIME", "QUEUENAME",
    "HOTLINE_QUEUE", "IVR_CHOICE", "IVR_SOURCE", "QUEUESTATUS",
)
_FINISHED_KEPT = 10_000  # Uniqueids of finished calls remembered (see _finished)
_UNSET = "(null)"  # how Status prints a variable the channel does not have


@dataclass(frozen=True)
class AsteriskSnapshot:
    """What Asterisk says is up, read right after a (re)connect."""

    channels: Sequence[AmiMessage]  # CoreShowChannel events
    queue_entries: Sequence[AmiMessage] = ()  # QueueEntry events of QueueStatus
    statuses: Sequence[AmiMessage] = ()  # Status events, with RESYNC_VARIABLES
    at: datetime | None = None  # when it was read (else the tracker's clock)


def status_variables(msg: AmiMessage | None) -> dict[str, str]:
    """``Variable: NAME=value`` lines of a Status event; unset ones left out."""
    out: dict[str, str] = {}
    if msg is None:
        return out
    for line in msg.getall("Variable") + msg.getall("ChanVariable"):
        name, sep, value = line.partition("=")
        if sep and value and value != _UNSET:
            out[name.strip().upper()] = value
    return out


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _cid(value: str | None) -> str:
    return "" if value in (None, "<unknown>") else value


@dataclass
class _Call:
    record: CallRecord
    last_seen: datetime
    hung_up: bool = False
    connected: bool = False  # AgentConnect seen
    completed: bool = False  # AgentComplete seen
    connected_at: datetime | None = None  # AgentConnect of the answered attempt
    bridge_left_at: datetime | None = None  # the caller's BridgeLeave after it
    member_uniqueid: str | None = None  # DestUniqueid of AgentConnect
    queue_status: str | None = None  # QUEUESTATUS after the last Queue() without an agent
    routed_queue: str | None = None  # HOTLINE_QUEUE, as set by the IVR
    ivr_exit: str | None = None  # IVR_EXIT: the IVR ended the call without a queue


class CallTracker:
    """Turns the AMI event stream into :class:`CallRecord` updates worth persisting."""

    def __init__(
        self,
        server_id: str,
        inbound_contexts: Collection[str],
        *,
        clock: Clock = _utcnow,
        linger_seconds: float = 60.0,
        stale_after_seconds: float = 6 * 3600.0,
        sweep_seconds: float = 60.0,
    ) -> None:
        self._server_id = server_id
        self._inbound = frozenset(inbound_contexts)
        self._clock = clock
        self._linger = timedelta(seconds=linger_seconds)
        self._stale = timedelta(seconds=stale_after_seconds)
        self._sweep = timedelta(seconds=sweep_seconds)
        self._boot_epoch = 0
        self._calls: dict[str, _Call] = {}  # by caller channel Uniqueid
        # Calls already finished: a resync must not take one on again while its
        # channel is still being torn down (it can outlive its Hangup event).
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._last_sweep: datetime | None = None

    def set_boot_epoch(self, epoch: int) -> list[CallRecord]:
        """Asterisk's start time (CoreStatus), part of every call key.

        If Asterisk restarted, the calls still tracked died with it: they are
        finished as expired and returned so that the caller can persist them.
        """
        orphans: list[CallRecord] = []
        if self._boot_epoch and epoch != self._boot_epoch:
            orphans = [self._expire_call(uid) for uid in list(self._calls)]
            self._finished.clear()  # a new Asterisk: its channels are new calls
        self._boot_epoch = epoch
        return orphans

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def call(self, uniqueid: str) -> CallRecord | None:
        """The live record of a caller channel (read only: the screen-pop reads it)."""
        call = self._calls.get(uniqueid)
        return call.record if call is not None else None

    def handle(self, msg: AmiMessage) -> list[CallRecord]:
        """Apply one AMI message; return the records that changed enough to save."""
        out = self._sweep_if_due()
        event = msg.event
        if event is None:
            return out
        uid = msg.get("Uniqueid")
        if uid is None:
            if event == "AgentComplete":  # without the caller's fields: see the docstring
                uid = self._member_call(msg)
            if uid is None:
                return out
        elif event == "Newchannel":
            self._new_channel(msg, uid)
            return out
        call = self._calls.get(uid)
        if call is None:
            return out  # not a citizen call: the cheap, common path
        handler = self._HANDLERS.get(event)
        now = self._event_time(msg)
        call.last_seen = now
        self._track_linkedid(call.record, msg.get("Linkedid"))
        emit = handler(self, call, msg, now) if handler is not None else False
        if call.hung_up and (call.completed or not call.connected):
            self._forget(uid)  # nothing more can change
        if emit:
            out.append(self._snapshot(call))
        return out

    def expire(self, now: datetime | None = None) -> list[CallRecord]:
        """Forget lingering calls and finish stale ones; return the stale ones."""
        now = now or self._clock()
        out: list[CallRecord] = []
        for uid, call in list(self._calls.items()):
            if call.hung_up and now - call.last_seen > self._linger:
                self._forget(uid)  # its record was emitted at Hangup already
            elif not call.hung_up and now - call.last_seen > self._stale:
                out.append(self._expire_call(uid))
        return out

    def reconcile(self, live_uniqueids: Collection[str]) -> list[CallRecord]:
        """After an AMI reconnect: finish the calls whose channel is gone (their
        Hangup was missed while the link was down); returns them to be saved."""
        now = self._clock()
        out: list[CallRecord] = []
        for uid, call in list(self._calls.items()):
            if uid in live_uniqueids or call.hung_up:
                continue
            call.hung_up = True
            call.record.ended_at = now
            call.record.hangup_cause_text = GONE
            self._finish(call)
            self._forget(uid)
            out.append(self._snapshot(call))
        return out

    def resync(self, snapshot: AsteriskSnapshot) -> list[CallRecord]:
        """After an AMI (re)connect: rebuild the calls still up from what Asterisk
        says (see the module docstring); returns the records that changed."""
        now = snapshot.at or self._clock()
        live = {uid for c in snapshot.channels if (uid := c.get("Uniqueid"))}
        out = self.reconcile(live)
        adopted: set[str] = set()
        for channel in snapshot.channels:
            uid = channel.get("Uniqueid")
            if uid and uid not in self._calls and uid not in self._finished:
                self._new_channel(channel, uid)
                if uid in self._calls:
                    adopted.add(uid)
        by_uid = {uid: s for s in snapshot.statuses if (uid := s.get("Uniqueid"))}
        entries = {uid: e for e in snapshot.queue_entries if (uid := e.get("Uniqueid"))}
        by_channel = {e.get("Channel"): e for e in snapshot.queue_entries}
        for uid, call in self._calls.items():
            if call.hung_up:
                continue
            status = by_uid.get(uid)
            variables = status_variables(status)
            changed = self._resync_variables(call, variables)
            entry = entries.get(uid) or by_channel.get(call.record.channel)
            if entry is not None:
                changed = self._resync_waiting(call, entry, variables, now) or changed
            elif status is not None and self._bridged_by_queue(status, variables):
                changed = self._resync_connected(call, variables, now) or changed
            if changed or uid in adopted:
                call.last_seen = now
                out.append(self._snapshot(call))
        return out

    # -- internals -------------------------------------------------------------

    def _forget(self, uid: str) -> None:
        del self._calls[uid]
        self._finished[uid] = None
        if len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)

    def _resync_variables(self, call: _Call, variables: dict[str, str]) -> bool:
        record, changed = call.record, False
        if record.ivr_choice is None and "IVR_CHOICE" in variables:
            record.ivr_choice, changed = variables["IVR_CHOICE"], True
        if record.ivr_source is None and "IVR_SOURCE" in variables:
            record.ivr_source, changed = variables["IVR_SOURCE"], True
        if "HOTLINE_QUEUE" in variables:
            call.routed_queue = variables["HOTLINE_QUEUE"]
        return changed

    @staticmethod
    def _bridged_by_queue(status: AmiMessage, variables: dict[str, str]) -> bool:
        """The caller talks to a queue member: bridged while Queue() runs, and
        app_queue has named the member on its channel."""
        return (bool(status.get("BridgeID") or status.get("BridgeId"))
                and (status.get("Application") or "").lower() == "queue"
                and "MEMBERINTERFACE" in variables)

    def _close_missed_stays(self, call: _Call, queue: str, status: str | None,
                            at: datetime) -> None:
        """Stays in other queues that ended during the gap (say, a timeout moved
        the caller to the overflow queue): closed with what QUEUESTATUS says."""
        for attempt in call.record.attempts:
            if attempt.queue != queue and attempt.outcome is None:
                attempt.outcome = _QUEUE_STATUS_OUTCOME.get(status or "")
                attempt.left_at = attempt.left_at or at

    def _resync_waiting(self, call: _Call, entry: AmiMessage, variables: dict[str, str],
                        now: datetime) -> bool:
        queue = entry.get("Queue") or ""
        wait = _int(entry.get("Wait")) or 0
        entered = now - timedelta(seconds=wait)
        last = self._open_attempt(call.record)
        position = _int(entry.get("Position"))
        if last is not None and last.queue == queue and last.outcome is None:
            last.position = last.position or position
            return False
        self._close_missed_stays(call, queue, variables.get("QUEUESTATUS"), entered)
        call.record.attempts.append(QueueAttempt(queue=queue, entered_at=entered,
                                                 position=position))
        call.record.queue = queue
        call.queue_status = None
        call.connected = call.completed = False
        return True

    def _resync_connected(self, call: _Call, variables: dict[str, str], now: datetime) -> bool:
        interface = variables["MEMBERINTERFACE"]
        queue = variables.get("QUEUENAME") or call.record.queue or call.routed_queue or ""
        answered = self._answered_attempt(call.record)
        if (call.connected and not call.completed and answered is not None
                and answered.queue == queue and answered.operator_interface == interface):
            return False  # nothing was missed
        hold = _int(variables.get("QEHOLDTIME"))
        attempt = next((a for a in reversed(call.record.attempts)
                        if a.queue == queue and a.outcome in (None, "answered")), None)
        if attempt is None:
            entered = now - timedelta(seconds=hold or 0)
            self._close_missed_stays(call, queue, variables.get("QUEUESTATUS"), entered)
            attempt = QueueAttempt(queue=queue, entered_at=entered)
            call.record.attempts.append(attempt)
        call.record.queue = queue
        attempt.outcome = "answered"
        attempt.wait_seconds = hold if hold is not None else attempt.wait_seconds
        attempt.operator_interface = interface
        attempt.operator_name = variables.get("MEMBERNAME") or attempt.operator_name
        # app_queue's connect time is its join time plus the hold time: talk can
        # still be derived if AgentComplete never comes.
        connected_at = attempt.entered_at + timedelta(seconds=hold or 0)
        attempt.answered_at = attempt.answered_at or connected_at
        call.connected, call.completed = True, False
        call.connected_at, call.bridge_left_at = connected_at, None
        return True


    def _sweep_if_due(self) -> list[CallRecord]:
        now = self._clock()
        if self._last_sweep is None:
            self._last_sweep = now
        if now - self._last_sweep < self._sweep:
            return []
        self._last_sweep = now
        return self.expire(now)

    def _event_time(self, msg: AmiMessage) -> datetime:
        # "Timestamp" exists when manager.conf has timestampevents=yes.
        stamp = msg.get("Timestamp")
        if stamp:
            try:
                return datetime.fromtimestamp(float(stamp), UTC)
            except ValueError:
                pass
        return self._clock()

    def _new_channel(self, msg: AmiMessage, uid: str) -> None:
        channel = msg.get("Channel", "") or ""
        if msg.get("Context") not in self._inbound:
            return
        if channel.startswith("Local/") and channel.endswith(";1"):
            return  # the originating half of a Local channel: see the module docstring
        started_at = self._event_time(msg) if "Timestamp" in msg else None
        if started_at is None:
            match = _UNIQUEID_EPOCH.search(uid)  # creation second, immune to AMI delays
            started_at = (
                datetime.fromtimestamp(int(match.group(1)), UTC) if match else self._clock()
            )
        linkedid = msg.get("Linkedid") or uid
        record = CallRecord(
            call_key=f"{self._server_id}:{self._boot_epoch}:{uid}",
            asterisk_server=self._server_id,
            uniqueid=uid,
            linkedid=linkedid,
            channel=channel,
            started_at=started_at,
            caller_number=_cid(msg.get("CallerIDNum")),
            caller_name=_cid(msg.get("CallerIDName")),
            language=msg.get("Language") or "",
            linkedids=[linkedid],
        )
        self._calls[uid] = _Call(record, last_seen=self._event_time(msg))

    @staticmethod
    def _track_linkedid(record: CallRecord, linkedid: str | None) -> None:
        if linkedid and linkedid != record.linkedid:
            record.linkedid = linkedid
            if linkedid not in record.linkedids:
                record.linkedids.append(linkedid)

    def _caller_id(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        number, name = _cid(msg.get("CallerIDNum")), _cid(msg.get("CallerIDName"))
        if number:
            call.record.caller_number = number
        if name:
            call.record.caller_name = name
        return False

    def _var_set(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        variable, value = (msg.get("Variable") or "").upper(), msg.get("Value") or ""
        if variable == "IVR_CHOICE":
            call.record.ivr_choice = value or None
        elif variable == "IVR_SOURCE":
            call.record.ivr_source = value or None
        elif variable == "IVR_EXIT":
            call.ivr_exit = value or None
        elif variable == "HOTLINE_QUEUE" and value:
            # The queue the IVR chose; it becomes the call's queue only if Queue()
            # tried it (joined, or refused to join: see _finish).
            call.routed_queue = value
        elif variable == "QUEUESTATUS" and value:
            call.queue_status = value.upper()
            attempt = self._open_attempt(call.record)
            outcome = _QUEUE_STATUS_OUTCOME.get(call.queue_status)
            # "abandoned" too: app_queue raised QueueCallerAbandon for this timeout.
            if attempt is not None and outcome and attempt.outcome in (None, "abandoned"):
                attempt.outcome = outcome
        return False

    def _new_state(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        if msg.get("ChannelStateDesc") == "Up" and call.record.answered_at is None:
            call.record.answered_at = now
        return False

    def _queue_join(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        queue = msg.get("Queue") or ""
        call.record.queue = queue
        call.queue_status = None
        last = self._open_attempt(call.record)
        if (last is not None and last.queue == queue and last.outcome is None
                and last.left_at is None):
            # The resync already made this stay from QueueStatus: the join that
            # reached us just after the reconnect is the same one, and exact.
            last.entered_at, last.position = now, _int(msg.get("Position"))
            return True
        call.record.attempts.append(
            QueueAttempt(queue=queue, entered_at=now, position=_int(msg.get("Position")))
        )
        return True

    def _agent_connect(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        attempt = self._attempt_for(call, msg, now)
        attempt.answered_at = now
        attempt.outcome = "answered"
        attempt.wait_seconds = _int(msg.get("HoldTime"))
        attempt.ring_seconds = _int(msg.get("RingTime"))
        attempt.operator_interface = msg.get("Interface")
        attempt.operator_name = msg.get("MemberName")
        call.connected = True
        call.completed = False
        call.connected_at = now
        call.bridge_left_at = None
        call.member_uniqueid = msg.get("DestUniqueid")
        return True

    def _bridge_leave(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        # The end of the conversation as AMI shows it: app_queue stops its clock when
        # either party hangs up, which is what ends the bridge.
        if call.connected and not call.completed and call.bridge_left_at is None:
            call.bridge_left_at = now
        return False

    def _agent_complete(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        attempt = self._attempt_for(call, msg, now)
        attempt.talk_seconds = _int(msg.get("TalkTime"))
        attempt.talk_source = "agent_complete" if attempt.talk_seconds is not None else None
        attempt.completed_by = msg.get("Reason")
        if attempt.wait_seconds is None:
            attempt.wait_seconds = _int(msg.get("HoldTime"))
        if attempt.outcome != "answered":  # AgentConnect was missed: this proves it
            attempt.outcome = "answered"
            attempt.operator_interface = attempt.operator_interface or msg.get("Interface")
            attempt.operator_name = attempt.operator_name or msg.get("MemberName")
        call.completed = True
        if call.hung_up:  # late: re-emit the final record with the talk time
            self._finish(call)
            return True
        return False

    def _queue_abandon(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        attempt = self._attempt_for(call, msg, now)
        attempt.outcome = "abandoned"
        attempt.wait_seconds = _int(msg.get("HoldTime"))
        attempt.left_at = attempt.left_at or now
        return False

    def _queue_leave(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        self._attempt_for(call, msg, now).left_at = now
        return False

    def _hangup(self, call: _Call, msg: AmiMessage, now: datetime) -> bool:
        call.hung_up = True
        record = call.record
        record.ended_at = now
        record.hangup_cause = _int(msg.get("Cause"))
        record.hangup_cause_text = msg.get("Cause-txt")
        for attempt in record.attempts:
            attempt.left_at = attempt.left_at or now
        if call.connected and not call.completed:
            self._derive_talk(call, now)
        self._finish(call)
        return True

    @staticmethod
    def _derive_talk(call: _Call, now: datetime) -> None:
        """AgentComplete has not come (yet): talk from AgentConnect to the bridge's end."""
        attempt = CallTracker._answered_attempt(call.record)
        if attempt is None or call.connected_at is None or attempt.talk_seconds is not None:
            return
        end = call.bridge_left_at or now
        # app_queue subtracts whole-second time() values; so do we.
        attempt.talk_seconds = max(0, int(end.timestamp()) - int(call.connected_at.timestamp()))
        attempt.talk_source = "derived"

    def _member_call(self, msg: AmiMessage) -> str | None:
        """The caller channel of the member's current call (for an AgentComplete
        that lacks the caller's fields); None unless exactly one call fits."""
        member_uid = msg.get("DestUniqueid")
        queue, interface = msg.get("Queue"), msg.get("Interface")
        hold = _int(msg.get("HoldTime"))
        candidates: list[tuple[str, _Call]] = []
        for uid, call in self._calls.items():
            if not call.connected or call.completed:
                continue
            if member_uid and call.member_uniqueid == member_uid:
                return uid
            attempt = self._answered_attempt(call.record)
            if (attempt is not None and interface and attempt.queue == queue
                    and attempt.operator_interface == interface):
                candidates.append((uid, call))
        if len(candidates) > 1 and hold is not None:  # not with queues.conf's ringinuse = no
            candidates = [(uid, c) for uid, c in candidates
                          if (a := self._answered_attempt(c.record)) and a.wait_seconds == hold]
        return candidates[0][0] if len(candidates) == 1 else None

    @staticmethod
    def _answered_attempt(record: CallRecord) -> QueueAttempt | None:
        return next((a for a in reversed(record.attempts) if a.outcome == "answered"), None)

    _HANDLERS: ClassVar[dict[str, Callable[[CallTracker, _Call, AmiMessage, datetime], bool]]] = {
        "NewCallerid": _caller_id,
        "VarSet": _var_set,
        "Newstate": _new_state,
        "QueueCallerJoin": _queue_join,
        "AgentConnect": _agent_connect,
        "AgentComplete": _agent_complete,
        "BridgeLeave": _bridge_leave,
        "QueueCallerAbandon": _queue_abandon,
        "QueueCallerLeave": _queue_leave,
        "Hangup": _hangup,
    }

    @staticmethod
    def _open_attempt(record: CallRecord) -> QueueAttempt | None:
        return record.attempts[-1] if record.attempts else None

    @staticmethod
    def _attempt_for(call: _Call, msg: AmiMessage, now: datetime) -> QueueAttempt:
        """The latest stay in the event's queue; one is made up if QueueCallerJoin was missed."""
        queue = msg.get("Queue") or call.record.queue or ""
        for attempt in reversed(call.record.attempts):
            if attempt.queue == queue:
                return attempt
        attempt = QueueAttempt(queue=queue, entered_at=now)
        call.record.attempts.append(attempt)
        call.record.queue = queue
        return attempt

    @staticmethod
    def _finish(call: _Call) -> None:
        """Outcome and the call-level summary, from the queue attempts."""
        record = call.record
        answered = [a for a in record.attempts if a.outcome == "answered"]
        last = record.attempts[-1] if record.attempts else None
        summary = answered[-1] if answered else last
        if summary is not None:
            record.queue = summary.queue
            record.wait_seconds = summary.wait_seconds
            record.talk_seconds = summary.talk_seconds
            record.talk_source = summary.talk_source
            record.operator_interface = summary.operator_interface
            record.operator_name = summary.operator_name
        if answered:
            record.outcome = CallOutcome.ANSWERED
        elif last is None and call.ivr_exit == "callback":
            # A callback booked instead of waiting: its queue's outcome of its own.
            record.outcome = CallOutcome.CALLBACK
            record.queue = call.routed_queue
        elif last is None:
            refused = call.queue_status in _JOIN_REFUSED
            record.outcome = CallOutcome.NO_AGENTS if refused else CallOutcome.IVR_ONLY
            record.queue = call.routed_queue if refused else None
        elif last.outcome == "timeout":
            record.outcome = CallOutcome.TIMEOUT
        elif last.outcome == "exitempty":
            record.outcome = CallOutcome.NO_AGENTS
        else:
            record.outcome = CallOutcome.ABANDONED

    def _expire_call(self, uid: str) -> CallRecord:
        call = self._calls[uid]
        self._forget(uid)
        record = call.record
        record.ended_at = call.last_seen
        record.hangup_cause_text = EXPIRED
        self._finish(call)
        return self._snapshot(call)

    @staticmethod
    def _snapshot(call: _Call) -> CallRecord:
        """A copy, so that a sink holding it never sees later mutations."""
        record = call.record
        return replace(
            record,
            attempts=[replace(a) for a in record.attempts],
            linkedids=list(record.linkedids),
        )
