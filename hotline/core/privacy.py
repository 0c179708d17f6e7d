"""Citizens' personal data: how phone numbers are shown outside the case store.

Asterisk hands over a caller's number in many spellings: a plain
``380661112233``, ``+380 66 111-22-33``, with SIP URI parameters
(``+380661112233;cpc=ordinary``), as a URI (``sip:+380661112233@trunk``,
``tel:+380-66-111-22-33``). Masking works on the number part, whatever
surrounds it, and what follows the number (parameters, host) is dropped: it
is not needed to tell calls apart and may carry more identifiers. A caller
*name* can be a number too (many trunks put the number there); it gets the
same treatment.
"""

from __future__ import annotations

import re

#: Visual separators people and trunks put inside a number.
_SEPARATORS = re.compile(r"[\s().\-/]")
#: ``sip:``, ``sips:``, ``tel:`` and an opening ``<`` before the number.
_PREFIX = re.compile(r"^\s*<?\s*(?:(?:sips?|tel):)?", re.IGNORECASE)
#: Where the number part of a URI ends: parameters, host, headers, ``>``.
_NUMBER_END = re.compile(r"[;@?>,]")
_NUMBER = re.compile(r"^\+?\d+$")
#: A number inside free text ("Петренко 066 111 22 33"): digits with separators
#: between them, but not dots, so a host such as 10.0.0.12 stays readable.
_DIGIT_RUN = re.compile(r"\+?\d(?:[\s()\-]{0,3}\d)*")
#: Up to this many digits a number is not personal: extensions, service codes (1551).
SHORT_NUMBER_DIGITS = 4


def _mask_compact(compact: str) -> str:
    """``+380671234567`` → ``+38067*****67``; ``compact`` is ``+?digits``."""
    if sum(c.isdigit() for c in compact) <= SHORT_NUMBER_DIGITS:
        return compact
    head = max(len(compact) - 7, 0)
    return compact[:head] + "*" * (len(compact) - head - 2) + compact[-2:]


def _number_part(value: str) -> str | None:
    """The number a value spells, compacted (``+380661112233``), or None if it is
    not a number (``anonymous``, a name, ``sip:olena@host``)."""
    rest = _PREFIX.sub("", value, count=1)
    compact = _SEPARATORS.sub("", _NUMBER_END.split(rest, maxsplit=1)[0])
    return compact if _NUMBER.match(compact) else None


def _mask_runs(text: str) -> str:
    """Mask every number written inside free text; short ones stay."""

    def mask(match: re.Match[str]) -> str:
        run = match.group(0)
        compact = _SEPARATORS.sub("", run)
        if sum(c.isdigit() for c in compact) <= SHORT_NUMBER_DIGITS:
            return run
        return _mask_compact(compact)

    return _DIGIT_RUN.sub(mask, text)


def mask_phone(number: str | None) -> str:
    """``+380671234567`` → ``+38067*****67``: enough to tell calls apart in a log
    or on a wall screen, not enough to identify a citizen. Short numbers (internal
    extensions, service codes such as 1551) are not personal and stay as they are.

    ``+380661112233;cpc=ordinary``, ``sip:+380661112233@trunk`` and
    ``tel:+380-66-111-22-33`` all give ``+38066*****33``. A value that is not a
    number (``anonymous``) is kept, with any number written inside it masked.
    """
    if not number:
        return ""
    compact = _number_part(number)
    if compact is not None:
        return _mask_compact(compact)
    return _mask_runs(number)


def mask_name(name: str | None) -> str:
    """A caller name as it may be shown: a name that is a number (``380661112233``,
    ``+380 66 111 22 33``) is masked as a number; numbers written inside a name
    are masked too; letters stay."""
    return mask_phone(name)
