"""Numbers and dates as lists of prompt names, composed by each language's grammar.

Asterisk's ``SayNumber``/``SayDate`` know no Ukrainian (``uk`` falls back to
English rules and sounds that do not exist), so the IVR composes the words from
its own recorded prompts: ``hotline/num/*`` (cardinals), ``hotline/ord/*``
(ordinals in the genitive, for the day of a date), ``hotline/month/*`` (months
in the genitive) and ``hotline/num/thousand_*`` / ``million_*`` (the forms
for one / two to four / five and more). Their words are in ``prompts.toml``
for both languages; :func:`vocabulary` lists every name these functions can
return, and ``hotline check-config`` checks each has words in every language.

Ukrainian grammar used here:
- the last word of a number agrees in gender with what is counted: один
  (masculine) / одна (feminine) / одне (neuter); два (masculine, neuter) / дві
  (feminine); thousands are feminine (дві тисячі), millions masculine;
- the counted noun takes one of three forms by the number's ending
  (:func:`plural_form`): 1, 21, 101 → ``one`` (тисяча); 2–4, 22–24 → ``few``
  (тисячі); 0, 5–20, 25–30, 111–114 → ``many`` (тисяч);
- a date is the ordinal day in the genitive and the month in the genitive
  ("до двадцять п'ятого грудня"): only the last word of a compound ordinal is
  ordinal (двадцять + п'ятого).
English: "twenty one", "three hundred five", "December twenty fifth".
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from hotline.core.appeals import AppealStatus

Gender = Literal["m", "f", "n"]
PluralForm = Literal["one", "few", "many"]

LANGUAGES = ("uk", "en")
NUM = "hotline/num/"
ORD = "hotline/ord/"
MONTH = "hotline/month/"
STATUS = "hotline/status/"
#: Spoken from the taxonomy's names (hotline/devtools/prompts.py makes them).
CATEGORY = "hotline/category/"
EXECUTOR = "hotline/executor/"
#: The sentences of the status flow, composed with numbers, dates and names:
#: "У вас | два | відкриті звернення. | Останнє — щодо | <category> | у роботі. |
#: Виконавець — | <executor>. | Термін — до | п'ятого | грудня."
PHRASES = tuple(f"{STATUS}{p}" for p in (
    "you_have", "open_one", "open_few", "open_many", "latest_about", "appeal_about",
    "latest", "appeal", "executor", "due",
))
#: The largest number spoken (appeal counts, days, years, appeal numbers in parts).
MAX_NUMBER = 999_999_999

_TENS = (20, 30, 40, 50, 60, 70, 80, 90)
_HUNDREDS = (100, 200, 300, 400, 500, 600, 700, 800, 900)


class SpeechError(ValueError):
    """A number or language the IVR cannot speak."""


def plural_form(n: int) -> PluralForm:
    """Which form of the counted noun follows ``n`` in Ukrainian."""
    n = abs(n)
    if 11 <= n % 100 <= 14:
        return "many"
    if n % 10 == 1:
        return "one"
    if 2 <= n % 10 <= 4:
        return "few"
    return "many"


def _check(n: int, lang: str) -> None:
    if lang not in LANGUAGES:
        raise SpeechError(f"no speech for language {lang!r} (expected {', '.join(LANGUAGES)})")
    if not 0 <= n <= MAX_NUMBER:
        raise SpeechError(f"cannot speak {n}: expected 0 to {MAX_NUMBER}")


def speak_number(n: int, lang: str = "uk", gender: Gender = "m") -> list[str]:
    """The prompt names that say ``n`` (a cardinal) agreeing with ``gender``."""
    _check(n, lang)
    if n == 0:
        return [f"{NUM}0"]
    if lang == "en":
        return _en_number(n)
    words: list[str] = []
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    if millions:
        words += [*_uk_below_1000(millions, "m"), f"{NUM}million_{plural_form(millions)}"]
    if thousands:
        words += [*_uk_below_1000(thousands, "f"), f"{NUM}thousand_{plural_form(thousands)}"]
    if units:
        words += _uk_below_1000(units, gender)
    return words


def _uk_below_1000(n: int, gender: Gender) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [f"{NUM}{hundreds * 100}"] if hundreds else []
    if 10 <= rest <= 19:
        return [*words, f"{NUM}{rest}"]
    tens, unit = divmod(rest, 10)
    if tens:
        words.append(f"{NUM}{tens * 10}")
    if unit:
        words.append(_uk_unit(unit, gender))
    return words


def _uk_unit(unit: int, gender: Gender) -> str:
    if unit == 1 and gender != "m":
        return f"{NUM}1{gender}"  # одна / одне
    if unit == 2 and gender == "f":
        return f"{NUM}2f"  # дві
    return f"{NUM}{unit}"


def _en_number(n: int) -> list[str]:
    words: list[str] = []
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    if millions:
        words += [*_en_below_1000(millions), f"{NUM}million_one"]
    if thousands:
        words += [*_en_below_1000(thousands), f"{NUM}thousand_one"]
    if units:
        words += _en_below_1000(units)
    return words


def _en_below_1000(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    # English prompts: hotline/num/100 is "one hundred", hotline/num/hundred "hundred".
    words = [f"{NUM}{hundreds}", f"{NUM}hundred"] if hundreds else []
    if 1 <= rest <= 19:
        return [*words, f"{NUM}{rest}"]
    tens, unit = divmod(rest, 10)
    if tens:
        words.append(f"{NUM}{tens * 10}")
    if unit:
        words.append(f"{NUM}{unit}")
    return words


def speak_ordinal(n: int, lang: str = "uk") -> list[str]:
    """The ordinal ``n`` (1–99) — Ukrainian in the masculine genitive (п'ятого)."""
    _check(n, lang)
    if not 1 <= n <= 99:
        raise SpeechError(f"ordinals are spoken from 1 to 99, not {n}")
    if n <= 19 or n % 10 == 0:
        return [f"{ORD}{n}"]
    tens, unit = divmod(n, 10)
    return [f"{NUM}{tens * 10}", f"{ORD}{unit}"]


def speak_date(d: date, lang: str = "uk", *, year: bool = False) -> list[str]:
    """``d`` as a due date: "п'ятого грудня" / "December fifth"; with ``year``
    Ukrainian adds the ordinal year and "року" (2001–2099)."""
    if lang not in LANGUAGES:
        raise SpeechError(f"no speech for language {lang!r} (expected {', '.join(LANGUAGES)})")
    month = f"{MONTH}{d.month}"
    day = speak_ordinal(d.day, lang)
    words = [*day, month] if lang == "uk" else [month, *day]
    if year:
        words += _year(d.year, lang)
    return words


def _year(y: int, lang: str) -> list[str]:
    if lang == "en":
        return speak_number(y, "en")
    if not 2001 <= y <= 2099:
        raise SpeechError(f"years are spoken from 2001 to 2099, not {y}")
    # "дві тисячі двадцять сьомого року": only the last word is an ordinal.
    return speak_number(2000, "uk") + speak_ordinal(y - 2000, "uk") + [f"{MONTH}year"]


def status_prompt(status: AppealStatus) -> str:
    """The words for an appeal's status ("у роботі" / "is in progress")."""
    return f"{STATUS}is_{status.value}"


def open_appeals_prompt(n: int, lang: str) -> str:
    """"відкрите звернення" / "відкриті звернення" / "відкритих звернень" after ``n``."""
    if lang == "en":
        return f"{STATUS}open_one" if n == 1 else f"{STATUS}open_many"
    return f"{STATUS}open_{plural_form(n)}"


def vocabulary(lang: str) -> frozenset[str]:
    """Every prompt name the functions above can return for ``lang``."""
    if lang not in LANGUAGES:
        raise SpeechError(f"no speech for language {lang!r}")
    names = {f"{NUM}{n}" for n in range(20)} | {f"{NUM}{t}" for t in _TENS}
    names |= {f"{ORD}{n}" for n in range(1, 20)} | {f"{ORD}{t}" for t in (10, *_TENS)}
    names |= {f"{MONTH}{m}" for m in range(1, 13)}
    if lang == "uk":
        names |= {f"{NUM}{h}" for h in _HUNDREDS} | {f"{NUM}1f", f"{NUM}1n", f"{NUM}2f"}
        names |= {f"{NUM}{big}_{form}" for big in ("thousand", "million")
                  for form in ("one", "few", "many")}
        names.add(f"{MONTH}year")
    else:
        names |= {f"{NUM}hundred", f"{NUM}thousand_one", f"{NUM}million_one"}
    names |= set(PHRASES) | {status_prompt(s) for s in AppealStatus}
    return frozenset(names)
