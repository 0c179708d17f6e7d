"""One error tree for the whole service.

Every error a person or a peer can act on is a :class:`HotlineError`: it has a
stable ``error_id`` (machine-readable, never reworded), an HTTP status, a
one-line message and optional details. The CLI prints ``hotline: error: <message>``,
the JSON API answers ``{"error": error_id, "message": …, "details": …}``, and
the IVR sends the call to its dialplan fallback. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class HotlineError(Exception):
    error_id: ClassVar[str] = "hotline_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error_id, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ConfigError(HotlineError):
    """A setting or a file under ``config/`` is wrong; the message names it."""

    error_id = "config_invalid"


class UnavailableError(HotlineError):
    """Something we depend on (database, Redis, Asterisk) cannot be reached."""

    error_id = "unavailable"
    http_status = 503


class InvalidInput(HotlineError, ValueError):
    """What we were given is wrong (a form field, a command's argument)."""

    error_id = "invalid_input"
    http_status = 400


class NotSignedIn(HotlineError):
    error_id = "not_signed_in"
    http_status = 401


class Forbidden(HotlineError):
    error_id = "forbidden"
    http_status = 403


class NotFound(HotlineError):
    error_id = "not_found"
    http_status = 404


class Conflict(HotlineError):
    error_id = "conflict"
    http_status = 409


class TooManyRequests(HotlineError):
    error_id = "too_many_requests"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class PeerError(HotlineError):
    """A peer (Asterisk over AMI or FastAGI) sent something we cannot use."""

    error_id = "peer_error"
    http_status = 502
