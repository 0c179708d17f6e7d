"""The service's Prometheus metrics, in one registry of their own.

Not the library's global default registry: ``/metrics`` shows exactly these,
and tests read them with ``REGISTRY.get_sample_value``. The places that count
call the metric objects (or the helpers below) with one-line hooks; values that
are state rather than events (is the AMI link up?) are read when scraped.
Label values come from configuration (queues, routes, sinks) or from fixed
sets (outcomes, failure reasons), never from callers, so series stay few.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from hotline.core.records import CallOutcome, CallRecord

REGISTRY = CollectorRegistry(auto_describe=True)

CALLS = Counter(
    "hotline_calls", "Finished citizen calls, by outcome and by the last queue they waited in",
    ["outcome", "queue"], registry=REGISTRY,
)
CALLERS_WAITING = Gauge(
    "hotline_queue_callers_waiting", "Callers waiting in each queue (Asterisk's QueueSummary)",
    ["queue"], registry=REGISTRY,
)
AMI_LINK_UP = Gauge(
    "hotline_ami_link_up", "1 while the AMI link to Asterisk is logged in", registry=REGISTRY,
)
AMI_RECONNECTS = Counter(
    "hotline_ami_reconnects", "AMI logins after the first one (the link came back)",
    registry=REGISTRY,
)
AMI_EVENTS_DROPPED = Counter(
    "hotline_ami_events_dropped",
    "AMI events dropped because the handlers fell behind: chatty ones shed over the "
    "backlog's cap (essential=no), a call's own past twice the cap (essential=yes)",
    ["essential"], registry=REGISTRY,
)
AMI_MESSAGES_DROPPED = Counter(
    "hotline_ami_messages_dropped",
    "AMI messages refused whole by the parser's limits (lines or bytes per message)",
    registry=REGISTRY,
)
AGI_SESSIONS = Counter(
    "hotline_agi_sessions", "FastAGI sessions started, by route", ["route"], registry=REGISTRY,
)
AGI_SESSIONS_ACTIVE = Gauge(
    "hotline_agi_sessions_active", "FastAGI sessions running a route now", registry=REGISTRY,
)
AGI_SESSIONS_FAILED = Counter(
    "hotline_agi_sessions_failed",
    "FastAGI sessions that did not serve the caller (the dialplan falls back), by reason",
    ["reason"], registry=REGISTRY,
)
SINK_BACKLOG = Gauge(
    "hotline_sink_backlog", "Records waiting to be written to the case store, by sink",
    ["sink"], registry=REGISTRY,
)
SINK_RETRIES = Counter(
    "hotline_sink_retries", "Failed writes to the case store that will be retried, by sink",
    ["sink"], registry=REGISTRY,
)
SINK_DROPPED = Counter(
    "hotline_sink_dropped", "Records given up (rejected by the database or buffer full), by sink",
    ["sink"], registry=REGISTRY,
)
WEBSOCKET_CLIENTS = Gauge(
    "hotline_websocket_clients", "Browsers connected to the live feed", registry=REGISTRY,
)

#: Why a FastAGI session failed: its route raised, no route has the URL's name,
#: the environment block never completed.
AGI_FAILURE_REASONS = ("route_error", "no_route", "environment")
for _reason in AGI_FAILURE_REASONS:  # a zero is a fact too: alerts need the series
    AGI_SESSIONS_FAILED.labels(reason=_reason)

for _essential in ("yes", "no"):
    AMI_EVENTS_DROPPED.labels(essential=_essential)

#: A finished call can be emitted twice (AgentComplete after Hangup brings the
#: talk time); the keys counted lately keep it from being counted twice.
_RECENT_CALLS = 10_000
_counted: OrderedDict[str, None] = OrderedDict()


def call_finished(record: CallRecord) -> None:
    """Count a call whose outcome is final, once per call key."""
    if record.outcome == CallOutcome.IN_PROGRESS or record.call_key in _counted:
        return
    _counted[record.call_key] = None
    if len(_counted) > _RECENT_CALLS:
        _counted.popitem(last=False)
    CALLS.labels(outcome=str(record.outcome), queue=record.queue or "none").inc()


def queue_summary(summary: Mapping[str, Any]) -> None:
    """Callers waiting from the CTI service's queue summary; queues gone from it vanish."""
    queues: Iterable[Mapping[str, Any]] = summary.get("queues") or ()
    CALLERS_WAITING.clear()
    for queue in queues:
        CALLERS_WAITING.labels(queue=str(queue.get("queue"))).set(int(queue.get("callers") or 0))


def watch_ami_link(connected: Callable[[], bool]) -> None:
    """Read the link's state when scraped (``lambda: False`` when the part stops)."""
    AMI_LINK_UP.set_function(lambda: float(connected()))


def ami_logged_in(generation: int) -> None:
    """After every AMI login; the first one is not a reconnect."""
    if generation > 1:
        AMI_RECONNECTS.inc()
