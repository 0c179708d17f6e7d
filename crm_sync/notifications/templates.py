"""``config/notifications.toml``: which appeal changes a citizen is told of, and
the texts in each language; rendering them into an SMS or an e-mail."""

from __future__ import annotations

import html
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_sync.notifications.text import QuietHours, fit_sms, sms_size
from hotline.core.errors import ConfigError
from hotline.core.problems import Problem

FILE_NAME = "notifications.toml"
#: The appeal statuses a citizen is told of (the ``to_status`` of a change).
EVENTS = ("registered", "routed", "needs_clarification", "done", "rejected")
LANGUAGES = ("uk", "en")
PLACEHOLDERS = frozenset({"number", "category", "executor", "reason", "due", "opt_out_url"})
SAMPLE = {"number": "1551-2026-000123", "category": "Не працює пасажирський ліфт у будинку",
          "executor": "КП «Керуюча компанія з обслуговування житлового фонду району»",
          "reason": "Ліфт відремонтовано, замінено блок керування", "due": "03.02.2026",
          "opt_out_url": "https://1551.example/n/opt-out?c=123&t=0123456789abcdef"}
_FIELD = re.compile(r"{(\w*)}")


class NotificationsConfigError(ConfigError):
    error_id = "notifications_config_invalid"


@dataclass(frozen=True)
class Texts:
    sms: str
    subject: str
    text: str


@dataclass(frozen=True)
class Rendered:
    sms: str
    sms_encoding: str
    sms_segments: int
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class NotificationsConfig:
    default_language: str = "uk"
    max_sms_segments: int = 3
    quiet: QuietHours = field(default_factory=QuietHours)
    opt_out_keywords: frozenset[str] = frozenset({"STOP", "СТОП"})
    texts: dict[tuple[str, str], Texts] = field(default_factory=dict)
    urgent: frozenset[str] = frozenset()

    def language(self, wanted: str | None) -> str:
        return wanted if wanted in LANGUAGES else self.default_language

    def render(self, event: str, language: str, values: dict[str, str]) -> Rendered:
        texts = self.texts[(event, self.language(language))]
        safe = {k: values.get(k, "") or "" for k in PLACEHOLDERS}
        sms = fit_sms(texts.sms.format_map(safe), self.max_sms_segments)
        size = sms_size(sms)
        body = texts.text.format_map(safe)
        escaped = {k: html.escape(v) for k, v in safe.items()}
        link = escaped["opt_out_url"]
        html_body = "".join(
            f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>"
            for p in texts.text.replace("{opt_out_url}", "\0").format_map(safe).split("\n\n")
        ).replace("\0", f'<a href="{link}">{link}</a>')
        return Rendered(sms, size.encoding, size.segments, texts.subject.format_map(safe),
                        body, f"<!doctype html><html><body>{html_body}</body></html>")

    def opt_out_keyword(self, reply: str) -> bool:
        return reply.strip().strip(".!").upper() in self.opt_out_keywords


def _clock(value: Any, key: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise NotificationsConfigError(f"{FILE_NAME}: settings.{key}: expected HH:MM, "
                                       f"got {value!r}") from None


def parse(data: dict[str, Any]) -> NotificationsConfig:
    settings = data.get("settings", {})
    language = str(settings.get("default_language", "uk"))
    if language not in LANGUAGES:
        raise NotificationsConfigError(f"{FILE_NAME}: settings.default_language: one of "
                                       f"{', '.join(LANGUAGES)}")
    segments = settings.get("max_sms_segments", 3)
    if not isinstance(segments, int) or not 1 <= segments <= 10:
        raise NotificationsConfigError(f"{FILE_NAME}: settings.max_sms_segments: 1 to 10")
    try:
        zone = ZoneInfo(str(settings.get("timezone", "Europe/Kyiv")))
    except (ZoneInfoNotFoundError, ValueError):
        raise NotificationsConfigError(f"{FILE_NAME}: settings.timezone: unknown") from None
    quiet = QuietHours(_clock(settings.get("quiet_start", "22:00"), "quiet_start"),
                       _clock(settings.get("quiet_end", "08:00"), "quiet_end"), zone)
    keywords = frozenset(str(k).strip().upper() for k in settings.get("opt_out_keywords", []))
    texts: dict[tuple[str, str], Texts] = {}
    urgent: set[str] = set()
    events = data.get("events", {})
    for event in EVENTS:
        section = events.get(event)
        if not isinstance(section, dict):
            raise NotificationsConfigError(f"{FILE_NAME}: events.{event}: missing")
        if section.get("urgent", False) is True:
            urgent.add(event)
        for lang in LANGUAGES:
            entry = section.get(lang)
            if not isinstance(entry, dict):
                raise NotificationsConfigError(f"{FILE_NAME}: events.{event}.{lang}: missing")
            values = {}
            for key in ("sms", "subject", "text"):
                value = entry.get(key)
                where = f"{FILE_NAME}: events.{event}.{lang}.{key}"
                if not isinstance(value, str) or not value.strip():
                    raise NotificationsConfigError(f"{where}: a non-empty text")
                unknown = set(_FIELD.findall(value)) - PLACEHOLDERS
                if unknown:
                    raise NotificationsConfigError(
                        f"{where}: unknown placeholder {{{sorted(unknown)[0]}}}")
                values[key] = value
            texts[(event, lang)] = Texts(**values)
    unknown_events = set(events) - set(EVENTS)
    if unknown_events:
        raise NotificationsConfigError(
            f"{FILE_NAME}: events.{sorted(unknown_events)[0]}: not one of {', '.join(EVENTS)}")
    return NotificationsConfig(language, segments, quiet, keywords, texts, frozenset(urgent))


def load_notifications_config(config_dir: Path) -> NotificationsConfig:
    path = config_dir / FILE_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotificationsConfigError(f"{path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise NotificationsConfigError(f"{path}: {exc}") from None
    return parse(data)


def problems(config: NotificationsConfig) -> list[str]:
    """Texts that sample values push past the segment limit (they would be cut)."""
    found = []
    for (event, lang), texts in sorted(config.texts.items()):
        full = texts.sms.format_map(SAMPLE)
        size = sms_size(full)
        if size.segments > config.max_sms_segments:
            found.append(f"{FILE_NAME}: events.{event}.{lang}.sms: {size.segments} segments "
                         f"({size.encoding}) with sample values, over {config.max_sms_segments}")
    return found


def check_notifications_config(config_dir: Path) -> list[Problem]:
    """``hotline check-config``: the file reads, and its texts fit their segments."""
    try:
        config = load_notifications_config(config_dir)
    except NotificationsConfigError as exc:
        return [Problem(FILE_NAME, "", exc.message.split(": ", 1)[-1])]
    return [Problem(FILE_NAME, "", p.split(": ", 1)[-1]) for p in problems(config)]
