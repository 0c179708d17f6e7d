"""The IVR's configuration, loaded into typed records: the menu (``ivr.toml``),
its options (the queues of ``queues.toml`` that have a digit) and the words of
its prompts (``prompts.toml``).

Validation is strict and every problem names the file and the key at fault,
because a typo in a queue name only shows up as callers stuck in a queue
nobody serves. The ``check_*`` functions return every problem (for
``hotline check-config``); the loaders raise :class:`IvrConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
#: The other tables of ivr.toml: their keys, and which of them name prompts.
_TABLE_KEYS = {
    "language": frozenset({"default", "switch_digit", "offer_prompt", "lookup_timeout_ms"}),
    "status": frozenset({"digit", "enter_prompt", "not_found_prompt", "unavailable_prompt",
                         "timeout_ms", "max_digits", "max_attempts", "lookup_timeout_ms"}),
    "survey": frozenset({"share", "prompt", "thanks_prompt", "timeout_ms", "max_attempts"}),
}
_TABLE_PROMPTS = {
    "language": ("offer_prompt",),
    "status": ("enter_prompt", "not_found_prompt", "unavailable_prompt"),
    "survey": ("prompt", "thanks_prompt"),
}
#: The languages the IVR speaks (ivr/speech.py composes numbers and dates in both).
LANGUAGES = ("uk", "en")


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
class LanguageConfig:
    default: str = "uk"
    switch_digit: str = "9"
    offer_prompt: str = "hotline/language_offer"
    lookup_timeout_ms: int = 800

    def other(self, language: str) -> str:
        """The language offered to a caller who hears ``language``."""
        return next(lang for lang in LANGUAGES if lang != language)


@dataclass(frozen=True)
class StatusConfig:
    digit: str = "8"
    enter_prompt: str = "hotline/status/enter"
    not_found_prompt: str = "hotline/status/not_found"
    unavailable_prompt: str = "hotline/status/unavailable"
    timeout_ms: int = 8000
    max_digits: int = 12
    max_attempts: int = 2
    lookup_timeout_ms: int = 1500


@dataclass(frozen=True)
class SurveyConfig:
    share: float = 0.0
    prompt: str = "hotline/survey/ask"
    thanks_prompt: str = "hotline/survey/thanks"
    timeout_ms: int = 6000
    max_attempts: int = 2


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
    language: LanguageConfig = LanguageConfig()
    status: StatusConfig = StatusConfig()
    survey: SurveyConfig = SurveyConfig()

    def option_for(self, digit: str) -> MenuOption | None:
        return self.options.get(digit)

    def prompts(self) -> dict[str, str]:
        """Every sound the IVR plays, by the ``ivr.toml`` key that names it."""
        named = {f"menu.greeting[{i}]": g for i, g in enumerate(self.greeting)}
        named["menu.prompt"] = self.menu_prompt
        named["menu.invalid_prompt"] = self.invalid_prompt
        for table, keys in _TABLE_PROMPTS.items():
            section = getattr(self, table)
            named.update({f"{table}.{key}": getattr(section, key) for key in keys})
        return named


@dataclass(frozen=True)
class PromptTexts:
    """``prompts.toml``: the words of our prompts and the voice that speaks them
    (the default language), and the same prompts in the other languages."""

    language: str
    voice: str
    speed: int  # words per minute
    texts: Mapping[str, str]  # sound name (e.g. "hotline/menu") → words
    translations: Mapping[str, PromptTexts] = field(default_factory=dict)

    def by_language(self) -> dict[str, PromptTexts]:
        return {self.language: self, **self.translations}


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

    for key in [k for k in data if k != "menu" and k not in _TABLE_KEYS]:
        bad(key, "unknown key (expected [menu], [language], [status], [survey])")
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
    language, status, survey = _check_tables(data, set(options), bad)
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
        language=language,
        status=status,
        survey=survey,
    ), []


def _check_tables(
    data: Mapping[str, Any], menu_digits: set[str], bad: Callable[[str, str], None]
) -> tuple[LanguageConfig, StatusConfig, SurveyConfig]:
    """``[language]``, ``[status]``, ``[survey]``: each optional, its defaults
    those of the dataclasses; their digits must not shadow a menu option."""
    tables: dict[str, Mapping[str, Any]] = {}
    for name, keys in _TABLE_KEYS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            bad(name, "expected a table")
            table = {}
        for key in [k for k in table if k not in keys]:
            bad(f"{name}.{key}", f"unknown key (expected {', '.join(sorted(keys))})")
        tables[name] = table

    def text(name: str, key: str, default: str) -> str:
        value = tables[name].get(key, default)
        if not isinstance(value, str):
            bad(f"{name}.{key}", "expected a string")
            return default
        return value

    def number(name: str, key: str, low: int, high: int, default: int) -> int:
        if key not in tables[name]:
            return default
        return _int(tables[name], key, low, high, lambda _, r: bad(f"{name}.{key}", r))

    default_language = text("language", "default", LanguageConfig.default)
    if default_language not in LANGUAGES:
        bad("language.default", f"expected one of {', '.join(LANGUAGES)}")
    digits: dict[str, str] = {}
    for name, key, fallback in (("language", "switch_digit", LanguageConfig.switch_digit),
                                ("status", "digit", StatusConfig.digit)):
        digit = text(name, key, fallback)
        if not re.fullmatch(r"[0-9*#]", digit):
            bad(f"{name}.{key}", "expected one key: 0-9, * or #")
        elif digit in menu_digits:
            bad(f"{name}.{key}", f"digit {digit!r} is already a menu option ({CATALOGUE_FILE})")
        elif digit in digits.values():
            bad(f"{name}.{key}", f"digit {digit!r} is already language.switch_digit")
        digits[name] = digit
    language = LanguageConfig(
        default=default_language, switch_digit=digits["language"],
        offer_prompt=text("language", "offer_prompt", LanguageConfig.offer_prompt),
        lookup_timeout_ms=number("language", "lookup_timeout_ms", 50, 10_000,
                                 LanguageConfig.lookup_timeout_ms),
    )
    status = StatusConfig(
        digit=digits["status"],
        enter_prompt=text("status", "enter_prompt", StatusConfig.enter_prompt),
        not_found_prompt=text("status", "not_found_prompt", StatusConfig.not_found_prompt),
        unavailable_prompt=text("status", "unavailable_prompt", StatusConfig.unavailable_prompt),
        timeout_ms=number("status", "timeout_ms", 500, 60_000, StatusConfig.timeout_ms),
        max_digits=number("status", "max_digits", 1, 20, StatusConfig.max_digits),
        max_attempts=number("status", "max_attempts", 1, 10, StatusConfig.max_attempts),
        lookup_timeout_ms=number("status", "lookup_timeout_ms", 50, 10_000,
                                 StatusConfig.lookup_timeout_ms),
    )
    for name, prompt_keys in _TABLE_PROMPTS.items():
        for key in prompt_keys:
            if key in tables[name] and not _is_sound_name(tables[name][key]):
                bad(f"{name}.{key}", "expected a sound name like 'hotline/menu'")
    share = tables["survey"].get("share", SurveyConfig.share)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        bad("survey.share", "expected a share of calls from 0.0 to 1.0")
        share = 0.0
    survey = SurveyConfig(
        share=float(share),
        prompt=text("survey", "prompt", SurveyConfig.prompt),
        thanks_prompt=text("survey", "thanks_prompt", SurveyConfig.thanks_prompt),
        timeout_ms=number("survey", "timeout_ms", 500, 60_000, SurveyConfig.timeout_ms),
        max_attempts=number("survey", "max_attempts", 1, 10, SurveyConfig.max_attempts),
    )
    return language, status, survey


def menu_sounds(text: str) -> dict[str, str]:
    """The sound names ``ivr.toml`` plays, by key, however broken the rest is
    (so that its prompts are checked even then)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
    menu = data.get("menu")
    sounds = _sounds(menu) if isinstance(menu, Mapping) else {}
    for table, keys in _TABLE_PROMPTS.items():
        section = data.get(table)
        defaults = {"language": LanguageConfig(), "status": StatusConfig(),
                    "survey": SurveyConfig()}[table]
        for key in keys:
            value = section.get(key) if isinstance(section, Mapping) else None
            sounds[f"{table}.{key}"] = value if value is not None else getattr(defaults, key)
    return {k: v for k, v in sounds.items() if _is_sound_name(v)}


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
    text: str,
    played: Mapping[str, str] | None = None,
    *,
    languages: Iterable[str] = (),
    spoken: Mapping[str, Iterable[str]] | None = None,
) -> tuple[PromptTexts | None, list[Problem]]:
    """The prompts' words, and every problem: of ``prompts.toml`` itself, and
    of ``ivr.toml`` when it plays one of our prompts that has no words (so no
    sound file is ever made for it). ``played``: :meth:`IvrConfig.prompts`.

    ``languages``: each must have a section (the top level is the default
    language, ``[<code>]`` tables the others), and every prompt must have words
    in each section. ``spoken``: per language, prompt names composed in code
    (numbers, dates: :func:`ivr.speech.vocabulary`) that must have words too."""
    problems: list[Problem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(PROMPTS_FILE, key, reason))

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(PROMPTS_FILE, "", f"not valid TOML: {exc}")]
    sections = {k: v for k, v in data.items()
                if isinstance(v, Mapping) and k != "text" and _LANGUAGE.fullmatch(k)}
    for key in [k for k in data if k not in {"language", "voice", "speed", "text", *sections}]:
        bad(key, "unknown key (expected language, voice, speed, [text], [<language>])")
    default = _check_language(data, "", bad)
    if default is None:
        return None, problems
    translations: dict[str, PromptTexts] = {}
    for code, section in sections.items():
        for key in [k for k in section if k not in {"voice", "speed", "text"}]:
            bad(f"{code}.{key}", "unknown key (expected voice, speed, [text])")
        more = _check_language({**section, "language": code}, f"{code}.", bad)
        if more is not None:
            translations[code] = more
    every = {default.language: default, **translations}
    for code in languages:
        if code not in every:
            bad(code, f"no prompts in language {code!r}: add a [{code}] table with its [text]")
    names = set().union(*(p.texts for p in every.values()))
    # The words numbers are made of differ by language (дві, тисячі; hundred).
    own_words = set().union(*(spoken or {}).values())
    for code, prompts in every.items():
        where = "text" if code == default.language else f"{code}.text"
        for name in sorted(names - own_words - prompts.texts.keys()):
            bad(f"{where}.{_toml_key(name)}", f"missing: the prompt has words in another "
                                              f"language but not in {code!r}")
        for name in sorted(set((spoken or {}).get(code, ())) - prompts.texts.keys()):
            bad(f"{where}.{_toml_key(name)}", "missing: numbers, dates and appeal statuses "
                                              "are composed from it (ivr/speech.py)")
    if played is not None:
        for key, sound in played.items():
            if sound.startswith(OWN_PROMPTS) and sound not in names:
                problems.append(Problem(
                    IVR_FILE, key, f"unknown prompt {sound!r}: {PROMPTS_FILE} has no words "
                                   "for it, so it never gets a sound file"))
    if problems:
        return None, problems
    return dataclasses.replace(default, translations=translations), []


def _check_language(
    data: Mapping[str, Any], prefix: str, bad: Callable[[str, str], None]
) -> PromptTexts | None:
    """One language's voice, speed and words (``prefix``: ``""`` or ``"en."``)."""
    language, voice = data.get("language", "uk"), data.get("voice", data.get("language", "uk"))
    for key, value in (("language", language), ("voice", voice)):
        if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
            bad(f"{prefix}{key}", f"expected a language code like 'uk', got {value!r}")
    speed = data.get("speed", 150)
    if not isinstance(speed, int) or isinstance(speed, bool) or not 80 <= speed <= 450:
        bad(f"{prefix}speed",
            f"expected words per minute, an integer from 80 to 450, got {speed!r}")
        speed = 150
    texts = data.get("text")
    if not isinstance(texts, Mapping) or not texts:
        bad(f"{prefix}text", "a [text] table with at least one prompt is needed")
        texts = {}
    words: dict[str, str] = {}
    for name, value in texts.items():
        key = f"{prefix}text.{_toml_key(name)}"
        if not _is_sound_name(name) or not name.startswith(OWN_PROMPTS):
            bad(key, f"expected a sound name under {OWN_PROMPTS} (apart from Asterisk's own "
                     "sounds), e.g. 'hotline/greeting'")
        elif not isinstance(value, str) or not value.strip():
            bad(key, "expected the words to speak")
        else:
            words[name] = value
    return PromptTexts(str(language), str(voice), int(speed), words)


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'
