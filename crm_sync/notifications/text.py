"""Pure text rules of notifications: SMS encoding and segments, quiet hours."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

#: The GSM 03.38 basic alphabet (one septet each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: an escape septet and the character (two septets each).
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "gsm7" or "ucs2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def sms_size(text: str) -> SmsSize:
    """One segment holds 160 septets or 70 UCS-2 units; a concatenated message loses
    room to its header: 153 or 67 per segment. One Cyrillic letter makes it all UCS-2."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "gsm7"
    else:
        units = len(text.encode("utf-16-le")) // 2  # beyond the BMP: a surrogate pair
        single, multi, encoding = 70, 67, "ucs2"
    segments = 1 if units <= single else math.ceil(units / multi)
    return SmsSize(encoding, units, max(segments, 1))


def fit_sms(text: str, max_segments: int) -> str:
    """``text`` cut (with an ellipsis) to at most ``max_segments`` segments."""
    if sms_size(text).segments <= max_segments:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the ellipsis
        mid = (low + high + 1) // 2
        if sms_size(text[:mid].rstrip() + "…").segments <= max_segments:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "…"


@dataclass(frozen=True)
class QuietHours:
    """No texts from ``start`` to ``end`` local time (the window may cross midnight)."""

    start: time = time(22, 0)
    end: time = time(8, 0)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Kyiv"))

    def quiet(self, at: datetime) -> bool:
        local = at.astimezone(self.timezone).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, at: datetime) -> datetime:
        """``at`` itself outside the window, else the window's end (the morning)."""
        if not self.quiet(at):
            return at
        local = at.astimezone(self.timezone)
        morning = datetime.combine(local.date(), self.end, tzinfo=self.timezone)
        if morning <= local:
            morning = datetime.combine(local.date() + timedelta(days=1), self.end,
                                       tzinfo=self.timezone)
        return morning.astimezone(at.tzinfo)
