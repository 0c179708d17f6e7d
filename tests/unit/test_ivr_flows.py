"""The language, appeal status and survey flows through the real FastAGI server
and an Asterisk-like client, with in-memory ports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hotline.core.appeals import AppealStatus, AppealSummary
from hotline.core.records import IvrStep
from ivr.flows import build_routes
from ivr.flows.appeal_status import appeal_number_from_digits
from ivr.flows.survey import sampled
from ivr.menu import IvrConfig, SurveyConfig, load_ivr_config
from ivr.server import FastAgiServer
from tests.support.fake_agi_client import FakeAsterisk, menu_responder
from tests.support.paths import CONFIG_DIR

CALLER = "380441234567"  # the fake client's agi_callerid


class MemoryJournal:
    def __init__(self) -> None:
        self.steps: list[IvrStep] = []

    async def record_step(self, step: IvrStep) -> None:
        self.steps.append(step)

    def names(self) -> list[str]:
        return [s.step for s in self.steps]


@pytest.fixture(scope="module")
def config() -> IvrConfig:
    return load_ivr_config(CONFIG_DIR)


class Languages:
    def __init__(self, known: dict[str, str] | None = None, *, broken: bool = False) -> None:
        self.known = dict(known or {})
        self.broken = broken

    async def preferred_language(self, phone: str) -> str | None:
        if self.broken:
            raise ConnectionRefusedError("postgres is down")
        return self.known.get(phone)

    async def remember_language(self, phone: str, language: str) -> None:
        if self.broken:
            await asyncio.Event().wait()  # hangs: the flow's timeout must cut it
        self.known[phone] = language


def summary(number: str, status: AppealStatus = AppealStatus.IN_PROGRESS,
            created: int = 1, **kw: Any) -> AppealSummary:
    fields: dict[str, Any] = dict(
        id=created, number=number, status=status, category_code="no_hot_water",
        category_name_uk="Відсутність ГВП", category_name_en="No hot water",
        executor_code="rda_obolonskyi", executor_name="Obolonskyi", executor_name_uk="Оболонська",
        # this year's: the year is then not said
        due_at=datetime(datetime.now(UTC).year, 12, 5, 10, 0, tzinfo=UTC),
        created_at=datetime(2026, 11, created, tzinfo=UTC),
        updated_at=datetime(2026, 11, created, tzinfo=UTC))
    fields.update(kw)
    return AppealSummary(**fields)


class Lookup:
    """Appeals by their citizens' phones, as the case store answers."""

    def __init__(self, owners: dict[str, list[AppealSummary]], *, broken: bool = False) -> None:
        self.owners = owners
        self.broken = broken
        self.asked: list[tuple[str, ...]] = []

    async def open_appeals_of_phone(self, phone: str, *, limit: int = 5) -> list[AppealSummary]:
        self.asked.append(("open", phone))
        if self.broken:
            raise ConnectionRefusedError("postgres is down")
        return sorted(self.owners.get(phone, []), key=lambda a: a.created_at, reverse=True)

    async def appeal_for_caller(self, number: str, phone: str) -> AppealSummary | None:
        self.asked.append(("number", number, phone))
        if self.broken:
            await asyncio.Event().wait()
        return next((a for a in self.owners.get(phone, []) if a.number == number), None)


class Surveys:
    def __init__(self) -> None:
        self.scores: list[tuple[str, str, int, str]] = []

    async def record_survey(self, server: str, uniqueid: str, score: int, operator: str) -> bool:
        self.scores.append((server, uniqueid, score, operator))
        return True


Responder = Callable[[str], list[str]]


def responder(get_data: list[str], stream: dict[str, str] | None = None) -> Responder:
    """``menu_responder`` plus scripted STREAM FILE replies (``sound → reply``)."""
    base = menu_responder(get_data)

    def respond(command: str) -> list[str]:
        for sound, reply in (stream or {}).items():
            if command.startswith(f'STREAM FILE "{sound}"'):
                return reply.split("|")
        return base(command)

    return respond


async def call(
    config: IvrConfig, respond: Responder, *, route: str = "ivr", callerid: str = CALLER,
    language: str = "uk", args: tuple[str, ...] = (), **ports: Any,
) -> tuple[list[str], MemoryJournal]:
    journal = MemoryJournal()
    routes = build_routes(config, journal, "pbx-1", **ports)
    server = FastAgiServer(routes, "127.0.0.1", 0)
    await server.start()
    try:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env(route, callerid=callerid, args=args,
                           extra={"agi_language": language})
        commands = await agi.converse(respond)
        await agi.close()
    finally:
        await server.stop()
    return commands, journal


def streamed(commands: list[str]) -> list[str]:
    return [c.split('"')[1] for c in commands if c.startswith("STREAM FILE")]


def steps(journal: MemoryJournal, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [(s.step, s.detail) for s in journal.steps if s.step.startswith(prefix)]


# --- language ------------------------------------------------------------------------


async def test_remembered_english_is_spoken_first_and_ukrainian_offered(
    config: IvrConfig,
) -> None:
    languages = Languages({CALLER: "en"})
    commands, journal = await call(config, responder(["200 result=1"]), languages=languages)
    assert commands[1] == 'SET VARIABLE "CHANNEL(language)" "en"'  # before the greeting
    offer = commands.index('STREAM FILE "hotline/language_offer" "012398"')
    assert commands[offer - 1:offer + 2:2] == [
        'SET VARIABLE "CHANNEL(language)" "uk"', 'SET VARIABLE "CHANNEL(language)" "en"']
    assert steps(journal, "language.start") == [
        ("language.start", {"language": "en", "source": "remembered"})]


async def test_switch_digit_during_the_offer_switches_and_remembers(config: IvrConfig) -> None:
    languages = Languages()
    respond = responder(["200 result=2"], {"hotline/language_offer": "200 result=57 endpos=100"})
    commands, journal = await call(config, respond, languages=languages)
    assert languages.known == {CALLER: "en"}
    after_offer = commands[commands.index('STREAM FILE "hotline/language_offer" "012398"') + 1:]
    assert after_offer[:2] == ['SET VARIABLE "CHANNEL(language)" "uk"',
                               'SET VARIABLE "CHANNEL(language)" "en"']
    assert steps(journal, "language.choice") == [
        ("language.choice", {"language": "en", "from": "uk", "remembered": True})]
    assert 'SET VARIABLE "HOTLINE_QUEUE" "transport"' in commands


async def test_switch_digit_in_the_menu_replays_the_menu_in_the_other_language(
    config: IvrConfig,
) -> None:
    commands, journal = await call(config, responder(["200 result=9", "200 result=3"]),
                                   languages=Languages())
    assert sum(c.startswith('GET DATA "hotline/menu"') for c in commands) == 2
    assert [s.step for s in journal.steps if s.step in {"invalid", "timeout"}] == []
    assert 'SET VARIABLE "HOTLINE_QUEUE" "social"' in commands


async def test_language_store_down_means_the_default_language_not_silence(
    config: IvrConfig,
) -> None:
    languages = Languages(broken=True)
    respond = responder(["200 result=9", "200 result=1"])
    commands, journal = await call(config, respond, languages=languages)
    assert steps(journal, "language.start")[0][1] == {"language": "uk", "source": "lookup_failed"}
    # remembering hangs: the caller still gets the menu in English and a queue
    assert steps(journal, "language.choice")[0][1]["remembered"] is False
    assert 'SET VARIABLE "HOTLINE_QUEUE" "housing"' in commands


async def test_anonymous_caller_is_not_looked_up(config: IvrConfig) -> None:
    languages = Languages({"": "en"})
    lookup = Lookup({"": [summary("1551-2026-000001")]})
    commands, journal = await call(config, responder(["200 result=1"]), callerid="unknown",
                                   languages=languages, appeals=lookup)
    assert lookup.asked == []
    assert steps(journal, "language.start")[0][1]["source"] == "anonymous"
    assert not any("hotline/status/" in s for s in streamed(commands))


# --- appeal status -------------------------------------------------------------------


async def test_open_appeals_are_announced_before_the_menu(config: IvrConfig) -> None:
    lookup = Lookup({CALLER: [summary("1551-2026-000007", created=2),
                              summary("1551-2026-000003", AppealStatus.ROUTED, created=1)]})
    commands, journal = await call(config, responder(["200 result=0"]), appeals=lookup)
    said = streamed(commands)
    start = said.index("hotline/status/you_have")
    assert said[start:] == [
        "hotline/status/you_have", "hotline/num/2", "hotline/status/open_few",  # два відкриті
        "hotline/status/latest_about", "hotline/category/no_hot_water",
        "hotline/status/is_in_progress",
        "hotline/status/executor", "hotline/executor/rda_obolonskyi",
        "hotline/status/due", "hotline/ord/5", "hotline/month/12",  # до п'ятого грудня
    ]
    assert steps(journal, "status.open") == [("status.open", {
        "count": 2, "appeal": "1551-2026-000007", "status": "in_progress",
        "prompts": said[start:]})]
    assert journal.names().index("status.open") < journal.names().index("menu")


async def test_a_digit_during_the_announcement_chooses_the_queue(config: IvrConfig) -> None:
    lookup = Lookup({CALLER: [summary("1551-2026-000007")]})
    respond = responder([], {"hotline/status/latest_about": "200 result=49 endpos=10"})
    commands, journal = await call(config, respond, appeals=lookup)
    assert not any(c.startswith("GET DATA") for c in commands)
    assert 'SET VARIABLE "HOTLINE_QUEUE" "housing"' in commands
    assert steps(journal, "status.skip") == [("status.skip", {"digit": "1"})]


async def test_own_appeal_is_read_by_its_number(config: IvrConfig) -> None:
    lookup = Lookup({CALLER: [summary("1551-2026-000123", AppealStatus.DONE)]})
    respond = responder(["200 result=8", "200 result=123", "200 result=0"])
    commands, journal = await call(config, respond, appeals=lookup)
    assert ("number", "1551-2026-000123", CALLER) in lookup.asked
    said = streamed(commands)
    read = said.index("hotline/status/appeal_about")
    assert said[read:read + 3] == ["hotline/status/appeal_about",
                                   "hotline/category/no_hot_water", "hotline/status/is_done"]
    assert "hotline/status/due" not in said[read:]  # a finished appeal has no due date to say
    assert steps(journal, "status.read") == [("status.read", {
        "appeal": "1551-2026-000123", "status": "done", "prompts": said[read:read + 5]})]
    assert 'SET VARIABLE "HOTLINE_QUEUE" "main"' in commands


async def test_status_digit_during_the_greeting_asks_for_the_number(config: IvrConfig) -> None:
    lookup = Lookup({CALLER: [summary("1551-2026-000123")]})
    respond = responder(["200 result=123", "200 result=1"],
                        {"hotline/greeting": "200 result=56 endpos=10"})  # '8'
    commands, journal = await call(config, respond, appeals=lookup)
    assert [c.split()[2] for c in commands if c.startswith("GET DATA")] == [
        '"hotline/status/enter"', '"hotline/menu"']
    assert [s for s, _ in steps(journal, "status.")] == [
        "status.enter", "status.read", "status.exit"]
    assert 'SET VARIABLE "HOTLINE_QUEUE" "housing"' in commands


async def test_someone_elses_appeal_is_never_read(config: IvrConfig) -> None:
    other = "380501112233"
    lookup = Lookup({other: [summary("1551-2026-000123")]})
    respond = responder(["200 result=8", "200 result=123", "200 result=0"])
    commands, journal = await call(config, respond, appeals=lookup)
    said = streamed(commands)
    assert "hotline/status/not_found" in said
    assert not any(s.startswith(("hotline/category/", "hotline/executor/")) for s in said)
    assert steps(journal, "status.read") == []
    assert steps(journal, "status.exit") == [("status.exit", {"reason": "not_found"})]
    # the journal keeps the appeal number out of a refusal, the caller's number everywhere
    assert all(CALLER not in repr(s.detail) for s in journal.steps)


async def test_status_lookup_down_plays_sorry_and_goes_on_to_the_queue(
    config: IvrConfig,
) -> None:
    lookup = Lookup({}, broken=True)
    respond = responder(["200 result=8", "200 result=123", "200 result=2"])
    commands, journal = await call(config, respond, appeals=lookup)
    said = streamed(commands)
    assert "hotline/status/unavailable" in said
    assert [d["during"] for _, d in steps(journal, "status.lookup_failed")] == ["open", "number"]
    assert 'SET VARIABLE "HOTLINE_QUEUE" "transport"' in commands


async def test_caller_hanging_up_in_the_status_step_leaves_a_clear_journal(
    config: IvrConfig,
) -> None:
    lookup = Lookup({CALLER: [summary("1551-2026-000007")]})
    respond = responder([], {"hotline/status/you_have": "HANGUP|511 Command Not Permitted"})
    commands, journal = await call(config, respond, appeals=lookup)
    assert not [c for c in commands if c.startswith('SET VARIABLE "HOTLINE_QUEUE"')]
    assert journal.steps[-1].step == "hangup"
    assert journal.steps[-1].detail == {"during": "status"}


def test_appeal_numbers_from_keyed_digits() -> None:
    assert appeal_number_from_digits("123", 2026) == "1551-2026-000123"
    assert appeal_number_from_digits("2025000123", 2026) == "1551-2025-000123"
    assert appeal_number_from_digits("1234567", 2026) == "1551-2026-1234567"
    assert appeal_number_from_digits("0", 2026) is None
    assert appeal_number_from_digits("12*", 2026) is None


# --- survey --------------------------------------------------------------------------


def surveyed(config: IvrConfig, share: float) -> IvrConfig:
    import dataclasses

    return dataclasses.replace(config, survey=SurveyConfig(share=share))


async def test_survey_stores_the_score_on_the_call(config: IvrConfig) -> None:
    surveys = Surveys()
    respond = responder(["200 result=7", "200 result=4"])
    commands, journal = await call(surveyed(config, 1.0), respond, route="survey",
                                   surveys=surveys, args=("Local/201@hotline-sim-operator/n",))
    assert surveys.scores == [("pbx-1", "1714000000.42", 4, "Local/201@hotline-sim-operator/n")]
    assert commands[-1] == 'STREAM FILE "hotline/survey/thanks" ""'
    assert [s.step for s in journal.steps] == [
        "survey.offer", "survey.invalid", "survey.offer", "survey.score", "survey.exit"]


async def test_survey_not_offered_outside_the_share(config: IvrConfig) -> None:
    surveys = Surveys()
    commands, journal = await call(surveyed(config, 0.0), responder([]), route="survey",
                                   surveys=surveys)
    assert commands == []
    assert journal.names() == ["survey.skipped"]


async def test_survey_hangup_is_journaled(config: IvrConfig) -> None:
    respond = responder(["HANGUP|511 Command Not Permitted on a dead channel"])
    _, journal = await call(surveyed(config, 1.0), respond, route="survey", surveys=Surveys())
    assert journal.names() == ["survey.offer", "survey.hangup"]


def test_survey_share_is_about_the_configured_share() -> None:
    hits = sum(sampled(f"1714000000.{n}", 0.3) for n in range(10_000))
    assert 2_700 < hits < 3_300
    assert sampled("x", 1.0) and not sampled("x", 0.0)


def test_a_name_without_a_prompt_is_left_out_not_played_missing() -> None:
    from ivr.flows.appeal_status import appeal_words

    appeal = summary("1551-2026-000001", executor_code="added_later")
    known = frozenset({"hotline/category/no_hot_water"})
    said = appeal_words(appeal, "uk", datetime.now(UTC).date(), speakable=known)
    assert said[:3] == ["hotline/status/latest_about", "hotline/category/no_hot_water",
                        "hotline/status/is_in_progress"]
    assert not any(w.startswith("hotline/executor/") or w == "hotline/status/executor"
                   for w in said)
    unknown = summary("1551-2026-000001", category_code="new_category")
    said = appeal_words(unknown, "uk", datetime.now(UTC).date(), speakable=known)
    assert said[:2] == ["hotline/status/latest", "hotline/status/is_in_progress"]


def test_the_case_store_and_the_ivr_name_the_same_prompts() -> None:
    from crm_sync.ivr_store import CATEGORY_PROMPT, EXECUTOR_PROMPT, spoken_names
    from ivr import speech

    assert (CATEGORY_PROMPT, EXECUTOR_PROMPT) == (speech.CATEGORY, speech.EXECUTOR)
    names = spoken_names(CONFIG_DIR)
    assert names["hotline/executor/kyivteploenergo"][0] == "КП «Київтеплоенерго»"
    assert "hotline/category/no_hot_water" in names


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "values", "bad_key"),
    [
        ("status", {"digit": "1"}, "status.digit"),  # the housing queue's digit
        ("language", {"switch_digit": "8"}, "status.digit"),  # the status digit's
        ("language", {"default": "de"}, "language.default"),
        ("language", {"offer_prompt": "../x"}, "language.offer_prompt"),
        ("survey", {"share": 1.5}, "survey.share"),
        ("survey", {"share": True}, "survey.share"),
        ("survey", {"timeout_ms": 10}, "survey.timeout_ms"),
        ("status", {"max_digit": 3}, "status.max_digit"),
    ],
)
def test_bad_flow_config_names_the_key(
    config: IvrConfig, table: str, values: dict[str, Any], bad_key: str
) -> None:
    import tomllib

    from ivr.menu import IvrConfigError, parse_ivr_config

    data = tomllib.loads((CONFIG_DIR / "ivr.toml").read_text())
    data[table].update(values)
    with pytest.raises(IvrConfigError) as err:
        parse_ivr_config(data, config.queues)
    assert [(p.file, p.key) for p in err.value.problems] == [("ivr.toml", bad_key)]


def test_shipped_flow_config(config: IvrConfig) -> None:
    assert (config.language.default, config.language.switch_digit) == ("uk", "9")
    assert config.status.digit == "8" and 0 < config.survey.share < 1
    assert {"language.offer_prompt", "status.enter_prompt", "survey.prompt"} <= set(
        config.prompts())
