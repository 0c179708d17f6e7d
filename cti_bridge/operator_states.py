"""Operators' states per queue, from app_queue's member events. Pure: no I/O.

QueueMemberStatus repeats itself (it is raised for every device state change
and every call taken), so only real changes of state are returned.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hotline.core.records import OperatorStateChange

from .ami_protocol import AmiMessage

# app_queue's member Status (ast_device_state): what it means for a supervisor.
_DEVICE_STATE = {
    "0": "unavailable",  # UNKNOWN
    "1": "available",  # NOT_INUSE
    "2": "in_call",  # INUSE
    "3": "in_call",  # BUSY
    "4": "unavailable",  # INVALID
    "5": "unavailable",  # UNAVAILABLE
    "6": "ringing",  # RINGING
    "7": "in_call",  # RINGINUSE
    "8": "in_call",  # ONHOLD
}
EVENTS = ("QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause", "QueueMemberStatus")


class OperatorStateTracker:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[str, str | None]] = {}

    def handle(self, msg: AmiMessage) -> OperatorStateChange | None:
        event = msg.event
        interface, queue = msg.get("Interface") or "", msg.get("Queue") or ""
        if event not in EVENTS or not interface or not queue:
            return None
        reason = None
        if event == "QueueMemberRemoved":
            state = "logged_out"
        elif msg.get("Paused") == "1":
            state, reason = "paused", (msg.get("PausedReason") or None)
        elif event == "QueueMemberAdded":
            state = "logged_in"
        else:
            state = _DEVICE_STATE.get(msg.get("Status") or "", "available")
        key = (interface, queue)
        last = self._last.get(key)
        if state == "paused" and "PausedReason" not in msg and last and last[0] == state:
            reason = last[1]  # an event that does not say why: still the same pause
        # A pause that changes its reason (wrap-up, then lunch) is a change: pause time
        # is reported by reason.
        seen = (state, reason)
        if last == seen and event != "QueueMemberAdded":
            return None
        if state == "logged_out":
            self._last.pop(key, None)
        else:
            self._last[key] = seen
        return OperatorStateChange(
            interface=interface,
            queue=queue,
            at=self._clock(),
            state=state,
            reason=reason,
            member_name=msg.get("MemberName"),
        )
