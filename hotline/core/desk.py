"""The operator desk (issue 8). Pure: no I/O.

The in-call panel: the one catalogue of call dispositions. ``calls.disposition``
holds one of these values; the CHECK constraint of migration 0012 repeats them and
``tests/integration/test_call_panel.py`` compares the two. The words the operator
reads are in ``config/desk.toml`` (``hotline check-config`` wants a label for
each, and nothing else).

Presence and call control: what the web and the AMI role say to each other, and
their configuration (``config/presence.toml``). The web never talks to Asterisk.
It resolves who acts on which phone (from the case store, after checking the
person's rights), then sends a :class:`DeskCommand` through a
:class:`DeskCommandPort`; the process running the ``ami`` role executes it with
AMI actions and answers a :class:`DeskReply` carrying Asterisk's own words. The
AMI role publishes what happens to an operator (the screen-pop, member states,
results) on that operator's own channel (:func:`operator_channel`): a citizen's
data never goes onto a broadcast channel.
"""

from __future__ import annotations

import enum
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from hotline.core.errors import Conflict, InvalidInput, UnavailableError
from hotline.core.problems import ConfigProblems, Problem


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


PRESENCE_FILE = "presence.toml"

#: Commands from the web processes to the process running the ``ami`` role.
COMMANDS_CHANNEL = "hotline:desk:commands"
#: The reply to command ``id`` is pushed onto ``REPLY_PREFIX + id`` (a list, short TTL).
REPLY_PREFIX = "hotline:desk:reply:"
#: One channel per operator; the web's one subscriber per process listens to the pattern.
OPERATOR_CHANNEL_PREFIX = "hotline:desk:op:"
OPERATOR_CHANNEL_PATTERN = OPERATOR_CHANNEL_PREFIX + "*"
#: The operator's current pop, JSON, so that a page that (re)connects shows it.
POP_KEY_PREFIX = "hotline:desk:pop:"
#: A call up longer than this is unusual; the key goes away by itself if an end is missed.
POP_TTL_SECONDS = 4 * 3600
#: How long an ended call's card stays for a page that reconnects during wrap-up.
ENDED_POP_TTL_SECONDS = 900

# What the desk asks of the AMI role.
LOGIN, LOGOUT, PAUSE, READY, STATUS = "login", "logout", "pause", "ready", "status"
HANGUP, TRANSFER_QUEUE, TRANSFER_OPERATOR, CALLBACK = (
    "hangup", "transfer_queue", "transfer_operator", "callback",
)
PRESENCE_ACTIONS = (LOGIN, LOGOUT, PAUSE, READY)
CALL_ACTIONS = (HANGUP, TRANSFER_QUEUE, TRANSFER_OPERATOR, CALLBACK)
ACTIONS = (*PRESENCE_ACTIONS, STATUS, *CALL_ACTIONS)

_PHONE = re.compile(r"\+?[0-9]{3,20}")
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def operator_channel(login: str) -> str:
    return OPERATOR_CHANNEL_PREFIX + login


def pop_key(login: str) -> str:
    return POP_KEY_PREFIX + login


def member_interface(login: str, queue_interface: str | None) -> str:
    """The operator's queue member: their simulated member if they have one, else
    their SIP phone ``PJSIP/<login>`` (which is also its state interface)."""
    return queue_interface or f"PJSIP/{login}"


def is_dialable(number: str) -> bool:
    """A number the desk may call back: digits with an optional leading +."""
    return _PHONE.fullmatch(number) is not None


def phone_variants(number: str) -> list[str]:
    """The forms a Ukrainian number is stored in (``+380…``, ``380…``, ``0…``), the
    given one first: Asterisk shows what the carrier sent, the case store what a
    person typed."""
    n = re.sub(r"[\s()\-.]", "", number)
    out = [n]
    if n.startswith("+380"):
        out += [n[1:], "0" + n[4:]]
    elif n.startswith("380"):
        out += ["+" + n, "0" + n[3:]]
    elif n.startswith("0") and len(n) == 10:
        out += ["+38" + n, "38" + n]
    return list(dict.fromkeys(v for v in out if v))


# --- commands and replies -------------------------------------------------------------


@dataclass(frozen=True)
class Skill:
    queue: str
    penalty: int = 0


@dataclass(frozen=True)
class DeskCommand:
    """One thing to do on one operator's phone. ``interface`` is resolved by the web
    from the case store after authorisation, never taken from the browser."""

    action: str
    login: str  # whose desk hears about the outcome
    interface: str
    member_name: str = ""
    skills: tuple[Skill, ...] = ()
    reason: str = ""  # pause reason code
    queue: str = ""  # transfer to this queue
    target_interface: str = ""  # transfer to this operator's phone
    number: str = ""  # call this citizen back
    id: str = ""
    deadline: float = 0.0  # epoch seconds: after it nobody waits for the answer

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeskCommand:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("action") not in ACTIONS:
            raise ValueError("not a desk command")
        skills = tuple(Skill(str(s["queue"]), int(s.get("penalty", 0)))
                       for s in data.pop("skills", ()) or ())
        known = {f for f in cls.__dataclass_fields__ if f != "skills"}
        return cls(skills=skills, **{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DeskReply:
    ok: bool
    message: str  # Asterisk's words when it refused
    error: str = ""  # an error_id when not ok
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeskReply:
        data = json.loads(text)
        return cls(bool(data.get("ok")), str(data.get("message", "")), str(data.get("error", "")),
                   dict(data.get("data") or {}))


class DeskUnavailable(UnavailableError):
    """No process runs the ``ami`` role, or it did not answer in time."""

    error_id = "desk_commands_unavailable"


class AsteriskRefused(Conflict):
    """Asterisk refused the action; the message is its reason."""

    error_id = "asterisk_refused"


class DeskCommandPort(Protocol):
    """Carries a command to the process that runs the ``ami`` role and its reply back;
    raises :class:`DeskUnavailable` when nobody is there to answer."""

    async def send(self, command: DeskCommand) -> DeskReply: ...


class OperatorDirectory(Protocol):
    """Who (login) is behind a queue member interface; None for a member with no account."""

    async def login_of_interface(self, interface: str) -> str | None: ...


class CallerContext(Protocol):
    """What the case store knows of a caller: ``citizen`` (or None: a new citizen),
    ``appeals`` (open and recent, status and executor), ``recent_calls``."""

    async def caller_context(self, number: str) -> dict[str, Any]: ...


# --- member states, as Asterisk reports them ------------------------------------------

# app_queue's member Status (ast_device_state).
DEVICE_STATES = {
    "0": "unknown", "1": "available", "2": "in_call", "3": "busy", "4": "invalid",
    "5": "unavailable", "6": "ringing", "7": "in_call", "8": "on_hold",
}


def member_view(fields: Mapping[str, str | None]) -> dict[str, Any]:
    """A QueueMember (QueueStatus) or QueueMember* event as the desk shows it."""
    paused = (fields.get("Paused") or "0") == "1"
    status = fields.get("Status") or ""
    return {
        "queue": fields.get("Queue") or "",
        "interface": fields.get("Interface") or fields.get("Location") or "",
        "paused": paused,
        "reason": (fields.get("PausedReason") or "") if paused else "",
        "status": DEVICE_STATES.get(status, status or "unknown"),
        "in_call": (fields.get("InCall") or "0") == "1",
        "calls_taken": int(fields.get("CallsTaken") or 0),
        "penalty": int(fields.get("Penalty") or 0),
    }


# --- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class PauseReason:
    code: str  # what Asterisk records (PausedReason) and operator_state_changes keeps
    label: str


@dataclass(frozen=True)
class DeskConfig:
    pause_reasons: tuple[PauseReason, ...]
    wrapup_seconds: int  # after each queue call; 0: none
    wrapup_reason: str  # the pause reason the wrap-up is recorded under
    command_timeout: float  # seconds the web waits for the AMI role

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.pause_reasons)


class DeskConfigError(ConfigProblems):
    error_id = "desk_config_invalid"


def parse_desk_config(text: str) -> tuple[DeskConfig | None, list[Problem]]:
    """The desk's settings, or every problem with them (for ``hotline check-config``)."""
    problems: list[Problem] = []

    def problem(key: str, reason: str) -> None:
        problems.append(Problem(PRESENCE_FILE, key, reason))

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(PRESENCE_FILE, "", f"not valid TOML: {exc}")]
    for key in sorted(set(data) - {"pause_reasons", "wrapup_seconds", "wrapup_reason",
                                   "command_timeout"}):
        problem(key, "unknown key")
    reasons: list[PauseReason] = []
    raw = data.get("pause_reasons")
    if not isinstance(raw, dict) or not raw:
        problem("pause_reasons", "a table of at least one code = \"label\"")
        raw = {}
    for code, label in raw.items():
        if not _CODE.match(code):
            problem(f"pause_reasons.{code}", "a code is lowercase letters, digits and _")
        elif not isinstance(label, str) or not label.strip():
            problem(f"pause_reasons.{code}", "the label must be a non-empty string")
        else:
            reasons.append(PauseReason(code, label.strip()))
    wrapup = data.get("wrapup_seconds", 0)
    if not isinstance(wrapup, int) or isinstance(wrapup, bool) or not 0 <= wrapup <= 600:
        problem("wrapup_seconds", "whole seconds from 0 to 600")
        wrapup = 0
    reason = data.get("wrapup_reason", "")
    if wrapup and reason not in raw:
        problem("wrapup_reason", f"must be one of pause_reasons, got {reason!r}")
    timeout = data.get("command_timeout", 5.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not (
            0.5 <= timeout <= 30):
        problem("command_timeout", "seconds from 0.5 to 30")
        timeout = 5.0
    if problems:
        return None, problems
    return DeskConfig(tuple(reasons), wrapup, str(reason), float(timeout)), []


def load_desk_config_text(text: str, where: str = "") -> DeskConfig:
    config, problems = parse_desk_config(text)
    if config is None:
        raise DeskConfigError(problems, where=where)
    return config
