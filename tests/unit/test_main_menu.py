"""The ``ivr`` route end to end: real server, Asterisk-like client, in-memory journal."""

from __future__ import annotations

import asyncio
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hotline.core.records import IvrStep
from ivr.flows import MAIN_MENU_ROUTE, build_routes
from ivr.flows.main_menu import make_main_menu
from ivr.menu import IvrConfig, IvrConfigError, load_catalogue, load_ivr_config
from ivr.menu import parse_ivr_config as parse
from ivr.server import FastAgiServer
from tests.support.fake_agi_client import FakeAsterisk, menu_responder
from tests.support.paths import CONFIG_DIR


class MemoryJournal:
    def __init__(self) -> None:
        self.steps: list[IvrStep] = []

    async def record_step(self, step: IvrStep) -> None:
        self.steps.append(step)

    def names(self) -> list[str]:
        return [s.step for s in self.steps]


class BrokenJournal:
    """The database is down: one write fails at once, the next one hangs."""

    def __init__(self) -> None:
        self.calls = 0

    async def record_step(self, step: IvrStep) -> None:
        self.calls += 1
        if self.calls % 2:
            raise ConnectionRefusedError("postgres is down")
        await asyncio.Event().wait()


@pytest.fixture(scope="module")
def config() -> IvrConfig:
    return load_ivr_config(CONFIG_DIR)


async def run_call(
    config: IvrConfig, journal: Any, replies: list[str], **route_kwargs: Any
) -> list[str]:
    """One call through the real server; returns the commands the flow sent."""
    routes = {"ivr": make_main_menu(config, journal, "pbx-1", **route_kwargs)}
    server = FastAgiServer(routes, "127.0.0.1", 0)
    await server.start()
    try:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("ivr?lang=uk")
        commands = await agi.converse(menu_responder(replies))
        await agi.close()
        return commands
    finally:
        await server.stop()


def variables(commands: list[str]) -> list[str]:
    """The variables the dialplan reads (not the channel's language)."""
    return [c for c in commands
            if c.startswith("SET VARIABLE") and not c.startswith('SET VARIABLE "CHANNEL(')]


# --- configuration -------------------------------------------------------------


def test_shipped_menu_maps_digits_to_queues(config: IvrConfig) -> None:
    assert {d: o.queue for d, o in config.options.items()} == {
        "1": "housing",
        "2": "transport",
        "3": "social",
        "0": "main",
    }
    assert config.default_queue == "main"
    assert all(o.label_uk and o.label_en for o in config.options.values())
    assert config.max_attempts >= 2


def test_menu_options_are_the_catalogue_queues_with_a_digit(config: IvrConfig) -> None:
    catalogue = load_catalogue(CONFIG_DIR)
    assert config.queues == catalogue
    assert {d: (o.queue, o.label_uk) for d, o in config.options.items()} == {
        q.digit: (q.name, q.label_uk) for q in catalogue.queues.values() if q.digit
    }
    assert config.default_queue in catalogue.queues


def good() -> dict[str, Any]:
    return tomllib.loads((CONFIG_DIR / "ivr.toml").read_text())


@pytest.mark.parametrize(
    ("mutate", "bad_key"),
    [
        (lambda d: d["menu"].pop("prompt"), "menu.prompt"),
        (lambda d: d["menu"].update(invalid_prompt="no such file.gsm"), "menu.invalid_prompt"),
        (lambda d: d["menu"].update(timeout_ms="5000"), "menu.timeout_ms"),
        (lambda d: d["menu"].update(max_attempts=True), "menu.max_attempts"),
        (lambda d: d["menu"].update(max_attempts=0), "menu.max_attempts"),
        (lambda d: d["menu"].update(default_queue="General Queue"), "menu.default_queue"),
        (lambda d: d["menu"].update(default_queue="general"), "menu.default_queue"),
        (lambda d: d["menu"].update(greeting=["../../etc/passwd"]), "menu.greeting[0]"),
        (lambda d: d["menu"].update(options={"1": {"queue": "housing"}}), "menu.options"),
        (lambda d: d["menu"].update(promt="hotline/menu"), "menu.promt"),
        (lambda d: d.pop("menu"), "menu"),
    ],
)
def test_bad_config_names_the_key(mutate: Any, bad_key: str, config: IvrConfig) -> None:
    data = good()
    mutate(data)
    with pytest.raises(IvrConfigError) as err:
        parse(data, config.queues)
    assert [(p.file, p.key) for p in err.value.problems] == [("ivr.toml", bad_key)]
    assert str(err.value).startswith(f"ivr.toml: {bad_key}: ")


def test_every_problem_is_named_at_once(config: IvrConfig) -> None:
    data = good()
    data["menu"].update(default_queue="nowhere", timeout_ms=0, prompt="a b")
    with pytest.raises(IvrConfigError) as err:
        parse(data, config.queues)
    assert sorted(p.key for p in err.value.problems) == [
        "menu.default_queue", "menu.prompt", "menu.timeout_ms"]
    assert "(and 2 more problems)" in str(err.value)


def test_unreadable_config_files(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "ivr.toml").write_text("[menu\n")
    with pytest.raises(IvrConfigError, match=r"ivr\.toml: not valid TOML"):
        load_ivr_config(tmp_path)
    (tmp_path / "ivr.toml").unlink()
    with pytest.raises(IvrConfigError, match=r"ivr\.toml: cannot read"):
        load_ivr_config(tmp_path)
    (tmp_path / "queues.toml").write_text("catch_all = 'main'\n")
    with pytest.raises(IvrConfigError, match=r"queues\.toml: queues: "):
        load_ivr_config(tmp_path)


# --- the flow ----------------------------------------------------------------------


def test_build_routes_registers_ivr(config: IvrConfig) -> None:
    assert MAIN_MENU_ROUTE == "ivr"
    assert set(build_routes(config, MemoryJournal(), "pbx-1")) == {"ivr", "survey"}


async def test_valid_digit_routes_to_its_queue(config: IvrConfig) -> None:
    journal = MemoryJournal()
    commands = await run_call(config, journal, ["200 result=2"])
    assert commands == [
        "ANSWER",
        'STREAM FILE "silence/1" "012398"',  # 9: English, 8: status
        'STREAM FILE "hotline/greeting" "012398"',
        # the other language offered in its own words
        'SET VARIABLE "CHANNEL(language)" "en"',
        'STREAM FILE "hotline/language_offer" "012398"',
        'SET VARIABLE "CHANNEL(language)" "uk"',
        f'GET DATA "hotline/menu" {config.timeout_ms} 1',
        'SET VARIABLE "IVR_CHOICE" "2"',
        'SET VARIABLE "HOTLINE_QUEUE" "transport"',
        'SET VARIABLE "IVR_SOURCE" "fastagi"',
    ]
    assert journal.names() == [
        "language.start", "greeting", "language.offer", "menu", "choice", "route"]
    route = journal.steps[-1]
    assert (route.asterisk_server, route.uniqueid) == ("pbx-1", "1714000000.42")
    assert route.detail == {
        "queue": "transport",
        "choice": "2",
        "reason": "choice",
        "source": "fastagi",
    }


async def test_invalid_then_timeout_then_valid(config: IvrConfig) -> None:
    journal = MemoryJournal()
    commands = await run_call(
        config, journal, ["200 result=7", "200 result= (timeout)", "200 result=1"]
    )
    assert commands.count('STREAM FILE "hotline/invalid" ""') == 2
    assert variables(commands)[:2] == [
        'SET VARIABLE "IVR_CHOICE" "1"',
        'SET VARIABLE "HOTLINE_QUEUE" "housing"',
    ]
    assert journal.names() == [
        "language.start",
        "greeting",
        "language.offer",
        "menu",
        "invalid",
        "menu",
        "timeout",
        "menu",
        "choice",
        "route",
    ]


async def test_too_many_attempts_takes_default_queue(config: IvrConfig) -> None:
    journal = MemoryJournal()
    replies = ["200 result= (timeout)"] * config.max_attempts
    commands = await run_call(config, journal, replies)
    assert sum(c.startswith("GET DATA") for c in commands) == config.max_attempts
    # no "sorry" after the last try: the caller goes straight to the queue
    assert commands.count('STREAM FILE "hotline/invalid" ""') == config.max_attempts - 1
    assert variables(commands) == [
        'SET VARIABLE "IVR_CHOICE" ""',
        'SET VARIABLE "HOTLINE_QUEUE" "main"',
        'SET VARIABLE "IVR_SOURCE" "fastagi"',
    ]
    assert journal.steps[-1].detail["reason"] == "default"


async def test_hangup_mid_menu_is_recorded_quietly(config: IvrConfig) -> None:
    journal = MemoryJournal()
    with capture_logs() as logs:
        commands = await run_call(
            config,
            journal,
            ["200 result=7", "HANGUP|511 Command Not Permitted on a dead channel"],
        )
    assert variables(commands) == []
    assert journal.names()[-1] == "hangup"
    assert journal.steps[-1].detail == {"during": "menu"}
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]


async def test_journal_down_does_not_break_the_call(config: IvrConfig) -> None:
    journal = BrokenJournal()
    with capture_logs() as logs:
        commands = await run_call(config, journal, ["200 result=3"], journal_timeout=0.05)
    assert variables(commands) == [
        'SET VARIABLE "IVR_CHOICE" "3"',
        'SET VARIABLE "HOTLINE_QUEUE" "social"',
        'SET VARIABLE "IVR_SOURCE" "fastagi"',
    ]
    failures = [e for e in logs if e["event"] == "ivr_journal_failed"]
    # language.start, greeting, language.offer, menu, choice, route
    assert len(failures) == journal.calls == 6
    assert not [e for e in logs if e["event"] == "agi_route_failed"]


async def test_usage_error_is_journaled_and_left_to_the_server(config: IvrConfig) -> None:
    journal = MemoryJournal()
    with capture_logs() as logs:
        commands = await run_call(
            config,
            journal,
            ["520-Invalid command syntax.  Proper usage follows:|usage|520 End of proper usage."],
        )
    assert variables(commands) == []  # the dialplan's fallback decides
    assert journal.steps[-1].step == "error"
    assert journal.steps[-1].detail == {"during": "menu", "error": "AgiCommandError"}
    assert [e["uniqueid"] for e in logs if e["event"] == "agi_route_failed"] == ["1714000000.42"]


async def test_digit_pressed_during_greeting_skips_the_menu(config: IvrConfig) -> None:
    journal = MemoryJournal()
    routes = {"ivr": make_main_menu(config, journal, "pbx-1")}
    server = FastAgiServer(routes, "127.0.0.1", 0)
    await server.start()
    base = menu_responder([])

    def respond(command: str) -> list[str]:
        if command.startswith('STREAM FILE "hotline/greeting"'):
            return ["200 result=49 endpos=3200"]  # ASCII '1' interrupted the greeting
        return base(command)

    try:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("ivr")
        commands = await agi.converse(respond)
        await agi.close()
    finally:
        await server.stop()
    assert not any(c.startswith("GET DATA") for c in commands)
    assert variables(commands) == [
        'SET VARIABLE "IVR_CHOICE" "1"',
        'SET VARIABLE "HOTLINE_QUEUE" "housing"',
        'SET VARIABLE "IVR_SOURCE" "fastagi"',
    ]
    assert journal.names() == ["language.start", "greeting", "choice", "route"]
