"""Asterisk's queue_log, the reference for call figures: parsing and reconciling. Pure.

Under load Asterisk's AMI loses queue facts (an AgentComplete without the
caller's fields, see ``cti_bridge.call_tracker``) while app_queue's queue_log
keeps them: it is what QueueMetrics-style tools read and what our statistics
must agree with. This module turns queue_log lines into per-call facts and
corrects a :class:`~hotline.core.records.CallRecord` built from AMI to them.
No I/O: the tailer and the database side are in :mod:`crm_sync.reconciler`
and :mod:`crm_sync.call_store`.

Line format (``main/logger.c``, ``apps/app_queue.c``):
``epoch|callid|queue|agent|EVENT|data1|data2|…`` where callid is the caller
channel's Uniqueid (``NONE`` for member events). The figures used here:

========================  ================================================
ENTERQUEUE                url|callerid — a new stay in ``queue``
CONNECT                   holdtime|bridged uniqueid|ringtime
COMPLETECALLER/-AGENT     holdtime|calltime|origpos
(BLIND|ATTENDED)TRANSFER  …|holdtime|calltime|origpos (the last three)
ABANDON                   pos|origpos|waittime
EXITWITHTIMEOUT/EXITEMPTY pos|origpos|waittime
EXITWITHKEY               key|pos|origpos|waittime
========================  ================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from hotline.core.records import CallOutcome, CallRecord, QueueAttempt

NO_CALL = "NONE"
#: Events after which a queue stay is over, with the attempt outcome they mean.
_CLOSING = {
    "COMPLETECALLER": "answered",
    "COMPLETEAGENT": "answered",
    "TRANSFER": "answered",
    "BLINDTRANSFER": "answered",
    "ATTENDEDTRANSFER": "answered",
    "ABANDON": "abandoned",
    "EXITWITHTIMEOUT": "timeout",
    "EXITEMPTY": "exitempty",
    "EXITWITHKEY": "exitwithkey",
}
_COMPLETED_BY = {"COMPLETECALLER": "caller", "COMPLETEAGENT": "agent"}
#: The events that carry a call's figures (others, e.g. RINGNOANSWER, do not).
CALL_EVENTS = frozenset({"ENTERQUEUE", "CONNECT", *_CLOSING})


@dataclass(frozen=True, slots=True)
class QueueLogEntry:
    epoch: int
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)


def parse_line(line: str) -> QueueLogEntry | None:
    """One queue_log line (without its newline); None when it is not one."""
    parts = line.rstrip("\r\n").split("|")
    if len(parts) < 5 or not parts[4]:
        return None
    try:
        epoch = int(float(parts[0]))
    except ValueError:
        return None
    return QueueLogEntry(epoch, parts[1], parts[2], parts[3], parts[4], tuple(parts[5:]))


def split_lines(buffer: bytes) -> tuple[list[str], bytes]:
    """Complete lines of ``buffer`` (decoded, invalid UTF-8 replaced) and the
    unfinished rest, which Asterisk is still writing."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return [], buffer
    lines = buffer[:end].decode("utf-8", errors="replace").split("\n")
    return [line for line in lines if line.strip()], buffer[end + 1 :]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _data(entry: QueueLogEntry, index: int) -> int | None:
    try:
        return _int(entry.data[index])
    except IndexError:
        return None


@dataclass
class LoggedAttempt:
    """One stay of a call in one queue, as queue_log tells it."""

    queue: str
    entered_epoch: int
    outcome: str | None = None  # answered once CONNECT is seen; see _CLOSING
    wait_seconds: int | None = None
    talk_seconds: int | None = None
    ring_seconds: int | None = None
    agent: str | None = None
    completed_by: str | None = None
    closed: bool = False
    closed_epoch: int | None = None


@dataclass
class LoggedCall:
    callid: str
    attempts: list[LoggedAttempt] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        """Every stay in a queue is over (the call may still be in the dialplan)."""
        return bool(self.attempts) and all(a.closed for a in self.attempts)

    @property
    def last_epoch(self) -> int | None:
        epochs = [a.closed_epoch or a.entered_epoch for a in self.attempts]
        return max(epochs) if epochs else None


def fold_call(callid: str, entries: Iterable[QueueLogEntry]) -> LoggedCall:
    """The queue stays of one call from its queue_log lines (in file order)."""
    call = LoggedCall(callid)
    for entry in entries:
        if entry.callid != callid or entry.event not in CALL_EVENTS:
            continue
        if entry.event == "ENTERQUEUE":
            call.attempts.append(LoggedAttempt(entry.queue, entry.epoch))
            continue
        attempt = next((a for a in reversed(call.attempts)
                        if a.queue == entry.queue and not a.closed), None)
        if attempt is None:  # its ENTERQUEUE was before what we read
            attempt = LoggedAttempt(entry.queue, entry.epoch)
            call.attempts.append(attempt)
        _apply_entry(attempt, entry)
    return call


def _apply_entry(attempt: LoggedAttempt, entry: QueueLogEntry) -> None:
    event = entry.event
    if event == "CONNECT":
        attempt.outcome = "answered"
        attempt.wait_seconds = _data(entry, 0)
        attempt.ring_seconds = _data(entry, 2)
        attempt.agent = entry.agent or None
        return
    attempt.closed, attempt.closed_epoch = True, entry.epoch
    attempt.outcome = _CLOSING[event]
    if event in _COMPLETED_BY:
        attempt.wait_seconds = _data(entry, 0)
        attempt.talk_seconds = _data(entry, 1)
        attempt.completed_by = _COMPLETED_BY[event]
        attempt.agent = entry.agent or attempt.agent
    elif attempt.outcome == "answered":  # a transfer: its data ends holdtime|calltime|origpos
        attempt.wait_seconds = _data(entry, len(entry.data) - 3)
        attempt.talk_seconds = _data(entry, len(entry.data) - 2)
        attempt.completed_by = "transfer"
        attempt.agent = entry.agent or attempt.agent
    elif event == "EXITWITHKEY":
        attempt.wait_seconds = _data(entry, 3)
    else:  # ABANDON, EXITWITHTIMEOUT, EXITEMPTY: pos|origpos|waittime
        attempt.wait_seconds = _data(entry, 2)


# --- reconciling a record ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Correction:
    """One figure of a call that queue_log changed: ``field`` went from ``was`` to ``became``."""

    field: str
    was: str | None
    became: str | None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def call_outcome(attempts: list[QueueAttempt]) -> CallOutcome:
    """The call's outcome from its stays in queues (the same rule as the call tracker)."""
    if any(a.outcome == "answered" for a in attempts):
        return CallOutcome.ANSWERED
    last = attempts[-1].outcome if attempts else None
    if last == "timeout":
        return CallOutcome.TIMEOUT
    if last == "exitempty":
        return CallOutcome.NO_AGENTS
    return CallOutcome.ABANDONED


def reconcile(record: CallRecord, logged: LoggedCall, *, finish: bool = False) -> list[Correction]:
    """Correct ``record`` (in place) to queue_log's figures; returns what changed.

    Per stay: outcome, wait, talk, ring, completed_by; stays AMI missed are
    added, stays queue_log does not know are dropped. The call's outcome is
    set from queue_log only when the AMI record is final, or with ``finish``
    (the call's tracker is gone and every stay is over); a call still in
    progress keeps ``in_progress``. A talk time changed here gets
    ``talk_source = "queue_log"``.

    On a record still in progress, a figure AMI has not given yet (None) is
    filled in without a :class:`Correction`: queue_log is merely ahead of AMI
    there, they do not disagree.
    """
    if not logged.attempts:
        return []
    corrections = _Corrections(final=record.outcome is not CallOutcome.IN_PROGRESS)
    before = [(a.queue, a.outcome) for a in record.attempts]
    attempts = _pair_attempts(record.attempts, logged.attempts)
    for index, (ours, theirs) in enumerate(zip(attempts, logged.attempts, strict=True)):
        for name in ("outcome", "wait_seconds", "talk_seconds", "ring_seconds", "completed_by"):
            value = getattr(theirs, name)
            if value is None or value == getattr(ours, name):
                continue
            if name == "outcome" and not theirs.closed and value != "answered":
                continue
            corrections.note(f"attempts[{index}].{name}", getattr(ours, name), value)
            setattr(ours, name, value)
            if name == "talk_seconds":
                ours.talk_source = "queue_log"
    after = [(a.queue, a.outcome) for a in attempts]
    if [q for q, _ in before] != [q for q, _ in after]:
        corrections.note("attempts", ",".join(q for q, _ in before) or None,
                         ",".join(q for q, _ in after))
    record.attempts = attempts
    _summarise(record, corrections, finish=finish and logged.closed)
    return corrections.found


class _Corrections:
    """The corrections found so far (see :func:`reconcile` on records in progress)."""

    def __init__(self, *, final: bool) -> None:
        self.final = final
        self.found: list[Correction] = []

    def note(self, name: str, was: object, became: object) -> None:
        if self.final or was is not None:
            self.found.append(Correction(name, _text(was), _text(became)))


def _pair_attempts(ours: list[QueueAttempt], logged: list[LoggedAttempt]) -> list[QueueAttempt]:
    """Our stays matched to queue_log's in order (by queue name); copies, so the
    caller's record only changes through :func:`reconcile`'s assignment."""
    paired: list[QueueAttempt] = []
    rest = list(ours)
    for theirs in logged:
        match = next((i for i, a in enumerate(rest) if a.queue == theirs.queue), None)
        if match is not None:
            paired.append(replace(rest[match]))
            rest = rest[match + 1 :]
        else:
            paired.append(QueueAttempt(
                queue=theirs.queue, entered_at=datetime.fromtimestamp(theirs.entered_epoch, UTC),
                operator_name=theirs.agent if theirs.outcome == "answered" else None,
            ))
    return paired


def _summarise(record: CallRecord, corrections: _Corrections, *, finish: bool) -> None:
    """The call-level figures from the (corrected) stays, as the tracker's _finish does."""
    attempts = record.attempts
    answered = [a for a in attempts if a.outcome == "answered"]
    summary = answered[-1] if answered else attempts[-1]
    final = record.outcome is not CallOutcome.IN_PROGRESS or finish
    values: dict[str, object] = {
        "queue": summary.queue,
        "wait_seconds": summary.wait_seconds,
        "talk_seconds": summary.talk_seconds,
    }
    if final:
        values["outcome"] = call_outcome(attempts)
        corrections.final = True  # a call finished from queue_log: every change counts
    for name, value in values.items():
        if value is not None and value != getattr(record, name):
            corrections.note(name, getattr(record, name), value)
            setattr(record, name, value)
    source = summary.talk_source if summary.talk_seconds is not None else None
    if source != record.talk_source and source == "queue_log":
        # kept as a correction too: where the replaced talk time had come from
        corrections.note("talk_source", record.talk_source, source)
    record.talk_source = source
