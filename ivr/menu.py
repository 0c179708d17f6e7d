"""The IVR's configuration, loaded into typed records: the menu (``ivr.toml``),
its options (the queues of ``queues.toml`` that have a digit) and the words of
its prompts (``prompts.toml``).

Validation is strict and every problem names the file and the key at fault,
because a typo in a queue name only shows up as callers stuck in a queue
nobody serves. The ``check_*`` functions return every problem (for
``hotline check-config``); the loaders raise :class:`IvrConfigError`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotline.core.problems import ConfigProblems, Problem
from hotline.core.queues import CATALOGUE_FILE, QueueCatalogue, check_catalogue

IVR_FILE = "ivr.toml"
PROMPTS_FILE = "prompts.toml"
#: Our own prompts (spoken from prompts.toml) live here, apart from Asterisk's sounds.
OWN_PROMPTS = "hotline/"
#: Where the menu sentence goes in a prompt's words.
OPTIONS_PLACEHOLDER = "{options}"

_SOUND = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)*$")  # no spaces, quotes or ".."
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]+)*")  # uk, en-us, …
_MENU_KEYS = frozenset(
    {"greeting", "prompt", "invalid_prompt", "timeout_ms", "max_attempts", "default_queue"}
)


class IvrConfigError(ConfigProblems, ValueError):
    """The IVR configuration is unusable; the message names the file and the key."""

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
    queues: QueueCatalogue

    def option_for(self, digit: str) -> MenuOption | None:
        return self.options.get(digit)

    def prompts(self) -> dict[str, str]:
        """Every sound the menu plays, by the ``ivr.toml`` key that names it."""
        named = {f"menu.greeting[{i}]": g for i, g in enumerate(self.greeting)}
        named["menu.prompt"] = self.menu_prompt
        named["menu.invalid_prompt"] = self.invalid_prompt
        return named


@dataclass(frozen=True)
class PromptTexts:
    """``prompts.toml``: the words of our prompts and the voice that speaks them."""

    language: str
    voice: str
    speed: int  # words per minute
    texts: Mapping[str, str]  # sound name (e.g. "hotline/menu") → words


def read_config_file(config_dir: Path, name: str) -> tuple[str | None, list[Problem]]:
    """The text of ``config_dir/name``, or the problem of reading it."""
    try:
        return (config_dir / name).read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem(name, "", f"cannot read: {reason}")]


def load_catalogue(config_dir: Path) -> QueueCatalogue:
    text, problems = read_config_file(config_dir, CATALOGUE_FILE)
    catalogue, more = check_catalogue(text) if text is not None else (None, [])
    problems += more
    if problems or catalogue is None:
        raise IvrConfigError(problems, where=str(config_dir))
    return catalogue


def load_ivr_config(config_dir: Path) -> IvrConfig:
    """The menu from ``ivr.toml`` and ``queues.toml`` in ``config_dir``."""
    catalogue = load_catalogue(config_dir)
    text, problems = read_config_file(config_dir, IVR_FILE)
    config = None
    if text is not None:
        config, problems = check_ivr_text(text, catalogue)
    if problems or config is None:
        raise IvrConfigError(problems, where=str(config_dir))
    return config


def check_ivr_text(text: str, catalogue: QueueCatalogue) -> tuple[IvrConfig | None, list[Problem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(IVR_FILE, "", f"not valid TOML: {exc}")]
    return check_ivr_config(data, catalogue)


def parse_ivr_config(data: Mapping[str, Any], catalogue: QueueCatalogue) -> IvrConfig:
    config, problems = check_ivr_config(data, catalogue)
    if problems or config is None:
        raise IvrConfigError(problems)
    return config


def check_ivr_config(
    data: Mapping[str, Any], catalogue: QueueCatalogue
) -> tuple[IvrConfig | None, list[Problem]]:
    """The menu as far as it can be read, and every problem of ``ivr.toml``."""
    problems: list[Problem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(IVR_FILE, key, reason))

    for key in [k for k in data if k != "menu"]:
        bad(key, "unknown key (expected [menu])")
    menu = data.get("menu")
    if not isinstance(menu, Mapping):
        bad("menu", "missing table")
        return None, problems
    for key in [k for k in menu if k not in _MENU_KEYS]:
        if key == "options":
            bad("menu.options", f"the menu's digits and labels live in {CATALOGUE_FILE} now "
                                "(queues.<name>.digit, label_uk, label_en)")
        else:
            bad(f"menu.{key}", f"unknown key (expected {', '.join(sorted(_MENU_KEYS))})")

    greeting = menu.get("greeting", [])
    if isinstance(greeting, str):
        greeting = [greeting]
    if not isinstance(greeting, list):
        bad("menu.greeting", "expected a sound name or a list of them")
    for key, value in _sounds(menu).items():
        if not _is_sound_name(value):
            bad(key, "expected a sound name like 'hello' or 'silence/1'")

    default_queue = menu.get("default_queue")
    if not isinstance(default_queue, str) or default_queue not in catalogue.queues:
        bad("menu.default_queue", f"unknown queue {default_queue!r} "
                                  f"({CATALOGUE_FILE} has {', '.join(catalogue.names)})")
    options = {
        digit: MenuOption(digit, q.name, q.label_uk, q.label_en)
        for digit, q in catalogue.by_digit().items()
    }
    if not options:
        problems.append(Problem(CATALOGUE_FILE, "queues",
                                "no queue has a digit: the IVR menu would offer nothing"))
    timeout_ms = _int(menu, "timeout_ms", 500, 60_000, bad)
    max_attempts = _int(menu, "max_attempts", 1, 10, bad)
    if problems:
        return None, problems
    return IvrConfig(
        greeting=tuple(greeting),
        menu_prompt=str(menu["prompt"]),
        invalid_prompt=str(menu["invalid_prompt"]),
        timeout_ms=timeout_ms,
        max_attempts=max_attempts,
        default_queue=str(default_queue),
        options=options,
        queues=catalogue,
    ), []


def menu_sounds(text: str) -> dict[str, str]:
    """The sound names ``ivr.toml`` plays, by key, however broken the rest is
    (so that its prompts are checked even then)."""
    try:
        menu = tomllib.loads(text).get("menu")
    except tomllib.TOMLDecodeError:
        return {}
    if not isinstance(menu, Mapping):
        return {}
    return {k: v for k, v in _sounds(menu).items() if _is_sound_name(v)}


def _sounds(menu: Mapping[str, Any]) -> dict[str, Any]:
    greeting = menu.get("greeting", [])
    if isinstance(greeting, str):
        greeting = [greeting]
    sounds = {f"menu.greeting[{i}]": g for i, g in enumerate(greeting)} if isinstance(
        greeting, list) else {}
    sounds["menu.prompt"] = menu.get("prompt")
    sounds["menu.invalid_prompt"] = menu.get("invalid_prompt")
    return sounds


def _is_sound_name(value: Any) -> bool:
    return isinstance(value, str) and bool(_SOUND.match(value)) and ".." not in value


def _int(
    table: Mapping[str, Any], key: str, low: int, high: int, bad: Callable[[str, str], None]
) -> int:
    value = table.get(key)
    # bool is an int in Python; "max_attempts = true" is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        bad(f"menu.{key}", f"expected an integer from {low} to {high}")
        return low
    return value


# --- prompts.toml -------------------------------------------------------------------


def check_prompts(
    text: str, played: Mapping[str, str] | None = None
) -> tuple[PromptTexts | None, list[Problem]]:
    """The prompts' words, and every problem: of ``prompts.toml`` itself, and
    of ``ivr.toml`` when it plays one of our prompts that has no words (so no
    sound file is ever made for it). ``played``: :meth:`IvrConfig.prompts`."""
    problems: list[Problem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(PROMPTS_FILE, key, reason))

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(PROMPTS_FILE, "", f"not valid TOML: {exc}")]
    for key in [k for k in data if k not in {"language", "voice", "speed", "text"}]:
        bad(key, "unknown key (expected language, voice, speed, [text])")
    language, voice = data.get("language", "uk"), data.get("voice", "uk")
    for key, value in (("language", language), ("voice", voice)):
        if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
            bad(key, f"expected a language code like 'uk', got {value!r}")
    speed = data.get("speed", 150)
    if not isinstance(speed, int) or isinstance(speed, bool) or not 80 <= speed <= 450:
        bad("speed", f"expected words per minute, an integer from 80 to 450, got {speed!r}")
    texts = data.get("text")
    if not isinstance(texts, Mapping) or not texts:
        bad("text", "a [text] table with at least one prompt is needed")
        texts = {}
    words: dict[str, str] = {}
    for name, value in texts.items():
        key = f"text.{_toml_key(name)}"
        if not _is_sound_name(name) or not name.startswith(OWN_PROMPTS):
            bad(key, f"expected a sound name under {OWN_PROMPTS} (apart from Asterisk's own "
                     "sounds), e.g. 'hotline/greeting'")
        elif not isinstance(value, str) or not value.strip():
            bad(key, "expected the words to speak")
        else:
            words[name] = value
    if played is not None:
        for key, sound in played.items():
            if sound.startswith(OWN_PROMPTS) and sound not in texts:
                problems.append(Problem(
                    IVR_FILE, key, f"unknown prompt {sound!r}: {PROMPTS_FILE} has no words "
                                   "for it, so it never gets a sound file"))
    if problems:
        return None, problems
    return PromptTexts(str(language), str(voice), int(speed), words), []


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'
