"""Records that cross package boundaries.

``cti_bridge`` builds a :class:`CallRecord` from AMI events, ``ivr`` produces
:class:`IvrStep` facts, ``crm_sync`` stores both (through :mod:`hotline.core.ports`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class CallOutcome(enum.StrEnum):
    ANSWERED = "answered"  # an operator connected
    ABANDONED = "abandoned"  # the caller hung up while waiting in a queue
    IVR_ONLY = "ivr_only"  # the caller never reached a queue
    TIMEOUT = "timeout"  # the queue gave up (EXITWITHTIMEOUT)
    NO_AGENTS = "no_agents"  # the queue had no one to ring (EXITEMPTY / join empty)
    IN_PROGRESS = "in_progress"
    CALLBACK = "callback"  # the caller left the IVR with a callback booked instead of waiting


#: Where a talk time came from: app_queue's AgentComplete (TalkTime), derived
#: from AgentConnect to the end of the bridge when AgentComplete never came
#: (Asterisk drops it under load), or corrected to Asterisk's queue_log.
TALK_SOURCES = ("agent_complete", "derived", "queue_log")


@dataclass
class QueueAttempt:
    """One stay of a call in one queue (a call may be transferred between queues)."""

    queue: str
    entered_at: datetime
    position: int | None = None
    answered_at: datetime | None = None
    left_at: datetime | None = None
    wait_seconds: int | None = None  # Asterisk's HoldTime, same as queue_log
    talk_seconds: int | None = None  # Asterisk's TalkTime
    ring_seconds: int | None = None
    outcome: str | None = None  # answered / abandoned / timeout / exitempty / exitwithkey
    operator_interface: str | None = None  # e.g. Local/101@hotline-operators/n
    operator_name: str | None = None  # MemberName
    completed_by: str | None = None  # caller / agent / transfer
    talk_source: str | None = None  # see TALK_SOURCES


@dataclass
class CallRecord:
    """One citizen call as the case store keeps it.

    ``call_key`` is unique across Asterisk restarts and several Asterisk
    servers: ``<server id>:<asterisk start epoch>:<caller channel uniqueid>``.
    """

    call_key: str
    asterisk_server: str
    uniqueid: str
    linkedid: str
    channel: str
    started_at: datetime
    caller_number: str = ""
    caller_name: str = ""
    language: str = ""
    answered_at: datetime | None = None  # by Asterisk (Answer in the dialplan)
    ended_at: datetime | None = None
    ivr_choice: str | None = None
    ivr_source: str | None = None  # fastagi / fallback / none
    queue: str | None = None  # the last queue the call waited in
    wait_seconds: int | None = None
    talk_seconds: int | None = None
    talk_source: str | None = None  # see TALK_SOURCES
    operator_interface: str | None = None
    operator_name: str | None = None
    outcome: CallOutcome = CallOutcome.IN_PROGRESS
    hangup_cause: int | None = None
    hangup_cause_text: str | None = None
    attempts: list[QueueAttempt] = field(default_factory=list)
    linkedids: list[str] = field(default_factory=list)  # every linkedid seen (it can change)


@dataclass(frozen=True)
class IvrStep:
    """One fact from the IVR: a prompt played, a digit pressed, a route chosen."""

    asterisk_server: str
    uniqueid: str
    at: datetime
    # greeting / menu / choice / invalid / timeout / route / error / hangup, and
    # <flow>.<event> for the other flows (language., status., survey.): see ivr/flows/
    step: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OperatorStateChange:
    """An operator's state in one queue changed (from app_queue's member events)."""

    interface: str  # the queue member, e.g. PJSIP/operator7 or Local/101@…/n
    queue: str
    at: datetime
    state: str  # logged_in / logged_out / paused / available / ringing / in_call / unavailable
    reason: str | None = None  # the pause reason an operator gave
    member_name: str | None = None


@dataclass(frozen=True)
class Notice:
    """An announcement a caller hears before the menu (an outage in their district)."""

    id: int
    kind: str
    sound: str  # the sound name Asterisk plays, e.g. hotline/notices/7
    text: str


@dataclass(frozen=True)
class CallbackRequest:
    """A caller asked to be called back instead of waiting; ``arrived_at`` (the
    call's start) is their place in line."""

    asterisk_server: str
    uniqueid: str
    queue: str
    caller_number: str
    reason: str  # wait / closed
    arrived_at: datetime
    max_attempts: int


@dataclass(frozen=True)
class CallbackJob:
    """One attempt of a callback, claimed by one dialer."""

    request_id: int
    queue: str
    caller_number: str
    arrived_at: datetime
    attempt: int  # 1, 2, …: the Originate's ActionID and ChannelId derive from it
    max_attempts: int

    @property
    def key(self) -> str:
        return f"cb-{self.request_id}-{self.attempt}"
