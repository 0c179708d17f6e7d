"""Citizens' personal data: how phone numbers are shown outside the case store."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s().-]")


def mask_phone(number: str | None) -> str:
    """``+380671234567`` → ``+38067*****67``: enough to tell calls apart in a log
    or on a wall screen, not enough to identify a citizen. Short numbers (internal
    extensions, service codes such as 1551) are not personal and stay as they are."""
    if not number:
        return ""
    compact = _SEPARATORS.sub("", number)
    if len(compact) <= 4:
        return compact
    head = max(len(compact) - 7, 0)
    return compact[:head] + "*" * (len(compact) - head - 2) + compact[-2:]
