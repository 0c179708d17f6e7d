"""The AMI client's event backlog: bounded in count and bytes, chatty events shed
first, a call's closing events kept (and never dropped without an error log)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from cti_bridge.ami_client import ESSENTIAL_EVENTS, EventBacklog, essential_event
from cti_bridge.ami_protocol import AmiMessage
from cti_bridge.call_tracker import CallTracker
from cti_bridge.operator_states import EVENTS as OPERATOR_EVENTS
from hotline.core.logs import get_logger


def event(name: str, size: int = 100, **headers: str) -> AmiMessage:
    return AmiMessage((("Event", name), *headers.items()), (), size)


def backlog(max_events: int = 10_000, max_bytes: int = 1 << 20) -> EventBacklog:
    return EventBacklog(get_logger("test"), max_events=max_events, max_bytes=max_bytes)


def test_every_event_the_trackers_read_is_essential() -> None:
    names = {*CallTracker._HANDLERS, "Newchannel", *OPERATOR_EVENTS} - {"VarSet"}
    assert all(essential_event(event(n)) for n in names), names
    for variable in ("IVR_CHOICE", "IVR_SOURCE", "HOTLINE_QUEUE", "QUEUESTATUS", "queuestatus"):
        assert essential_event(event("VarSet", Variable=variable))
    for chatty in ("Newexten", "DTMFBegin", "DTMFEnd", "RTCPSent", "AGIExecStart", "DialState"):
        assert not essential_event(event(chatty))
    assert not essential_event(event("VarSet", Variable="RTPAUDIOQOS"))
    assert "Hangup" in ESSENTIAL_EVENTS


async def test_under_the_cap_nothing_is_dropped() -> None:
    b = backlog(max_events=10)
    assert all(b.put(event("Newexten")) for _ in range(10))
    assert len(b) == 10 and not b.dropped


async def test_over_the_cap_chatty_events_go_closing_ones_stay() -> None:
    b = backlog(max_events=4)
    with capture_logs() as logs:
        for _ in range(4):
            b.put(event("Newexten"))
        assert not b.put(event("Newexten"))
        assert not b.put(event("VarSet", Variable="RTPAUDIOQOS"))
        assert b.put(event("VarSet", Variable="QUEUESTATUS"))
        assert b.put(event("QueueCallerLeave", Uniqueid="1.1"))
        assert b.put(event("Hangup", Uniqueid="1.1"))
        assert not b.put(event("DTMFEnd"))
    assert len(b) == 7
    assert b.dropped == {"Newexten": 1, "VarSet": 1, "DTMFEnd": 1}
    assert [e["event"] for e in logs] == ["ami_backlog_shedding"]  # once, not per event
    assert logs[0]["log_level"] == "warning" and logs[0]["max_events"] == 4


async def test_beyond_twice_the_cap_even_closing_events_drop_loudly() -> None:
    b = backlog(max_events=2)
    with capture_logs() as logs:
        for n in range(4):
            assert b.put(event("Hangup", Uniqueid=f"1.{n}"))
        assert not b.put(event("Hangup", Uniqueid="1.4", Linkedid="1.0"))
    assert b.dropped == {"Hangup": 1}
    [error] = [e for e in logs if e["event"] == "ami_essential_event_dropped"]
    assert error["log_level"] == "error"
    assert (error["ami_event"], error["uniqueid"], error["linkedid"]) == ("Hangup", "1.4", "1.0")


async def test_bytes_are_capped_too() -> None:
    b = backlog(max_events=1000, max_bytes=10_000)
    assert b.put(event("Newexten", size=6_000))
    assert not b.put(event("Newexten", size=6_000))  # would pass the byte cap
    assert b.put(event("Hangup", size=6_000))  # essential: up to twice the bytes
    assert not b.put(event("Hangup", size=9_000))
    assert b.bytes == 12_000
    await b.get()
    assert b.bytes == 6_000


async def test_recovery_is_logged_with_what_was_shed() -> None:
    b = backlog(max_events=4)
    with capture_logs() as logs:
        for _ in range(6):
            b.put(event("Newexten"))
        b.put(event("Hangup"))
        while len(b):
            await b.get()
        b.put(event("Newexten"))  # under the cap again: no new episode
    names = [e["event"] for e in logs]
    assert names == ["ami_backlog_shedding", "ami_backlog_recovered"]
    assert logs[1]["dropped"] == 2 and logs[1]["dropped_by_event"] == {"Newexten": 2}


def test_limits_must_leave_room() -> None:
    with pytest.raises(ValueError):
        backlog(max_events=0)


async def test_made_up_event_names_do_not_grow_the_counts() -> None:
    b = backlog(max_events=1)
    b.put(event("Newexten"))
    for n in range(1000):
        b.put(event(f"Bogus{n}"))
    assert len(b.dropped) <= 257 and sum(b.dropped.values()) == 1000
    assert b.dropped["(other)"] == 1000 - 256
