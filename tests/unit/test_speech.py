"""Numbers and dates composed from prompts, by Ukrainian and English grammar."""

from __future__ import annotations

from datetime import date

import pytest

from ivr.speech import (
    SpeechError,
    open_appeals_prompt,
    plural_form,
    speak_date,
    speak_number,
    speak_ordinal,
    vocabulary,
)


def words(names: list[str]) -> list[str]:
    """``hotline/num/20`` → ``num/20``: shorter expectations."""
    return [n.removeprefix("hotline/") for n in names]


@pytest.mark.parametrize(
    ("n", "form"),
    [(0, "many"), (1, "one"), (2, "few"), (4, "few"), (5, "many"), (11, "many"), (12, "many"),
     (14, "many"), (20, "many"), (21, "one"), (22, "few"), (25, "many"), (101, "one"),
     (111, "many"), (112, "many"), (1001, "one"), (1012, "many"), (1024, "few")],
)
def test_plural_form_follows_the_last_digits(n: int, form: str) -> None:
    assert plural_form(n) == form


@pytest.mark.parametrize(
    ("n", "gender", "expected"),
    [
        (0, "m", ["num/0"]),
        (1, "m", ["num/1"]),  # один
        (1, "f", ["num/1f"]),  # одна
        (1, "n", ["num/1n"]),  # одне
        (2, "m", ["num/2"]),  # два
        (2, "n", ["num/2"]),  # два (звернення)
        (2, "f", ["num/2f"]),  # дві
        (5, "f", ["num/5"]),
        (11, "f", ["num/11"]),  # одинадцять: no gender in the teens
        (12, "f", ["num/12"]),
        (20, "m", ["num/20"]),
        (21, "f", ["num/20", "num/1f"]),  # двадцять одна
        (42, "f", ["num/40", "num/2f"]),  # сорок дві
        (100, "m", ["num/100"]),
        (215, "m", ["num/200", "num/15"]),
        (999, "m", ["num/900", "num/90", "num/9"]),
    ],
)
def test_ukrainian_numbers_agree_in_gender(n: int, gender: str, expected: list[str]) -> None:
    assert words(speak_number(n, "uk", gender)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1000, ["num/1f", "num/thousand_one"]),  # одна тисяча
        (2000, ["num/2f", "num/thousand_few"]),  # дві тисячі
        (4000, ["num/4", "num/thousand_few"]),  # чотири тисячі
        (5000, ["num/5", "num/thousand_many"]),  # п'ять тисяч
        (11000, ["num/11", "num/thousand_many"]),  # одинадцять тисяч
        (21000, ["num/20", "num/1f", "num/thousand_one"]),  # двадцять одна тисяча
        (22001, ["num/20", "num/2f", "num/thousand_few", "num/1"]),
        (112000, ["num/100", "num/12", "num/thousand_many"]),
        (2026, ["num/2f", "num/thousand_few", "num/20", "num/6"]),
        (1_000_000, ["num/1", "num/million_one"]),  # один мільйон: masculine
        (2_000_000, ["num/2", "num/million_few"]),  # два мільйони
        (5_002_000, ["num/5", "num/million_many", "num/2f", "num/thousand_few"]),
    ],
)
def test_ukrainian_thousands_and_millions(n: int, expected: list[str]) -> None:
    assert words(speak_number(n, "uk")) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, ["num/0"]),
        (7, ["num/7"]),
        (13, ["num/13"]),
        (21, ["num/20", "num/1"]),
        (305, ["num/3", "num/hundred", "num/5"]),
        (2026, ["num/2", "num/thousand_one", "num/20", "num/6"]),
    ],
)
def test_english_numbers(n: int, expected: list[str]) -> None:
    assert words(speak_number(n, "en")) == expected


@pytest.mark.parametrize(
    ("d", "lang", "expected"),
    [
        (date(2026, 12, 1), "uk", ["ord/1", "month/12"]),  # першого грудня
        (date(2026, 12, 5), "uk", ["ord/5", "month/12"]),  # п'ятого грудня
        (date(2026, 3, 11), "uk", ["ord/11", "month/3"]),  # одинадцятого березня
        (date(2026, 1, 20), "uk", ["ord/20", "month/1"]),  # двадцятого січня
        (date(2026, 2, 23), "uk", ["num/20", "ord/3", "month/2"]),  # двадцять третього лютого
        (date(2026, 8, 30), "uk", ["ord/30", "month/8"]),
        (date(2026, 8, 31), "uk", ["num/30", "ord/1", "month/8"]),  # тридцять першого серпня
        (date(2026, 12, 25), "en", ["month/12", "num/20", "ord/5"]),  # December twenty fifth
        (date(2026, 7, 4), "en", ["month/7", "ord/4"]),
    ],
)
def test_dates_are_ordinal_day_and_month(d: date, lang: str, expected: list[str]) -> None:
    assert words(speak_date(d, lang)) == expected


def test_a_date_of_another_year_says_the_year_as_an_ordinal() -> None:
    # "п'ятого січня дві тисячі двадцять сьомого року"
    assert words(speak_date(date(2027, 1, 5), "uk", year=True)) == [
        "ord/5", "month/1", "num/2f", "num/thousand_few", "num/20", "ord/7", "month/year"]
    assert words(speak_date(date(2030, 1, 5), "uk", year=True))[-2:] == ["ord/30", "month/year"]


def test_open_appeals_noun_form() -> None:
    assert [open_appeals_prompt(n, "uk").rsplit("/", 1)[1] for n in (1, 2, 5, 21, 24, 11)] == [
        "open_one", "open_few", "open_many", "open_one", "open_few", "open_many"]
    assert open_appeals_prompt(2, "en").endswith("open_many")


def test_every_composed_prompt_is_in_the_vocabulary() -> None:
    for lang in ("uk", "en"):
        vocab = vocabulary(lang)
        for n in [*range(0, 1200), 2026, 21000, 999_999, 5_002_000, 999_999_999]:
            for gender in ("m", "f", "n"):
                spoken = speak_number(n, lang, gender)
                assert set(spoken) <= vocab, (n, lang, gender)
        for day in range(1, 32):
            assert set(speak_date(date(2026, 1 if day <= 31 else 2, day), lang, year=True)) <= vocab


def test_what_cannot_be_spoken_is_refused() -> None:
    with pytest.raises(SpeechError):
        speak_number(-1)
    with pytest.raises(SpeechError):
        speak_number(1, "de")
    with pytest.raises(SpeechError):
        speak_ordinal(100)
    with pytest.raises(SpeechError):
        speak_date(date(2100, 1, 1), "uk", year=True)
