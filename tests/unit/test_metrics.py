"""The metrics helpers: what the hooks count (values read from the service's registry)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hotline.core import metrics
from hotline.core.records import CallOutcome, CallRecord


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def record(outcome: CallOutcome, queue: str | None) -> CallRecord:
    uid = f"1700000000.{uuid.uuid4().hex[:8]}"
    return CallRecord(call_key=f"metrics-test:1:{uid}", asterisk_server="metrics-test",
                      uniqueid=uid, linkedid=uid, channel="PJSIP/trunk-1",
                      started_at=datetime.now(UTC), outcome=outcome, queue=queue)


def test_a_finished_call_is_counted_once_by_outcome_and_queue() -> None:
    before = value("hotline_calls_total", outcome="answered", queue="housing")
    call = record(CallOutcome.ANSWERED, "housing")
    metrics.call_finished(call)
    metrics.call_finished(call)  # re-emitted when AgentComplete brings the talk time
    assert value("hotline_calls_total", outcome="answered", queue="housing") == before + 1


def test_calls_in_progress_are_not_counted_and_no_queue_is_none() -> None:
    before_none = value("hotline_calls_total", outcome="ivr_only", queue="none")
    call = record(CallOutcome.IN_PROGRESS, None)
    metrics.call_finished(call)
    assert value("hotline_calls_total", outcome="in_progress", queue="none") == 0
    call.outcome = CallOutcome.IVR_ONLY  # the same call, finished later, is counted
    metrics.call_finished(call)
    assert value("hotline_calls_total", outcome="ivr_only", queue="none") == before_none + 1


def test_queue_summary_sets_callers_waiting_and_forgets_gone_queues() -> None:
    metrics.queue_summary({"queues": [{"queue": "housing", "callers": 2},
                                      {"queue": "social", "callers": 0}]})
    assert value("hotline_queue_callers_waiting", queue="housing") == 2
    assert metrics.REGISTRY.get_sample_value(
        "hotline_queue_callers_waiting", {"queue": "social"}) == 0
    metrics.queue_summary({"queues": [{"queue": "housing", "callers": 1}]})
    assert value("hotline_queue_callers_waiting", queue="housing") == 1
    assert metrics.REGISTRY.get_sample_value(
        "hotline_queue_callers_waiting", {"queue": "social"}) is None


def test_only_logins_after_the_first_are_reconnects() -> None:
    before = value("hotline_ami_reconnects_total")
    metrics.ami_logged_in(1)
    assert value("hotline_ami_reconnects_total") == before
    metrics.ami_logged_in(2)
    assert value("hotline_ami_reconnects_total") == before + 1


def test_ami_link_up_is_read_when_scraped() -> None:
    up = [True]
    metrics.watch_ami_link(lambda: up[0])
    try:
        assert value("hotline_ami_link_up") == 1
        up[0] = False
        assert value("hotline_ami_link_up") == 0
    finally:
        metrics.watch_ami_link(lambda: False)


def test_failure_reasons_are_exported_before_the_first_failure() -> None:
    for reason in metrics.AGI_FAILURE_REASONS:
        assert metrics.REGISTRY.get_sample_value(
            "hotline_agi_sessions_failed_total", {"reason": reason}) is not None


def test_the_registry_is_not_the_library_default() -> None:
    from prometheus_client import REGISTRY as DEFAULT

    assert metrics.REGISTRY is not DEFAULT
    assert DEFAULT.get_sample_value("hotline_ami_link_up") is None
