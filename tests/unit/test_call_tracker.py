"""The live call model against the recorded Asterisk 22 transcripts, and the edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cti_bridge.ami_protocol import AmiMessage, AmiParser
from cti_bridge.call_tracker import EXPIRED, RESYNC_VARIABLES, AsteriskSnapshot, CallTracker
from hotline.core.records import CallOutcome, CallRecord
from tests.support.paths import AMI_FIXTURES as FIXTURES

NAME = "Тарас Шевченко"
BOOT = 1795880000
T0 = datetime(2026, 11, 28, 15, 53, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def messages(name: str) -> list[AmiMessage]:
    return AmiParser().feed((FIXTURES / f"{name}.txt").read_bytes())


def tracker(clock: Clock | None = None) -> CallTracker:
    t = CallTracker("pbx1", ["hotline"], clock=clock or Clock())
    t.set_boot_epoch(BOOT)
    return t


def replay(t: CallTracker, msgs: list[AmiMessage]) -> list[CallRecord]:
    return [record for msg in msgs for record in t.handle(msg)]


def header(msgs: list[AmiMessage], event: str, key: str) -> str:
    [value] = [m.get(key) for m in msgs if m.event == event]
    assert value is not None
    return value


def test_answered_call() -> None:
    msgs, t = messages("answered"), tracker()
    emitted = replay(t, msgs)
    # queue join, operator connected, hangup: few writes, one call
    assert [r.outcome for r in emitted] == ["in_progress", "in_progress", "answered"]
    assert {r.call_key for r in emitted} == {f"pbx1:{BOOT}:1795881204.41"}
    final = emitted[-1]
    assert final.uniqueid == "1795881204.41"  # the ;2 half: in the queue, queue_log's callid
    assert final.channel == "Local/1551@hotline-00000014;2"
    assert final.linkedid == "1795881204.40" and final.linkedids == ["1795881204.40"]
    assert final.started_at == datetime.fromtimestamp(1795881204, UTC)
    assert final.caller_number == "380501234567" and final.caller_name == NAME
    assert final.language == "en"
    # The fixture's IVR stub stores the routed queue in IVR_CHOICE; the digit (2) is only
    # in DTMFEnd. The record keeps what the IVR set.
    [choice] = [m.get("Value") for m in msgs if m.get("Variable") == "IVR_CHOICE"]
    assert final.ivr_choice == choice == "housing"
    assert header(msgs, "DTMFEnd", "Digit") == "2"
    assert final.queue == "housing"
    assert final.wait_seconds == int(header(msgs, "AgentConnect", "HoldTime")) == 0
    assert final.talk_seconds == int(header(msgs, "AgentComplete", "TalkTime")) == 3
    assert final.operator_name == "Operator 101"
    assert final.operator_interface == "Local/101@sim-agents/n"
    assert (final.hangup_cause, final.hangup_cause_text) == (16, "Normal Clearing")
    assert final.answered_at is not None and final.ended_at is not None
    [attempt] = final.attempts
    assert (attempt.queue, attempt.position, attempt.outcome) == ("housing", 1, "answered")
    assert attempt.completed_by == "agent" and attempt.ring_seconds == 0
    assert attempt.answered_at is not None and attempt.left_at is not None
    assert t.active_calls == 0  # finished calls are forgotten


def test_abandoned_call() -> None:
    msgs, t = messages("abandoned"), tracker()
    emitted = replay(t, msgs)
    assert [r.outcome for r in emitted] == ["in_progress", "abandoned"]
    final = emitted[-1]
    assert final.uniqueid == "1795881229.45"
    assert final.outcome is CallOutcome.ABANDONED
    assert final.wait_seconds == int(header(msgs, "QueueCallerAbandon", "HoldTime")) == 8
    assert final.queue == "housing" and final.talk_seconds is None
    assert final.operator_name is None and final.operator_interface is None
    assert final.caller_name == NAME and final.ivr_choice == "housing"
    [attempt] = final.attempts
    assert attempt.outcome == "abandoned" and attempt.left_at is not None
    assert t.active_calls == 0


def test_ivr_hangup() -> None:
    t = tracker()
    [final] = replay(t, messages("ivr_hangup"))
    assert final.uniqueid == "1795881246.47"
    assert final.outcome is CallOutcome.IVR_ONLY
    assert final.queue is None and final.attempts == [] and final.wait_seconds is None
    assert final.hangup_cause == 16 and final.caller_number == "380501234567"
    assert t.active_calls == 0


def test_three_calls_in_one_stream() -> None:
    t = tracker()
    emitted = replay(t, messages("answered") + messages("abandoned") + messages("ivr_hangup"))
    finals = {r.uniqueid: r.outcome for r in emitted if r.ended_at is not None}
    assert finals == {
        "1795881204.41": CallOutcome.ANSWERED,
        "1795881229.45": CallOutcome.ABANDONED,
        "1795881246.47": CallOutcome.IVR_ONLY,
    }
    assert t.active_calls == 0


def test_agent_complete_after_hangup_is_re_emitted() -> None:
    """app_queue may publish AgentComplete after the caller's Hangup."""
    msgs = messages("answered")
    complete = next(i for i, m in enumerate(msgs) if m.event == "AgentComplete")
    hangup = next(
        i
        for i, m in enumerate(msgs)
        if m.event == "Hangup" and m.get("Uniqueid") == "1795881204.41"
    )
    late = msgs[:complete] + msgs[complete + 1 : hangup + 1] + [msgs[complete]] + msgs[hangup + 1 :]
    t = tracker()
    emitted = replay(t, late)
    at_hangup, after = emitted[-2], emitted[-1]
    assert at_hangup.outcome is CallOutcome.ANSWERED and at_hangup.talk_source == "derived"
    assert after.outcome is CallOutcome.ANSWERED and after.talk_seconds == 3
    assert after.talk_source == after.attempts[0].talk_source == "agent_complete"
    assert after.attempts[0].completed_by == "agent"
    assert at_hangup.call_key == after.call_key
    assert t.active_calls == 0


def timed_replay(t: CallTracker, clock: Clock, msgs: list[AmiMessage],
                 at: dict[str, float]) -> list[CallRecord]:
    """Replay with the clock moved to ``T0 + at[event]`` s at the first such event (the
    recorded transcripts carry no Timestamp, so the tracker reads its clock)."""
    out: list[CallRecord] = []
    pending = dict(at)
    for msg in msgs:
        if msg.event in pending:
            clock.now = T0 + timedelta(seconds=pending.pop(msg.event))
        out += t.handle(msg)
    return out


def test_talk_is_derived_when_agent_complete_never_comes() -> None:
    """Under load Asterisk 22 sometimes sends no usable AgentComplete (issue 6, item 13):
    the talk time then comes from AgentConnect → the caller's BridgeLeave."""
    clock = Clock()
    t = tracker(clock)
    msgs = [m for m in messages("answered") if m.event != "AgentComplete"]
    # As recorded: connected at :30.4, the operator hung up after 3 s, the caller's
    # channel left the bridge, and its Hangup came a moment later.
    final = timed_replay(t, clock, msgs, {"AgentConnect": 0.4, "BridgeLeave": 3.5,
                                          "Hangup": 3.9})[-1]
    assert final.outcome is CallOutcome.ANSWERED
    assert final.talk_seconds == 3 == int(header(messages("answered"), "AgentComplete",
                                                 "TalkTime"))
    assert final.talk_source == final.attempts[0].talk_source == "derived"
    assert final.attempts[0].completed_by is None  # unknown without AgentComplete


def test_agent_complete_without_the_callers_fields_is_matched_by_member() -> None:
    """What Asterisk sends when the caller's snapshot is already gone: no Uniqueid,
    no Channel, no Dest* — Queue, Interface, MemberName and the figures only."""
    msgs = messages("answered")
    stripped = []
    for msg in msgs:
        if msg.event == "AgentComplete":
            keep = {"Event", "Privilege", "Queue", "Interface", "MemberName", "HoldTime",
                    "TalkTime", "Reason"}
            msg = AmiMessage(tuple((k, v) for k, v in msg.headers if k in keep))
            assert msg.get("Uniqueid") is None and msg.get("DestUniqueid") is None
        stripped.append(msg)
    t = tracker()
    final = replay(t, stripped)[-1]
    assert final.talk_seconds == 3 and final.talk_source == "agent_complete"
    assert final.attempts[0].completed_by == "agent"
    assert t.active_calls == 0  # complete: nothing left waiting


def test_member_match_needs_exactly_one_call_of_that_member() -> None:
    t = tracker()
    for uid, member in (("1700000000.1", "Local/7@ops/n"), ("1700000000.2", "Local/8@ops/n")):
        t.handle(new_channel(uid))
        t.handle(ev("QueueCallerJoin", uid=uid, Queue="housing", Position="1"))
        t.handle(ev("AgentConnect", uid=uid, Queue="housing", HoldTime="5",
                    Interface=member, MemberName=member, DestUniqueid=f"{uid}9"))
    bare = {"Event": "AgentComplete", "Queue": "housing", "HoldTime": "5", "TalkTime": "40",
            "Reason": "caller"}
    # another queue's member of the same name: no match, nothing changes
    assert t.handle(AmiMessage.of(**{**bare, "Queue": "social",
                                     "Interface": "Local/8@ops/n"})) == []
    t.handle(AmiMessage.of(**bare, Interface="Local/8@ops/n"))
    t.handle(AmiMessage.of(**{**bare, "TalkTime": "41"}, Interface="x",
                           DestUniqueid="1700000000.19"))
    [second] = t.handle(ev("Hangup", uid="1700000000.2", Cause="16"))
    [first] = t.handle(ev("Hangup", uid="1700000000.1", Cause="16"))
    assert (first.talk_seconds, first.talk_source) == (41, "agent_complete")
    assert (second.talk_seconds, second.talk_source) == (40, "agent_complete")


def test_lingering_call_forgotten_when_agent_complete_never_comes() -> None:
    clock = Clock()
    t = tracker(clock)
    msgs = [m for m in messages("answered") if m.event != "AgentComplete"]
    final = replay(t, msgs)[-1]
    assert final.outcome is CallOutcome.ANSWERED
    assert t.active_calls == 1  # waiting for a late AgentComplete
    clock.now += timedelta(seconds=61)
    assert t.expire() == []  # already emitted at Hangup: just forgotten
    assert t.active_calls == 0


def test_stale_call_expires_during_handle() -> None:
    clock = Clock()
    t = tracker(clock)
    msgs = messages("abandoned")
    cut = next(i for i, m in enumerate(msgs) if m.event == "QueueCallerJoin")
    replay(t, msgs[: cut + 1])
    assert t.active_calls == 1
    clock.now += timedelta(hours=7)
    [expired] = t.handle(AmiMessage.of(Event="DeviceStateChange", Device="x"))
    assert expired.hangup_cause_text == EXPIRED and expired.hangup_cause is None
    assert expired.outcome is CallOutcome.ABANDONED and expired.ended_at is not None
    assert t.active_calls == 0


def test_asterisk_restart_orphans_calls() -> None:
    t = tracker()
    msgs = messages("ivr_hangup")
    replay(t, msgs[:-5])
    assert t.active_calls == 1
    assert t.set_boot_epoch(BOOT) == []  # same boot: nothing happens
    [orphan] = t.set_boot_epoch(BOOT + 5000)
    assert orphan.hangup_cause_text == EXPIRED and orphan.call_key == f"pbx1:{BOOT}:1795881246.47"
    assert t.active_calls == 0


def new_channel(uid: str = "1700000000.1", **extra: str) -> AmiMessage:
    return AmiMessage.of(
        Event="Newchannel",
        Channel="PJSIP/trunk-00000001",
        CallerIDNum="<unknown>",
        CallerIDName="<unknown>",
        Context="hotline",
        Uniqueid=uid,
        Linkedid=uid,
        **extra,
    )


def ev(event: str, *pairs: tuple[str, str], uid: str = "1700000000.1", **h: str) -> AmiMessage:
    return AmiMessage.of(("Event", event), ("Uniqueid", uid), *pairs, **h)


def test_sip_call_caller_id_linkedid_and_timestamps() -> None:
    t = tracker()
    assert t.handle(new_channel(Timestamp="1700000000.250000")) == []
    t.handle(ev("NewCallerid", CallerIDNum="<unknown>", CallerIDName="Іван"))
    t.handle(ev("NewCallerid", CallerIDNum="380441234567", CallerIDName="<unknown>"))
    t.handle(ev("Newstate", ChannelStateDesc="Up", Timestamp="1700000001.000000"))
    t.handle(ev("VarSet", Variable="IVR_SOURCE", Value="fallback"))
    t.handle(ev("VarSet", Variable="IVR_CHOICE", Value="2"))
    t.handle(ev("Newexten", Linkedid="1700000000.9"))  # a transfer re-linked the call
    [final] = t.handle(ev("Hangup", ("Cause-txt", "Normal Clearing"), Cause="16"))
    assert final.started_at == datetime.fromtimestamp(1700000000.25, UTC)
    assert final.answered_at == datetime.fromtimestamp(1700000001, UTC)
    assert (final.caller_number, final.caller_name) == ("380441234567", "Іван")
    assert (final.ivr_source, final.ivr_choice) == ("fallback", "2")
    assert final.linkedid == "1700000000.9"
    assert final.linkedids == ["1700000000.1", "1700000000.9"]
    assert final.outcome is CallOutcome.IVR_ONLY


def test_untracked_and_non_inbound_channels_are_ignored() -> None:
    t = tracker()
    t.handle(
        AmiMessage.of(
            Event="Newchannel", Channel="Local/101@agents-1;2", Context="agents", Uniqueid="9.1"
        )
    )
    t.handle(
        AmiMessage.of(
            Event="Newchannel", Channel="Local/1551@hotline-1;1", Context="hotline", Uniqueid="9.2"
        )
    )
    assert t.active_calls == 0
    assert t.handle(ev("Hangup", uid="9.1", Cause="16")) == []
    assert t.handle(AmiMessage.of(Response="Success")) == []


def test_queue_timeout_and_join_empty() -> None:
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="housing", Position="3"))
    t.handle(ev("QueueCallerLeave", Queue="housing", Position="1"))
    t.handle(ev("VarSet", Variable="QUEUESTATUS", Value="TIMEOUT"))
    [final] = t.handle(ev("Hangup", Cause="16"))
    assert final.outcome is CallOutcome.TIMEOUT and final.attempts[0].outcome == "timeout"
    assert final.attempts[0].position == 3

    t.handle(new_channel("1700000000.2"))
    t.handle(ev("VarSet", uid="1700000000.2", Variable="HOTLINE_QUEUE", Value="water"))
    t.handle(ev("VarSet", uid="1700000000.2", Variable="QUEUESTATUS", Value="JOINEMPTY"))
    [final] = t.handle(ev("Hangup", uid="1700000000.2", Cause="16"))
    assert final.outcome is CallOutcome.NO_AGENTS and final.queue == "water"


def test_second_queue_after_timeout_then_answered() -> None:
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="housing", Position="1"))
    t.handle(ev("QueueCallerLeave", Queue="housing"))
    t.handle(ev("VarSet", Variable="QUEUESTATUS", Value="TIMEOUT"))
    t.handle(ev("QueueCallerJoin", Queue="overflow", Position="1"))
    t.handle(ev("AgentConnect", Queue="overflow", HoldTime="12", RingTime="3", MemberName="Op 7"))
    t.handle(ev("AgentComplete", Queue="overflow", TalkTime="60", Reason="caller"))
    [final] = t.handle(ev("Hangup", Cause="16"))
    assert final.outcome is CallOutcome.ANSWERED
    assert [a.outcome for a in final.attempts] == ["timeout", "answered"]
    assert (final.queue, final.wait_seconds, final.talk_seconds) == ("overflow", 12, 60)
    assert final.operator_name == "Op 7" and final.attempts[1].ring_seconds == 3


def test_emitted_records_are_snapshots() -> None:
    t = tracker()
    t.handle(new_channel())
    [joined] = t.handle(ev("QueueCallerJoin", Queue="housing", Position="1"))
    t.handle(ev("QueueCallerAbandon", Queue="housing", HoldTime="4"))
    t.handle(ev("Hangup", Cause="16"))
    assert joined.outcome is CallOutcome.IN_PROGRESS
    assert joined.attempts[0].outcome is None and joined.ended_at is None


def test_ivr_only_call_has_no_queue_even_with_a_preset_queue() -> None:
    # The dialplan presets HOTLINE_QUEUE=main before the IVR; a caller who hangs
    # up in the IVR never waited in it, and Asterisk's queue_log agrees.
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("VarSet", Variable="HOTLINE_QUEUE", Value="main"))
    [final] = t.handle(ev("Hangup", Cause="16"))
    assert final.outcome is CallOutcome.IVR_ONLY
    assert final.queue is None and final.attempts == []


def test_reconcile_after_reconnect_finishes_calls_that_are_gone() -> None:
    t = tracker()
    t.handle(new_channel("1700000000.1"))
    t.handle(ev("QueueCallerJoin", uid="1700000000.1", Queue="housing", Position="1"))
    t.handle(new_channel("1700000000.5"))
    # the AMI link was down; afterwards only .5 is still up
    [gone] = t.reconcile({"1700000000.5", "1700000000.6"})
    assert gone.uniqueid == "1700000000.1"
    assert gone.outcome is CallOutcome.ABANDONED and gone.queue == "housing"
    assert gone.ended_at is not None
    assert gone.hangup_cause_text == "ended while the AMI link was down"
    assert t.active_calls == 1
    assert t.reconcile({"1700000000.5"}) == []  # nothing more to do


def test_agent_complete_alone_proves_the_call_was_answered() -> None:
    t = tracker()
    msgs = [m for m in messages("answered") if m.event != "AgentConnect"]
    final = replay(t, msgs)[-1]
    assert final.outcome is CallOutcome.ANSWERED
    assert (final.talk_seconds, final.operator_name) == (3, "Operator 101")


# -- resync after an AMI reconnect (issue 8) ------------------------------------------


def channel_up(uid: str = "1700000000.1", **extra: str) -> AmiMessage:
    """A CoreShowChannel item as Asterisk 22 lists it."""
    headers = {"Event": "CoreShowChannel", "Channel": "PJSIP/trunk-00000001",
               "Context": "hotline", "Exten": "1551", "CallerIDNum": "380441234567",
               "CallerIDName": NAME, "Language": "uk", "Uniqueid": uid, "Linkedid": uid,
               "Application": "Queue", "BridgeId": ""}
    return AmiMessage.of(**{**headers, **extra})


def status(uid: str = "1700000000.1", bridge: str = "", **variables: str) -> AmiMessage:
    """A Status item with the resync's variables (``(null)`` when unset, as Asterisk prints)."""
    lines = [("Variable", f"{n}={variables.get(n, '(null)')}") for n in RESYNC_VARIABLES]
    return AmiMessage.of(("Event", "Status"), ("Channel", "PJSIP/trunk-00000001"),
                         ("Uniqueid", uid), ("BridgeID", bridge), ("Application", "Queue"),
                         *lines)


def queue_entry(uid: str = "1700000000.1", queue: str = "housing", wait: int = 7) -> AmiMessage:
    return AmiMessage.of(Event="QueueEntry", Queue=queue, Position="2",
                         Channel="PJSIP/trunk-00000001", Uniqueid=uid, Wait=str(wait))


def snapshot(*channels: AmiMessage, entries: tuple[AmiMessage, ...] = (),
             statuses: tuple[AmiMessage, ...] = ()) -> AsteriskSnapshot:
    return AsteriskSnapshot(list(channels), list(entries), list(statuses), at=T0)


def test_resync_connected_during_the_gap_gets_its_operator_and_wait() -> None:
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="housing", Position="1", Timestamp="1700000010"))
    # link down: AgentConnect (hold 12 s) missed; now the caller talks to Op 7
    [live] = t.resync(snapshot(channel_up(), statuses=(status(
        bridge="b-1", MEMBERINTERFACE="PJSIP/op7", MEMBERNAME="Оператор 7",
        QEHOLDTIME="12", QUEUENAME="housing", IVR_CHOICE="1"),)))
    assert live.outcome is CallOutcome.IN_PROGRESS
    assert (live.queue, live.operator_interface, live.ivr_choice) == ("housing", None, "1")
    assert live.attempts[0].outcome == "answered"
    assert live.attempts[0].operator_name == "Оператор 7"
    assert live.attempts[0].wait_seconds == 12
    assert t.resync(snapshot(channel_up(), statuses=(status(
        bridge="b-1", MEMBERINTERFACE="PJSIP/op7", QEHOLDTIME="12",
        QUEUENAME="housing"),))) == []  # a second resync changes nothing
    # Hangup before AgentComplete: the call waits for it (connected), not "abandoned"
    [early] = t.handle(ev("Hangup", Cause="16", Timestamp="1700000052"))
    assert early.outcome is CallOutcome.ANSWERED and early.operator_interface == "PJSIP/op7"
    [final] = t.handle(ev("AgentComplete", Queue="housing", Interface="PJSIP/op7",
                          HoldTime="12", TalkTime="30", Reason="agent"))
    assert (final.outcome, final.wait_seconds, final.talk_seconds) == (
        CallOutcome.ANSWERED, 12, 30)
    assert final.operator_name == "Оператор 7" and final.talk_source == "agent_complete"


def test_without_resync_a_missed_connect_loses_the_operator() -> None:
    """What the resync is for: the same stream without it."""
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="housing", Position="1"))
    [final] = t.handle(ev("Hangup", Cause="16"))
    assert final.outcome is CallOutcome.ABANDONED and final.operator_interface is None


def test_resync_waiting_caller_and_adopted_call() -> None:
    t = tracker()
    t.handle(new_channel())  # known, in the IVR when the link dropped
    records = t.resync(snapshot(
        channel_up(), channel_up("1700000000.7", Channel="PJSIP/trunk-00000007"),
        channel_up("1700000000.8", Channel="Local/1551@hotline-00000001;1"),  # not a call
        channel_up("1700000000.9", Context="hotline-operators"),  # an operator's leg
        entries=(queue_entry(wait=7), queue_entry("1700000000.7", "transport", 3)),
        statuses=(status(IVR_CHOICE="1", IVR_SOURCE="fastagi"),
                  status("1700000000.7", IVR_CHOICE="2")),
    ))
    by_uid = {r.uniqueid: r for r in records}
    assert set(by_uid) == {"1700000000.1", "1700000000.7"}
    waiting = by_uid["1700000000.1"]
    assert (waiting.queue, waiting.ivr_choice, waiting.ivr_source) == ("housing", "1", "fastagi")
    assert waiting.attempts[0].entered_at == T0 - timedelta(seconds=7)
    assert waiting.attempts[0].position == 2
    adopted = by_uid["1700000000.7"]
    assert adopted.call_key == f"pbx1:{BOOT}:1700000000.7"
    assert (adopted.caller_number, adopted.caller_name) == ("380441234567", NAME)
    assert adopted.queue == "transport" and adopted.ivr_choice == "2"
    assert t.active_calls == 2
    # the queue's events after the reconnect complete the picture as usual
    t.handle(ev("QueueCallerAbandon", uid="1700000000.7", Queue="transport", HoldTime="9"))
    [final] = t.handle(ev("Hangup", uid="1700000000.7", Cause="16"))
    assert final.outcome is CallOutcome.ABANDONED and final.wait_seconds == 9


def test_resync_overflow_during_the_gap_closes_the_first_stay_as_timeout() -> None:
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="social", Position="1"))
    [record] = t.resync(snapshot(channel_up(), entries=(queue_entry(queue="main", wait=2),),
                                 statuses=(status(QUEUESTATUS="TIMEOUT"),)))
    assert [(a.queue, a.outcome) for a in record.attempts] == [("social", "timeout"),
                                                              ("main", None)]
    assert record.queue == "main"


def test_resync_finishes_calls_gone_and_keeps_a_known_operator() -> None:
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="housing", Position="1"))
    t.handle(ev("AgentConnect", Queue="housing", HoldTime="5", RingTime="1",
                Interface="PJSIP/op7", MemberName="Оператор 7"))
    [gone] = t.resync(snapshot())  # the call ended while the link was down
    assert gone.outcome is CallOutcome.ANSWERED and gone.operator_interface == "PJSIP/op7"
    assert gone.hangup_cause_text == "ended while the AMI link was down"
    assert gone.talk_seconds is None  # unknown here: queue_log reconciliation fills it
    assert t.active_calls == 0


def test_queue_timeout_is_a_timeout_from_the_start() -> None:
    """app_queue raises QueueCallerAbandon for a timeout (record_abandoned), then
    Queue() sets QUEUESTATUS=TIMEOUT: the record says timeout, as queue_log does."""
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("QueueCallerJoin", Queue="main", Position="1"))
    t.handle(ev("QueueCallerAbandon", Queue="main", Position="1", OriginalPosition="1",
                HoldTime="60"))
    t.handle(ev("QueueCallerLeave", Queue="main", Position="1"))
    t.handle(ev("VarSet", Variable="QUEUESTATUS", Value="TIMEOUT"))
    [final] = t.handle(ev("Hangup", Cause="16"))
    assert final.outcome is CallOutcome.TIMEOUT and final.wait_seconds == 60
    # a caller who hangs up is still abandoned (Queue() leaves no TIMEOUT behind)
    t.handle(new_channel("1700000000.2"))
    t.handle(ev("QueueCallerJoin", uid="1700000000.2", Queue="main", Position="1"))
    t.handle(ev("QueueCallerAbandon", uid="1700000000.2", Queue="main", HoldTime="4"))
    [final] = t.handle(ev("Hangup", uid="1700000000.2", Cause="16"))
    assert final.outcome is CallOutcome.ABANDONED


def test_resync_never_takes_on_a_finished_call_again() -> None:
    """A channel can still be listed just after its Hangup: its final record stays final."""
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("Hangup", Cause="16"))
    assert t.resync(snapshot(channel_up())) == []
    assert t.active_calls == 0


def test_a_join_queued_before_the_resync_does_not_double_the_stay() -> None:
    """Events of the new session wait while the resync reads Asterisk: a join that
    happened just before the snapshot arrives after it, and is the same stay."""
    t = tracker()
    t.handle(new_channel())
    t.resync(snapshot(channel_up(), entries=(queue_entry(wait=0),)))
    [joined] = t.handle(ev("QueueCallerJoin", Queue="housing", Position="2",
                           Timestamp="1795880100"))
    assert [(a.queue, a.position) for a in joined.attempts] == [("housing", 2)]
    assert joined.attempts[0].entered_at == datetime.fromtimestamp(1795880100, UTC)


def test_callback_booked_in_the_ivr_is_its_queues_own_outcome() -> None:
    t = tracker()
    t.handle(new_channel())
    t.handle(ev("VarSet", Variable="HOTLINE_QUEUE", Value="main"))
    t.handle(ev("VarSet", Variable="IVR_EXIT", Value="callback"))
    t.handle(ev("VarSet", Variable="HOTLINE_QUEUE", Value="housing"))
    [final] = t.handle(ev("Hangup", Cause="16"))
    assert final.outcome is CallOutcome.CALLBACK and str(final.outcome) == "callback"
    assert final.queue == "housing" and final.attempts == []
    # closed without a callback: the caller simply never queued
    t.handle(new_channel("1700000000.3"))
    t.handle(ev("VarSet", uid="1700000000.3", Variable="IVR_EXIT", Value="closed"))
    [closed] = t.handle(ev("Hangup", uid="1700000000.3", Cause="16"))
    assert closed.outcome is CallOutcome.IVR_ONLY
