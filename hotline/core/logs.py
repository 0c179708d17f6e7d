"""structlog set-up shared by every part of the service.

One event per fact; call context (uniqueid, linkedid, appeal id) is bound by the
caller with ``log.bind(...)``. Citizens' phone numbers never reach a log line
unmasked: any key named in ``PHONE_KEYS`` is masked by a processor, so a
forgotten ``mask_phone`` call cannot leak one; a caller name (``NAME_KEYS``)
that is a number is masked the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from hotline.core.privacy import mask_name, mask_phone

PHONE_KEYS = frozenset(
    {"phone", "caller", "callerid", "caller_number", "calleridnum", "msisdn", "citizen_phone"}
)
#: Caller names: trunks often put the number there.
NAME_KEYS = frozenset({"caller_name", "calleridname", "callerid_name"})
SECRET_KEYS = frozenset({"secret", "password", "token", "database_url", "redis_url"})


def _mask_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        lowered = key.lower()
        if lowered in PHONE_KEYS and isinstance(event_dict[key], str):
            event_dict[key] = mask_phone(event_dict[key])
        elif lowered in NAME_KEYS and isinstance(event_dict[key], str):
            event_dict[key] = mask_name(event_dict[key])
        elif lowered in SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


class _StreamLogger:
    """Writes to the stream given, or else to whatever ``sys.stderr`` is at the
    time of writing (a stream captured at configuration time may be closed
    later, e.g. under pytest)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        print(message, file=self._stream or sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure_logging(
    fmt: str = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """``fmt`` is ``console`` (for people) or ``json`` (for machines); ``stream``
    is where lines go (an open log file), standard error when None."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=(stream or sys.stderr).isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *_args: _StreamLogger(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: Any) -> Any:
    """A lazy logger: safe at import time, it picks up ``configure_logging`` later
    (binding eagerly would freeze the defaults, without phone masking)."""
    return structlog.get_logger(component=name, **context)
