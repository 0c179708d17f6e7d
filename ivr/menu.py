"""The IVR menu configuration (``config/ivr.toml``), loaded into typed records.

Validation is strict and every error names the key at fault, because a typo
in a queue name only shows up as callers stuck in a queue nobody serves.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotline.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "ivr.toml"

_SOUND = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)*$")  # no spaces, quotes or ".."
_QUEUE = re.compile(r"^[a-z][a-z0-9_-]*$")
_DIGITS = frozenset("0123456789*#")


class IvrConfigError(ConfigError, ValueError):
    """The IVR configuration is unusable; the message names the bad key."""

    error_id = "ivr_config_invalid"


@dataclass(frozen=True)
class MenuOption:
    digit: str
    queue: str
    label_uk: str
    label_en: str


@dataclass(frozen=True)
class IvrConfig:
    greeting: tuple[str, ...]
    menu_prompt: str
    invalid_prompt: str
    timeout_ms: int
    max_attempts: int
    default_queue: str
    options: Mapping[str, MenuOption]

    def option_for(self, digit: str) -> MenuOption | None:
        return self.options.get(digit)


def load_ivr_config(path: Path | str = DEFAULT_CONFIG_PATH) -> IvrConfig:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise IvrConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise IvrConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return parse_ivr_config(data)
    except IvrConfigError as exc:
        raise IvrConfigError(f"{path}: {exc}") from exc


def parse_ivr_config(data: Mapping[str, Any]) -> IvrConfig:
    menu = _table(data, "menu", "menu")
    greeting = menu.get("greeting", [])
    if isinstance(greeting, str):
        greeting = [greeting]
    if not isinstance(greeting, list):
        raise IvrConfigError("menu.greeting: expected a sound name or a list of them")
    options_table = _table(menu, "options", "menu.options")
    if not options_table:
        raise IvrConfigError("menu.options: at least one digit is needed")
    options: dict[str, MenuOption] = {}
    for digit, entry in options_table.items():
        where = f"menu.options.{digit}"
        if digit not in _DIGITS:
            raise IvrConfigError(f"{where}: a key must be one of 0-9, * or #")
        if not isinstance(entry, Mapping):
            raise IvrConfigError(f"{where}: expected a table")
        options[digit] = MenuOption(
            digit=digit,
            queue=_queue(entry, "queue", where),
            label_uk=_text(entry, "label_uk", where),
            label_en=_text(entry, "label_en", where),
        )
    return IvrConfig(
        greeting=tuple(_sound_name(g, f"menu.greeting[{i}]") for i, g in enumerate(greeting)),
        menu_prompt=_sound_name(menu.get("prompt"), "menu.prompt"),
        invalid_prompt=_sound_name(menu.get("invalid_prompt"), "menu.invalid_prompt"),
        timeout_ms=_int(menu, "timeout_ms", "menu", 500, 60_000),
        max_attempts=_int(menu, "max_attempts", "menu", 1, 10),
        default_queue=_queue(menu, "default_queue", "menu"),
        options=options,
    )


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise IvrConfigError(f"{where}: missing table")
    return value


def _sound_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SOUND.match(value) or ".." in value:
        raise IvrConfigError(f"{where}: expected a sound name like 'hello' or 'silence/1'")
    return value


def _queue(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not _QUEUE.match(value):
        raise IvrConfigError(f"{where}.{key}: expected a queue name (lowercase, e.g. 'housing')")
    return value


def _text(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise IvrConfigError(f"{where}.{key}: expected a non-empty string")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = table.get(key)
    # bool is an int in Python; "max_attempts = true" is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise IvrConfigError(f"{where}.{key}: expected an integer from {low} to {high}")
    return value
