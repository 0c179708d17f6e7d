"""Operators' state changes from app_queue's member events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from cti_bridge.ami_protocol import AmiMessage, AmiParser
from cti_bridge.operator_states import OperatorStateTracker
from tests.support.paths import AMI_FIXTURES as FIXTURES

IFACE = "Local/7@hotline-sim-operator/n"


def member(event: str, **headers: str) -> AmiMessage:
    base = {"Queue": "housing", "Interface": IFACE, "MemberName": "Operator 7",
            "Paused": "0", "Status": "1"}
    base.update(headers)
    return AmiMessage.of(("Event", event), *base.items())


def states(tracker: OperatorStateTracker, *messages: AmiMessage) -> list[str]:
    changes = [tracker.handle(m) for m in messages]
    return [c.state for c in changes if c is not None]


def test_a_working_shift() -> None:
    t = OperatorStateTracker(clock=lambda: datetime(2026, 11, 28, 9, tzinfo=UTC))
    assert states(
        t,
        member("QueueMemberAdded"),
        member("QueueMemberStatus", Status="6"),  # ringing
        member("QueueMemberStatus", Status="2"),  # talking
        member("QueueMemberStatus", Status="2"),  # repeated: not a change
        member("QueueMemberStatus", Status="1"),
        member("QueueMemberPause", Paused="1", PausedReason="обід"),
        member("QueueMemberStatus", Paused="1", Status="1"),  # still paused
        member("QueueMemberPause", Paused="0"),
        member("QueueMemberRemoved"),
    ) == ["logged_in", "ringing", "in_call", "available", "paused", "available", "logged_out"]


def test_pause_reason_and_fields() -> None:
    t = OperatorStateTracker(clock=lambda: datetime(2026, 11, 28, 9, tzinfo=UTC))
    t.handle(member("QueueMemberAdded"))
    change = t.handle(member("QueueMemberPause", Paused="1", PausedReason="обід"))
    assert change is not None
    assert (change.state, change.reason, change.queue, change.interface) == (
        "paused", "обід", "housing", IFACE)
    assert change.member_name == "Operator 7"


def test_a_new_pause_reason_is_a_change() -> None:
    """Wrap-up, then lunch without being ready between: pause time is read by reason."""
    t = OperatorStateTracker()
    changes = [t.handle(m) for m in (
        member("QueueMemberAdded"),
        member("QueueMemberPause", Paused="1", PausedReason="after_call_work"),
        member("QueueMemberStatus", Paused="1", PausedReason="after_call_work"),
        member("QueueMemberPause", Paused="1", PausedReason="lunch"),
        member("QueueMemberStatus", Paused="1"),  # no reason given: the same pause
    )]
    assert [(c.state, c.reason) for c in changes if c is not None] == [
        ("logged_in", None), ("paused", "after_call_work"), ("paused", "lunch")]


def test_queues_are_tracked_apart() -> None:
    t = OperatorStateTracker()
    assert states(t, member("QueueMemberAdded"), member("QueueMemberAdded", Queue="social"),
                  member("QueueMemberStatus", Status="2"),
                  member("QueueMemberStatus", Queue="social", Status="2")) == [
        "logged_in", "logged_in", "in_call", "in_call"]


def test_recorded_call_gives_in_call_then_available() -> None:
    parser = AmiParser()
    messages = parser.feed((FIXTURES / "answered.txt").read_bytes())
    t = OperatorStateTracker()
    got = [c for c in (t.handle(m) for m in messages) if c is not None]
    assert [c.state for c in got] == ["in_call", "available"]
    assert {c.queue for c in got} == {"housing"}


def test_other_events_are_ignored() -> None:
    t = OperatorStateTracker()
    assert t.handle(AmiMessage.of(("Event", "Newchannel"), ("Uniqueid", "1.1"))) is None
    assert t.handle(member("QueueMemberStatus", Interface="")) is None
