"""queue_log parsing and reconciliation, in memory.

``tests/fixtures/queue_log/sandbox_22.txt`` holds lines Asterisk 22.10 wrote in
the sandbox during a 30 calls/s run (a call completed by the caller, one by
the operator, one abandoned, the member log-ins, the module start).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from crm_sync.queue_log import (
    LoggedCall,
    QueueLogEntry,
    fold_call,
    parse_line,
    reconcile,
    split_lines,
)
from cti_bridge.ami_protocol import AmiParser
from cti_bridge.call_tracker import CallTracker
from hotline.core.records import CallOutcome, CallRecord, QueueAttempt
from tests.support.paths import AMI_FIXTURES, REPO_ROOT

SANDBOX_LOG = REPO_ROOT / "tests" / "fixtures" / "queue_log" / "sandbox_22.txt"
T0 = datetime(2026, 11, 30, 7, 31, 29, tzinfo=UTC)


def entries() -> list[QueueLogEntry]:
    parsed = [parse_line(line) for line in SANDBOX_LOG.read_text().splitlines()]
    assert None not in parsed
    return [e for e in parsed if e is not None]


def test_parse_line() -> None:
    entry = parse_line("1796023897|hl-x-1796023884.7|housing|Operator 1002|COMPLETECALLER|0|8|1\n")
    assert entry == QueueLogEntry(1796023897, "hl-x-1796023884.7", "housing", "Operator 1002",
                                  "COMPLETECALLER", ("0", "8", "1"))
    assert entry.at == datetime.fromtimestamp(1796023897, UTC)
    assert parse_line("1796023884|NONE|NONE|NONE|QUEUESTART|") == QueueLogEntry(
        1796023884, "NONE", "NONE", "NONE", "QUEUESTART", ("",))
    for junk in ("", "garbage", "x|a|b|c|ENTERQUEUE", "1|a|b|c|", "1|a|b"):
        assert parse_line(junk) is None, junk


def test_split_lines_keeps_the_unfinished_rest() -> None:
    data = "1|u|q|NONE|ENTERQUEUE||Тарас|1\n2|u|q|NONE|ABAN".encode()
    lines, rest = split_lines(data)
    assert lines == ["1|u|q|NONE|ENTERQUEUE||Тарас|1"]
    assert rest == b"2|u|q|NONE|ABAN"
    assert split_lines(b"no newline yet") == ([], b"no newline yet")
    # a Cyrillic letter cut by a read boundary is not split: the cut is always at b"\n"
    cut = "1|u|q|NONE|ENTERQUEUE||Леся|1\n".encode()
    assert split_lines(cut[:-3]) == ([], cut[:-3])


def test_fold_the_recorded_calls() -> None:
    log = entries()
    by_caller = fold_call("hl-x-1796023884.7", log)
    [stay] = by_caller.attempts
    assert (stay.queue, stay.outcome, stay.wait_seconds, stay.talk_seconds, stay.ring_seconds,
            stay.agent, stay.completed_by) == ("housing", "answered", 0, 8, 0, "Operator 1002",
                                               "caller")
    assert by_caller.closed and by_caller.last_epoch == 1796023897

    [by_agent] = fold_call("hl-x-1796023885.35", log).attempts
    assert (by_agent.talk_seconds, by_agent.completed_by) == (3, "agent")

    [abandoned] = fold_call("hl-x-1796023893.721", log).attempts
    assert (abandoned.outcome, abandoned.wait_seconds, abandoned.talk_seconds) == (
        "abandoned", 9, None)
    assert fold_call("NONE", log).attempts == []


def test_fold_a_connected_call_is_not_closed_and_stays_per_queue() -> None:
    lines = [
        "100|u1|housing|NONE|ENTERQUEUE||380501|1",
        "115|u1|housing|NONE|EXITWITHTIMEOUT|1|1|15",
        "115|u1|main|NONE|ENTERQUEUE||380501|1",
        "117|u1|main|Operator 7|RINGNOANSWER|2000",
        "120|u1|main|Operator 8|CONNECT|5|u9|1",
    ]
    call = fold_call("u1", [e for e in map(parse_line, lines) if e is not None])
    assert [(a.queue, a.outcome, a.wait_seconds, a.closed) for a in call.attempts] == [
        ("housing", "timeout", 15, True), ("main", "answered", 5, False)]
    assert not call.closed
    more = [*lines, "131|u1|main|Operator 8|BLINDTRANSFER|1552|hotline-inbound|5|11|1"]
    main = fold_call("u1", [e for e in map(parse_line, more) if e is not None]).attempts[1]
    assert (main.talk_seconds, main.completed_by, main.closed) == (11, "transfer", True)


def test_fold_without_enterqueue_and_exit_with_key() -> None:
    lines = ["50|u2|social|NONE|EXITWITHKEY|5|2|2|12", "51|u2|social|NONE|EXITEMPTY|1|1|3"]
    call = fold_call("u2", [e for e in map(parse_line, lines) if e is not None])
    assert [(a.outcome, a.wait_seconds) for a in call.attempts] == [
        ("exitwithkey", 12), ("exitempty", 3)]


# --- reconcile against a record the tracker built from the recorded AMI stream --------

# What app_queue logged for the call of tests/fixtures/ami/answered.txt (its
# queue_log was not recorded with it; the figures are those of its AMI events).
ANSWERED_LOG = [
    "1795881205|1795881204.41|housing|NONE|ENTERQUEUE||380501234567|1",
    "1795881205|1795881204.41|housing|Operator 101|CONNECT|0|1795881205.42|0",
    "1795881208|1795881204.41|housing|Operator 101|COMPLETEAGENT|0|3|1",
]


def tracked(*drop: str) -> CallRecord:
    """The final record of the answered fixture, optionally without some AMI events."""
    tracker = CallTracker("pbx1", ["hotline"], clock=lambda: T0)
    tracker.set_boot_epoch(1795880000)
    msgs = [m for m in AmiParser().feed((AMI_FIXTURES / "answered.txt").read_bytes())
            if m.event not in drop]
    return [r for m in msgs for r in tracker.handle(m)][-1]


def logged(lines: list[str], callid: str = "1795881204.41") -> LoggedCall:
    return fold_call(callid, [e for e in map(parse_line, lines) if e is not None])


def test_a_record_equal_to_queue_log_is_left_alone() -> None:
    record = tracked()
    before = replace(record, attempts=[replace(a) for a in record.attempts])
    assert reconcile(record, logged(ANSWERED_LOG)) == []
    assert record == before
    assert record.talk_source == "agent_complete"


def test_derived_talk_is_corrected_to_queue_log() -> None:
    record = tracked("AgentComplete")  # fixed clock: derived talk is 0 s
    assert (record.talk_seconds, record.talk_source) == (0, "derived")
    corrections = reconcile(record, logged(ANSWERED_LOG))
    assert {(c.field, c.was, c.became) for c in corrections} == {
        ("attempts[0].talk_seconds", "0", "3"),
        ("attempts[0].completed_by", None, "agent"),
        ("talk_seconds", "0", "3"),
        ("talk_source", "derived", "queue_log"),
    }
    assert record.talk_seconds == 3 and record.talk_source == "queue_log"
    assert record.attempts[0].talk_source == "queue_log"
    assert record.outcome is CallOutcome.ANSWERED


def test_outcome_wait_and_missing_stays_are_corrected() -> None:
    record = tracked("AgentConnect", "AgentComplete")  # AMI never saw the operator
    assert record.outcome is CallOutcome.ABANDONED and record.talk_seconds is None
    record.wait_seconds = record.attempts[0].wait_seconds = 7
    lines = ["1795881200|1795881204.41|main|NONE|ENTERQUEUE||380501234567|1",
             "1795881205|1795881204.41|main|NONE|EXITWITHTIMEOUT|1|1|5", *ANSWERED_LOG]
    corrections = {c.field: (c.was, c.became) for c in reconcile(record, logged(lines))}
    assert [a.queue for a in record.attempts] == ["main", "housing"]
    assert corrections["attempts"] == ("housing", "main,housing")
    assert corrections["outcome"] == ("abandoned", "answered")
    assert corrections["wait_seconds"] == ("7", "0")
    assert corrections["talk_seconds"] == (None, "3")
    assert record.attempts[0].outcome == "timeout" and record.attempts[0].wait_seconds == 5
    assert record.attempts[1].left_at is not None  # what AMI knew of the stay is kept
    corrected = record  # (a new name: mypy keeps the narrowing of the asserts above)
    assert (corrected.talk_seconds, corrected.talk_source) == (3, "queue_log")


def test_in_progress_call_keeps_its_outcome_unless_finished() -> None:
    record = CallRecord(call_key="pbx1:1:u1", asterisk_server="pbx1", uniqueid="u1",
                        linkedid="u1", channel="PJSIP/x", started_at=T0,
                        attempts=[QueueAttempt("housing", T0)])
    lines = ["100|u1|housing|NONE|ENTERQUEUE||380501|1", "110|u1|housing|NONE|ABANDON|1|1|10"]
    # queue_log is only ahead of AMI here: filled in, not counted as a correction
    assert reconcile(record, logged(lines, "u1")) == []
    assert record.outcome is CallOutcome.IN_PROGRESS
    assert record.attempts[0].outcome == "abandoned" and record.wait_seconds == 10
    finished = record
    reconcile(finished, logged(lines, "u1"), finish=True)
    assert finished.outcome is CallOutcome.ABANDONED
    # an open stay never finishes a call
    open_call = logged(["100|u1|housing|NONE|ENTERQUEUE||380501|1",
                        "105|u1|housing|Operator 1|CONNECT|5|u2|0"], "u1")
    fresh = replace(record, outcome=CallOutcome.IN_PROGRESS,
                    attempts=[QueueAttempt("housing", T0)])
    reconcile(fresh, open_call, finish=True)
    assert fresh.outcome is CallOutcome.IN_PROGRESS
    assert fresh.attempts[0].outcome == "answered" and fresh.wait_seconds == 5


def test_no_queue_log_lines_change_nothing() -> None:
    record = tracked()
    assert reconcile(record, LoggedCall("1795881204.41")) == []
