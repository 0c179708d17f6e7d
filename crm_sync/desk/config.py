"""The in-call panel's files: ``desk.toml`` (disposition labels, taxonomy
keywords, where the other two are), the street list (``streets.csv``: street →
district) and the phone directory of city services (``directory.toml``).

Every problem is a :class:`~hotline.core.problems.Problem` naming the file, the
key or line, and the reason; ``hotline check-config`` lists them all and
:func:`load_desk_config` refuses a directory that has any.
"""

from __future__ import annotations

import csv
import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_sync.appeals.addresses import address_has_prefix, normalise_address
from hotline.core.desk import DISPOSITIONS
from hotline.core.problems import ConfigProblems, Problem

DESK_FILE = "desk.toml"
MAX_STREETS = 20_000
MAX_SERVICES = 2_000
#: How alike a misspelt street must be to the list's (difflib ratio, 0..1).
STREET_LIKENESS = 0.85
#: normalise_address spells street types out and puts them first; the street
#: itself is what follows ("Драйзера 10" and "вул. Драйзера, 10" are one street).
_STREET_TYPES = frozenset({"вулиця", "проспект", "провулок", "бульвар", "площа", "набережна",
                           "узвіз", "шосе"})
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{1,30}")
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "`": "'"})


class DeskConfigError(ConfigProblems):
    error_id = "desk_config_invalid"


@dataclass(frozen=True)
class Street:
    name: str  # as the list writes it: "вул. Драйзера"
    district: str  # a district code of the taxonomy
    key: str  # "драйзера": normalised, without the street type


@dataclass(frozen=True)
class Service:
    name: str
    phone: str
    description: str = ""
    hours: str = ""
    keywords: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "phone": self.phone, "description": self.description,
                "hours": self.hours, "keywords": list(self.keywords)}


def street_key(address: str) -> str:
    """An address's comparison key without the street type word."""
    words = normalise_address(address).split()
    if words and words[0] in _STREET_TYPES:
        words = words[1:]
    return " ".join(words)


def _fold(text: str) -> str:
    return text.translate(_APOSTROPHES).lower().replace("ё", "е")


@dataclass(frozen=True)
class DeskConfig:
    dispositions: Mapping[str, str] = field(default_factory=dict)  # code → label
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # category → words
    streets: tuple[Street, ...] = ()
    directory: tuple[Service, ...] = ()

    def district_of(self, address: str) -> Street | None:
        """The listed street an address is on: its key starts with the street's
        (the longest wins), or, for a misspelling, its first words are alike."""
        key = street_key(address)
        if not key:
            return None
        exact = [s for s in self.streets if address_has_prefix(key, s.key)]
        if exact:
            return max(exact, key=lambda s: len(s.key))
        words = key.split()
        best: tuple[float, Street] | None = None
        for street in self.streets:
            n = len(street.key.split())
            head = " ".join(w for w in words[:n] if not w[:1].isdigit())
            ratio = difflib.SequenceMatcher(None, head, street.key).ratio()
            if ratio >= STREET_LIKENESS and (best is None or ratio > best[0]):
                best = (ratio, street)
        return best[1] if best else None

    def find_streets(self, text: str, limit: int = 10) -> list[Street]:
        """Streets for the address box: containing what was typed, then alike."""
        key = street_key(text)
        if not key:
            return []
        key = " ".join(w for w in key.split() if not w[:1].isdigit()) or key
        scored: list[tuple[float, str, Street]] = []
        for street in self.streets:
            if key in street.key:
                score = 2.0 - street.key.index(key) / 100
            else:
                score = difflib.SequenceMatcher(None, key, street.key[:len(key) + 2]).ratio()
                if score < 0.7:
                    continue
            scored.append((score, street.key, street))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [s for _, _, s in scored[:limit]]

    def search_directory(self, text: str, limit: int = 20) -> list[Service]:
        """Services whose name, description or keywords hold every word typed (a
        word's last two letters may differ: Ukrainian endings)."""
        words = [w for w in re.split(r"[^\w']+", _fold(text)) if w]
        stems = [w[:-2] if len(w) > 5 else w for w in words]
        found = []
        for service in self.directory:
            hay = _fold(" ".join((service.name, service.description, *service.keywords)))
            if all(stem in hay for stem in stems):
                found.append(service)
        return found[:limit]


def _read_toml(config_dir: Path, name: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        return tomllib.loads((config_dir / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(name, "", "missing"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(name, "", f"cannot read: {exc}"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(name, "", f"not TOML: {exc}"))
    return None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def check_desk_config(
    config_dir: Path, *, categories: set[str] | None = None, districts: set[str] | None = None,
) -> tuple[DeskConfig | None, list[Problem]]:
    """The panel's configuration and every problem of it; codes are checked against
    the taxonomy's when it is given (None: it could not be read)."""
    problems: list[Problem] = []
    data = _read_toml(config_dir, DESK_FILE, problems)
    if data is None:
        return None, problems

    labels = data.get("dispositions")
    dispositions: dict[str, str] = {}
    if not isinstance(labels, dict):
        problems.append(Problem(DESK_FILE, "dispositions", "a table of labels is required"))
    else:
        for code in DISPOSITIONS:
            label = labels.get(code)
            if not isinstance(label, str) or not label.strip():
                problems.append(Problem(DESK_FILE, f"dispositions.{code}",
                                        "a label is required for every disposition"))
            else:
                dispositions[code] = label.strip()
        for code in sorted(set(labels) - set(DISPOSITIONS)):
            problems.append(Problem(DESK_FILE, f"dispositions.{code}",
                                    f"unknown disposition (the catalogue is "
                                    f"{', '.join(DISPOSITIONS)}: hotline.core.desk)"))

    keywords: dict[str, tuple[str, ...]] = {}
    taxonomy = data.get("taxonomy", {})
    table = taxonomy.get("keywords", {}) if isinstance(taxonomy, dict) else None
    if not isinstance(table, dict):
        problems.append(Problem(DESK_FILE, "taxonomy.keywords", "expected a table"))
    else:
        for code, words in table.items():
            where = f"taxonomy.keywords.{code}"
            if categories is not None and code not in categories:
                problems.append(Problem(DESK_FILE, where, f"unknown category {code!r}"))
            elif not _strings(words):
                problems.append(Problem(DESK_FILE, where, "expected a list of words"))
            else:
                keywords[code] = tuple(w.strip() for w in words)

    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        problems.append(Problem(DESK_FILE, "settings", "expected a table"))
        settings = {}
    names = {}
    for key, default in (("streets_file", "streets.csv"), ("directory_file", "directory.toml")):
        name = settings.get(key, default)
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            problems.append(Problem(DESK_FILE, f"settings.{key}",
                                    "expected a file name in the config directory"))
            name = default
        names[key] = name
    streets = _check_streets(config_dir, names["streets_file"], districts, problems)
    directory = _check_directory(config_dir, names["directory_file"], problems)
    if problems:
        return None, problems
    return DeskConfig(dispositions, keywords, streets, directory), []


def _check_streets(config_dir: Path, name: str, districts: set[str] | None,
                   problems: list[Problem]) -> tuple[Street, ...]:
    try:
        with (config_dir / name).open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        problems.append(Problem(name, "", "missing"))
        return ()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(Problem(name, "", f"cannot read: {exc}"))
        return ()
    if not rows or not {"street", "district"} <= set(rows[0]):
        problems.append(Problem(name, "", "expected the columns street,district and a row"))
        return ()
    if len(rows) > MAX_STREETS:
        problems.append(Problem(name, "", f"at most {MAX_STREETS} streets"))
        return ()
    streets: list[Street] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        street, district = (row.get("street") or "").strip(), (row.get("district") or "").strip()
        key = street_key(street)
        if not key:
            problems.append(Problem(name, f"line {line}: street", "empty street name"))
            continue
        if districts is not None and district not in districts:
            problems.append(Problem(name, f"line {line}: district",
                                    f"unknown district {district!r}"))
            continue
        if key in seen:
            problems.append(Problem(name, f"line {line}: street",
                                    f"{street!r} is listed twice (line {seen[key]})"))
            continue
        seen[key] = line
        streets.append(Street(street, district, key))
    return tuple(streets)


def _check_directory(config_dir: Path, name: str, problems: list[Problem]) -> tuple[Service, ...]:
    data = _read_toml(config_dir, name, problems)
    if data is None:
        return ()
    entries = data.get("services")
    if not isinstance(entries, list) or not entries:
        problems.append(Problem(name, "services", "expected a list of [[services]]"))
        return ()
    if len(entries) > MAX_SERVICES:
        problems.append(Problem(name, "services", f"at most {MAX_SERVICES} entries"))
        return ()
    services = []
    for i, entry in enumerate(entries):
        where = f"services[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(name, where, "expected a table"))
            continue
        bad = False
        for key in ("name", "phone"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                problems.append(Problem(name, f"{where}.{key}", "required"))
                bad = True
        phone = entry.get("phone", "")
        if isinstance(phone, str) and phone.strip() and not (
            _PHONE.fullmatch(phone.strip()) and 3 <= sum(c.isdigit() for c in phone) <= 15
        ):
            problems.append(Problem(name, f"{where}.phone",
                                    f"not a phone number: {phone!r} (3 to 15 digits)"))
            bad = True
        for key in ("description", "hours"):
            if key in entry and not isinstance(entry[key], str):
                problems.append(Problem(name, f"{where}.{key}", "expected text"))
                bad = True
        if "keywords" in entry and not _strings(entry["keywords"]):
            problems.append(Problem(name, f"{where}.keywords", "expected a list of words"))
            bad = True
        unknown = set(entry) - {"name", "phone", "description", "hours", "keywords"}
        for key in sorted(unknown):
            problems.append(Problem(name, f"{where}.{key}", "unknown key"))
            bad = True
        if not bad:
            services.append(Service(entry["name"].strip(), entry["phone"].strip(),
                                    entry.get("description", "").strip(),
                                    entry.get("hours", "").strip(),
                                    tuple(w.strip() for w in entry.get("keywords", ()))))
    return tuple(services)


def load_desk_config(
    config_dir: Path, *, categories: set[str] | None = None, districts: set[str] | None = None,
) -> DeskConfig:
    """Blocking (reads files); :class:`DeskConfigError` names every problem."""
    config, problems = check_desk_config(config_dir, categories=categories, districts=districts)
    if config is None:
        raise DeskConfigError(problems, where=str(config_dir))
    return config
