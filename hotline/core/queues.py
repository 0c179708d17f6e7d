"""The queue catalogue (``queues.toml``): the one list of the hotline's queues.

Everything else that names a queue follows it: the IVR menu's digits and
labels, Asterisk's ``queues.conf`` and the dialplan's overflow (generated from
it by :func:`queues_conf` and :func:`dialplan_globals`), the classic-AGI
fallback (reads it), the simulator and the taxonomy's default queues.

Pure: the caller reads the file and gives its text. Every problem names the key
at fault, because a typo in a queue name only shows up as callers stuck in a
queue nobody serves.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hotline.core.problems import ConfigProblems, Problem

CATALOGUE_FILE = "queues.toml"
#: Section names with a meaning of their own in Asterisk's queues.conf.
RESERVED_NAMES = frozenset({"general"})
#: app_queue's ring strategies.
STRATEGIES = frozenset({
    "ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "rrordered",
    "linear", "wrandom",
})
DIGITS = frozenset("0123456789*#")
# Also a dialplan variable suffix (HOTLINE_OVERFLOW_<name>): no "-" or ".".
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SETTINGS = {"service_level": (1, 3600), "ring_timeout": (1, 600)}
_QUEUE_KEYS = frozenset(
    {"digit", "sphere", "label_uk", "label_en", "overflow", "strategy", *_SETTINGS}
)
_DEFAULTS: dict[str, Any] = {"service_level": 20, "strategy": "rrmemory", "ring_timeout": 15}
_Report = Callable[[str, str], None]


@dataclass(frozen=True)
class Queue:
    name: str
    digit: str | None  # the IVR key that chooses it; None: reached by overflow only
    sphere: str | None  # the taxonomy sphere whose calls it takes
    label_uk: str
    label_en: str
    service_level: int  # seconds: Asterisk's SL / SL2 threshold (servicelevel)
    strategy: str
    ring_timeout: int  # seconds an operator's phone rings (Asterisk's timeout)
    overflow: str | None  # takes the call when this queue's wait runs out


@dataclass(frozen=True)
class QueueCatalogue:
    queues: Mapping[str, Queue]  # in the file's order
    catch_all: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.queues)

    def by_digit(self) -> dict[str, Queue]:
        return {q.digit: q for q in self.queues.values() if q.digit is not None}

    def queue_for_sphere(self, sphere: str) -> str:
        """The sphere's own queue, or the catch-all."""
        for queue in self.queues.values():
            if queue.sphere == sphere:
                return queue.name
        return self.catch_all


class CatalogueError(ConfigProblems):
    error_id = "queue_catalogue_invalid"


def parse_catalogue(text: str) -> QueueCatalogue:
    """The catalogue, or :class:`CatalogueError` naming every problem."""
    catalogue, problems = check_catalogue(text)
    if problems or catalogue is None:
        raise CatalogueError(problems)
    return catalogue


def check_catalogue(text: str) -> tuple[QueueCatalogue | None, list[Problem]]:
    """The catalogue as far as it can be read, and its problems.

    A catalogue is returned whenever the file is TOML with queue tables, so that
    the other files can still be checked against the names it has.
    """
    problems: list[Problem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(CATALOGUE_FILE, key, reason))

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(CATALOGUE_FILE, "", f"not valid TOML: {exc}")]
    for key in [k for k in data if k not in {"catch_all", "defaults", "queues"}]:
        bad(key, "unknown key (expected catch_all, [defaults], [queues.<name>])")

    defaults = dict(_DEFAULTS)
    table = data.get("defaults", {})
    if not isinstance(table, Mapping):
        bad("defaults", "expected a table")
        table = {}
    for key, value in table.items():
        if key not in _DEFAULTS:
            bad(f"defaults.{key}", f"unknown key (expected {', '.join(sorted(_DEFAULTS))})")
        elif _setting(key, value, f"defaults.{key}", bad) is not None:
            defaults[key] = value

    tables = data.get("queues")
    if not isinstance(tables, Mapping) or not tables:
        bad("queues", "at least one [queues.<name>] table is needed")
        return None, problems
    catch_all = data.get("catch_all")
    if not isinstance(catch_all, str) or catch_all not in tables:
        names = ", ".join(tables)
        bad("catch_all", f"expected the name of one of the queues ({names}), got {catch_all!r}")
        catch_all = ""

    queues: dict[str, Queue] = {}
    digit_owner: dict[str, str] = {}
    sphere_owner: dict[str, str] = {}
    for name, entry in tables.items():
        where = f"queues.{name}"
        if not _NAME.match(name):
            bad(where, "a queue name is lowercase letters, digits and _ (at most 32), "
                       "starting with a letter")
        elif name in RESERVED_NAMES:
            bad(where, f"{name!r} is a reserved section name in Asterisk's queues.conf")
        if not isinstance(entry, Mapping):
            bad(where, "expected a table")
            continue
        for key in [k for k in entry if k not in _QUEUE_KEYS]:
            bad(f"{where}.{key}", f"unknown key (expected {', '.join(sorted(_QUEUE_KEYS))})")
        digit = _digit(entry.get("digit"), f"{where}.digit", bad)
        if digit is not None:
            if digit in digit_owner:
                bad(f"{where}.digit", f"duplicate digit {digit!r}: queue "
                                      f"{digit_owner[digit]!r} has it already")
            else:
                digit_owner[digit] = name
        sphere = entry.get("sphere")
        if sphere is not None:
            if not isinstance(sphere, str) or not _NAME.match(sphere):
                bad(f"{where}.sphere", "expected a sphere code of the taxonomy, e.g. 'housing'")
                sphere = None
            elif sphere in sphere_owner:
                bad(f"{where}.sphere", f"sphere {sphere!r} already has queue "
                                       f"{sphere_owner[sphere]!r}")
            else:
                sphere_owner[sphere] = name
        labels = {}
        for key in ("label_uk", "label_en"):
            value = entry.get(key, "")
            if not isinstance(value, str) or (digit is not None and not value.strip()):
                bad(f"{where}.{key}", "expected a non-empty string (the menu names the queue "
                                      "by it)" if digit is not None else "expected a string")
                value = ""
            labels[key] = value
        settings = dict(defaults)
        for key in [k for k in defaults if k in entry]:
            checked = _setting(key, entry[key], f"{where}.{key}", bad)
            if checked is not None:
                settings[key] = checked
        overflow = entry.get("overflow")
        if overflow is not None and not isinstance(overflow, str):
            bad(f"{where}.overflow", "expected a queue name")
            overflow = None
        if overflow is None and name != catch_all and catch_all:
            overflow = catch_all  # every wait ends with a person in the catch-all queue
        queues[name] = Queue(
            name=name, digit=digit, sphere=sphere,
            label_uk=labels["label_uk"], label_en=labels["label_en"],
            service_level=int(settings["service_level"]),
            strategy=str(settings["strategy"]),
            ring_timeout=int(settings["ring_timeout"]),
            overflow=overflow,
        )
    _check_overflow(queues, catch_all, bad)
    return QueueCatalogue(queues, catch_all), problems


def _digit(value: Any, where: str, bad: _Report) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(value)
    if isinstance(value, str) and value in DIGITS:
        return value
    bad(where, f"expected one of 0-9, * or #, got {value!r}")
    return None


def _setting(key: str, value: Any, where: str, bad: _Report) -> Any:
    if key == "strategy":
        if isinstance(value, str) and value in STRATEGIES:
            return value
        bad(where, f"expected one of {', '.join(sorted(STRATEGIES))}, got {value!r}")
        return None
    low, high = _SETTINGS[key]
    # bool is an int in Python; "ring_timeout = true" is a mistake, not 1.
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    bad(where, f"expected seconds, an integer from {low} to {high}, got {value!r}")
    return None


def _check_overflow(queues: Mapping[str, Queue], catch_all: str, bad: _Report) -> None:
    reported: set[frozenset[str]] = set()
    for name, queue in queues.items():
        where = f"queues.{name}.overflow"
        if queue.overflow is None:
            continue
        if name == catch_all:
            bad(where, "the catch-all queue is the last stop: it has no overflow")
            continue
        if queue.overflow not in queues:
            bad(where, f"unknown queue {queue.overflow!r} "
                       f"({CATALOGUE_FILE} has {', '.join(queues)})")
            continue
        seen = [name]
        nxt: str | None = queue.overflow
        # The catch-all's own overflow is reported above: the walk ends there.
        while nxt is not None and nxt in queues and nxt not in seen and nxt != catch_all:
            seen.append(nxt)
            nxt = queues[nxt].overflow
        if nxt in seen:
            loop = frozenset(seen[seen.index(nxt):])
            if loop not in reported:
                reported.add(loop)
                bad(where, "overflow goes round in a circle: "
                           + " -> ".join([*seen[seen.index(nxt):], nxt]))


# --- what Asterisk is told ------------------------------------------------------


def queues_conf(catalogue: QueueCatalogue) -> str:
    """The queue sections of Asterisk's queues.conf (they inherit ``hotline-queue``)."""
    out = []
    for q in catalogue.queues.values():
        facts = [f"IVR digit {q.digit}" if q.digit else "no IVR digit"]
        if q.sphere:
            facts.append(f"sphere {q.sphere}")
        facts.append(f"overflow {q.overflow}" if q.overflow else "catch-all: no overflow")
        out += [
            f"[{q.name}](hotline-queue)",
            f"; {', '.join(facts)} (generated from {CATALOGUE_FILE})",
            f"strategy = {q.strategy}",
            f"servicelevel = {q.service_level}",
            f"timeout = {q.ring_timeout}",
            "",
        ]
    return "\n".join(out)


def dialplan_globals(catalogue: QueueCatalogue, default_queue: str) -> str:
    """``[globals]`` lines for extensions.conf: the preset queue and the overflow chain."""
    lines = [
        f"HOTLINE_DEFAULT_QUEUE = {default_queue}",
        f"HOTLINE_CATCH_ALL = {catalogue.catch_all}",
    ]
    lines += [
        f"HOTLINE_OVERFLOW_{q.name} = {q.overflow}"
        for q in catalogue.queues.values()
        if q.overflow
    ]
    return "\n".join(lines)
