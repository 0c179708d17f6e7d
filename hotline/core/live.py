"""The live feed: channel and key names, and what a browser may see of a call.

The CTI side publishes, the web side forwards to browsers. Only these
projections cross to a browser: a citizen's number is always masked, and
nothing personal goes onto a broadcast channel.
"""

from __future__ import annotations

from typing import Any

from hotline.core.privacy import mask_name, mask_phone

#: Broadcast channel of the contact centre's live events (calls, queues).
LIVE_CHANNEL = "hotline:live"
#: The latest queue summary (callers waiting, operators available), JSON, short TTL.
QUEUES_KEY = "hotline:queues"

#: Fields of a call that a watcher's browser gets; nothing else leaves the server.
CALL_FIELDS = (
    "call_key", "started_at", "caller_number", "caller_name", "ivr_choice", "queue",
    "wait_seconds", "talk_seconds", "operator_name", "outcome",
)


def call_view(call: Any) -> dict[str, Any]:
    """A call (a :class:`~hotline.core.records.CallRecord` or a row as a mapping)
    as a browser sees it, its number masked (and its name, when the name is a number)."""
    if isinstance(call, dict):
        view = {name: call.get(name) for name in CALL_FIELDS}
    else:
        view = {name: getattr(call, name, None) for name in CALL_FIELDS}
    view["caller_number"] = mask_phone(view["caller_number"] or "")
    if view["caller_name"] is not None:
        view["caller_name"] = mask_name(view["caller_name"])
    if view["outcome"] is not None:
        view["outcome"] = str(view["outcome"])
    return view


def call_event(call: Any) -> dict[str, Any]:
    """The live-feed message for a call that changed."""
    return {"type": "call", **call_view(call)}


def queues_event() -> dict[str, Any]:
    """The live-feed message that tells browsers the queue summary changed."""
    return {"type": "queues"}
