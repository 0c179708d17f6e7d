"""Pure rules of notifications: SMS segments and encoding, quiet hours, templates,
backoff, which appeal events a citizen hears of."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from crm_sync.notifications.appeals import citizen_event
from crm_sync.notifications.templates import (
    NotificationsConfigError,
    check_notifications_config,
    load_notifications_config,
    parse,
    problems,
)
from crm_sync.notifications.text import QuietHours, fit_sms, sms_size
from crm_sync.outbox.model import Event
from crm_sync.outbox.relay import backoff
from tests.support.paths import CONFIG_DIR


def test_sms_segments_gsm7_and_ucs2() -> None:
    assert sms_size("a" * 160) == sms_size("a" * 160).__class__("gsm7", 160, 1)
    assert sms_size("a" * 161).segments == 2 and sms_size("a" * 306).segments == 2
    assert sms_size("a" * 307).segments == 3
    assert sms_size("€" * 80).units == 160 and sms_size("€" * 81).segments == 2  # escaped
    cyr = sms_size("ї" * 70)
    assert (cyr.encoding, cyr.segments) == ("ucs2", 1)
    assert sms_size("ї" * 71).segments == 2 and sms_size("ї" * 134).segments == 2
    assert sms_size("ї" * 135).segments == 3
    assert sms_size("a" * 69 + "😀").units == 71  # a surrogate pair is two units


def test_fit_sms_cuts_to_the_segment_limit() -> None:
    text = "Звернення " * 40
    cut = fit_sms(text, 2)
    assert sms_size(cut).segments == 2 and cut.endswith("…")
    assert fit_sms("short", 1) == "short"


def test_quiet_hours_in_kyiv_time() -> None:
    quiet = QuietHours(time(22, 0), time(8, 0))
    night = datetime(2026, 2, 2, 21, 30, tzinfo=UTC)  # 23:30 in Kyiv (UTC+2)
    assert quiet.quiet(night)
    assert quiet.next_allowed(night) == datetime(2026, 2, 3, 6, 0, tzinfo=UTC)
    early = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)  # 06:00 in Kyiv (summer, UTC+3)
    assert quiet.next_allowed(early) == datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    day = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
    assert not quiet.quiet(day) and quiet.next_allowed(day) == day


def test_shipped_templates_fit_and_render_in_both_languages() -> None:
    config = load_notifications_config(CONFIG_DIR)
    assert problems(config) == []
    uk = config.render("done", "uk", {"number": "1551-2026-000001", "reason": "Готово"})
    assert uk.sms.startswith("Звернення 1551-2026-000001 виконано") and uk.sms_encoding == "ucs2"
    en = config.render("done", "en", {"number": "N1", "reason": "<b>fixed</b>"})
    assert en.sms_encoding == "gsm7" and "&lt;b&gt;fixed" in en.html and "<b>" not in en.html
    assert config.render("done", "de", {}).sms.startswith("Звернення")  # default language
    assert config.opt_out_keyword(" стоп ") and not config.opt_out_keyword("дякую")


def test_a_template_with_an_unknown_placeholder_is_refused() -> None:
    data = {"events": {e: {lang: {"sms": "x", "subject": "x", "text": "x"}
                           for lang in ("uk", "en")}
                       for e in ("registered", "routed", "needs_clarification", "done",
                                 "rejected")}}
    parse(data)
    data["events"]["done"]["uk"]["sms"] = "{phone}"
    with pytest.raises(NotificationsConfigError, match="unknown placeholder"):
        parse(data)


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    values = [backoff(n, 2.0, 60.0, rng) for n in range(1, 10)]
    assert 1.0 <= values[0] <= 2.0 and 8.0 <= values[3] <= 16.0
    assert all(30.0 <= v <= 60.0 for v in values[6:])


def test_which_events_a_citizen_hears_of() -> None:
    def event(topic: str, to: str) -> Event:
        return Event(1, topic, "k", {"to_status": to}, datetime.now(UTC))

    assert citizen_event(event("appeal.created", "registered")) == "registered"
    assert citizen_event(event("appeal.status_changed", "routed")) == "routed"
    assert citizen_event(event("appeal.status_changed", "accepted")) is None
    assert citizen_event(event("appeal.comment_added", "done")) is None


def test_check_config_names_a_broken_notifications_file(tmp_path: Path) -> None:
    assert check_notifications_config(CONFIG_DIR) == []
    (tmp_path / "notifications.toml").write_text(
        (CONFIG_DIR / "notifications.toml").read_text(encoding="utf-8")
        .replace("Звернення {number} виконано", "Звернення {nomer} виконано"), encoding="utf-8")
    found = check_notifications_config(tmp_path)
    assert [str(p) for p in found] == [
        "notifications.toml: events.done.uk.sms: unknown placeholder {nomer}"]
    (tmp_path / "notifications.toml").write_text(
        (CONFIG_DIR / "notifications.toml").read_text(encoding="utf-8")
        .replace("max_sms_segments = 3", "max_sms_segments = 1"), encoding="utf-8")
    assert any("segments (ucs2) with sample values, over 1" in str(p)
               for p in check_notifications_config(tmp_path))


