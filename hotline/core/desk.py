"""The operator's in-call panel (issue 8): the one catalogue of call dispositions
(pure, no I/O).

``calls.disposition`` holds one of these values; the CHECK constraint of migration
0012 repeats them and ``tests/integration/test_call_panel.py`` compares the two.
The words the operator reads are in ``config/desk.toml`` (``hotline check-config``
wants a label for each, and nothing else).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from hotline.core.errors import InvalidInput


class Disposition(enum.StrEnum):
    APPEAL_CREATED = "appeal_created"
    CONSULTATION = "consultation"
    TRANSFERRED = "transferred"
    DROPPED = "dropped"
    ABUSIVE = "abusive"


DISPOSITIONS = tuple(d.value for d in Disposition)


class FieldsInvalid(InvalidInput):
    """Several fields of a form are wrong at once: ``details["fields"]`` maps each
    to its message (the page shows them by the fields), ``details["field"]`` is the
    first, as for a single :class:`~hotline.core.errors.InvalidInput`."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        if not fields:
            raise ValueError("FieldsInvalid needs at least one field")
        first = next(iter(fields))
        message = "; ".join(f"{name}: {text}" for name, text in fields.items())
        super().__init__(message, details={"field": first, "fields": dict(fields)})
