"""Notices, opening hours and callbacks (issue 9): the estimate, the hours, the
configuration, the dialer's order, and the IVR flow through the real FastAGI server."""

from __future__ import annotations

import asyncio
import copy
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from cti_bridge.ami_protocol import AmiMessage
from cti_bridge.callback_dialer import CallbackDialer, loads_from_summary
from hotline.core.callflow import (
    ALL_QUEUES,
    CallflowConfig,
    HoursOverride,
    QueueHours,
    QueueLoad,
    Span,
    check_callflow,
    estimate_wait,
    free_operators,
    is_open,
    parse_span,
    pick_override,
)
from hotline.core.records import CallbackJob, CallbackRequest, IvrStep, Notice
from hotline.core.workdays import WorkingCalendar
from ivr.flows.callflow import Callflow, load_calendar, load_callflow
from ivr.flows.main_menu import make_main_menu
from ivr.menu import IvrConfig, load_ivr_config
from ivr.server import FastAgiServer
from tests.support.fake_agi_client import FakeAsterisk
from tests.support.paths import CONFIG_DIR

QUEUES = ("housing", "transport", "social", "main")


@pytest.fixture(scope="module")
def menu() -> IvrConfig:
    return load_ivr_config(CONFIG_DIR)


@pytest.fixture(scope="module")
def shipped() -> tuple[CallflowConfig, WorkingCalendar]:
    return load_callflow(CONFIG_DIR, QUEUES)


# --- the estimated wait ------------------------------------------------------------


def load(logged_in: int = 2, available: int = 0, callers: int = 0, hold: int = 0,
         talk: int = 0) -> QueueLoad:
    return QueueLoad("housing", logged_in, available, callers, hold, talk)


def test_estimated_wait() -> None:
    assert estimate_wait(None, 180) is None  # no summary yet
    assert estimate_wait(load(logged_in=0, callers=5), 180) is None  # nobody to wait for
    assert estimate_wait(load(available=1), 180) == 0  # a free operator, nobody ahead
    assert estimate_wait(load(available=1, callers=1, talk=100), 180) == 100  # 2 for 2
    # nobody answered yet: the configured handling time; 3 callers ahead, 2 operators
    assert estimate_wait(load(callers=3), 180) == 4 * 180 // 2
    # Asterisk's own average hold is a floor
    assert estimate_wait(load(callers=0, talk=60, hold=200), 180) == 200
    assert estimate_wait(load(logged_in=4, callers=7, talk=240), 180) == 480


def test_free_operators_leave_room_for_callers_waiting_and_callbacks_dialled() -> None:
    assert free_operators(None, 0) == 0
    assert free_operators(load(available=3, callers=1), 1) == 1
    assert free_operators(load(available=1, callers=2), 0) == 0


# --- opening hours -------------------------------------------------------------------


KYIV_CALENDAR = load_calendar(CONFIG_DIR)
DAYTIME = QueueHours(parse_span("08:00-20:00"), None)


def kyiv(day: date, hour: int, minute: int = 0) -> datetime:
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=KYIV_CALENDAR.timezone)
    return local.astimezone(UTC)


def test_hours_on_working_days_weekends_and_kyiv_holidays() -> None:
    monday = date(2026, 11, 30)
    assert is_open(DAYTIME, KYIV_CALENDAR, kyiv(monday, 8, 0))
    assert is_open(DAYTIME, KYIV_CALENDAR, kyiv(monday, 19, 59))
    assert not is_open(DAYTIME, KYIV_CALENDAR, kyiv(monday, 20, 0))
    assert not is_open(DAYTIME, KYIV_CALENDAR, kyiv(monday, 7, 59))
    assert not is_open(DAYTIME, KYIV_CALENDAR, kyiv(date(2026, 11, 29), 12))  # Sunday
    # Independence Day 2026 is a Monday; Christmas on a Friday
    assert not is_open(DAYTIME, KYIV_CALENDAR, kyiv(date(2026, 8, 24), 12))
    assert not is_open(DAYTIME, KYIV_CALENDAR, kyiv(date(2026, 12, 25), 12))
    # UTC midnight is 02:00 in Kyiv: the city's clock decides, not the server's
    assert not is_open(DAYTIME, KYIV_CALENDAR, datetime(2026, 11, 30, 5, 59, tzinfo=UTC))
    assert is_open(DAYTIME, KYIV_CALENDAR, datetime(2026, 11, 30, 6, 0, tzinfo=UTC))
    around_the_clock = QueueHours(parse_span("00:00-24:00"), parse_span("00:00-24:00"))
    assert is_open(around_the_clock, KYIV_CALENDAR, kyiv(date(2026, 12, 25), 23, 59))


def test_emergency_override_wins_and_a_queues_own_beats_the_global_one() -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    closed = HoursOverride(ALL_QUEUES, "closed", "evacuation", "admin", at)
    opened = HoursOverride("housing", "open", "heating emergency", "admin", at)
    sunday = kyiv(date(2026, 11, 29), 12)
    assert is_open(DAYTIME, KYIV_CALENDAR, sunday, opened)
    assert not is_open(DAYTIME, KYIV_CALENDAR, kyiv(date(2026, 11, 30), 12), closed)
    overrides = {ALL_QUEUES: closed, "housing": opened}
    assert pick_override(overrides, "housing") is opened
    assert pick_override(overrides, "social") is closed
    assert pick_override({}, "social") is None


def test_spans() -> None:
    assert parse_span("") is None
    assert parse_span("00:00-24:00") == Span(time(0), None)
    for bad in ("8:00-20:00", "20:00-08:00", "08:00-25:00", "08:00 - 20:00", "08:60-09:00"):
        with pytest.raises(ValueError):
            parse_span(bad)


# --- configuration -----------------------------------------------------------------


def test_shipped_callflow_answers_around_the_clock(
    shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    config, _ = shipped
    assert config.hours == {}  # 1551 answers around the clock; shorter hours are opt-in
    assert config.callback.enabled and config.callback.threshold_seconds > 0
    assert "{number}" in config.callback.dial
    assert config.notices.skip_digit == "0"


def raw() -> dict[str, Any]:
    return tomllib.loads((CONFIG_DIR / "callflow.toml").read_text())


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda d: d["callback"].update(threshold_seconds=-1), "callback.threshold_seconds"),
    (lambda d: d["callback"].update(dial="PJSIP/citizen"), "callback.dial"),
    (lambda d: d["callback"].update(dial="Local/{number}@x,1"), "callback.dial"),
    (lambda d: d["callback"].update(accept_digit="12"), "callback.accept_digit"),
    (lambda d: d["callback"].update(max_attempts=True), "callback.max_attempts"),
    (lambda d: d["notices"].update(intro="../../etc/passwd"), "notices.intro"),
    (lambda d: d["hours"].update(queues={"nowhere": {}}), "hours.queues.nowhere"),
    (lambda d: d["hours"].update(queues={"social": {"days_off": "20:00-08:00"}}),
     "hours.queues.social.days_off"),
    (lambda d: d["hours"]["default"].update(weekdays="x"), "hours.default.weekdays"),
    (lambda d: d.update(extra={}), "extra"),
])
def test_bad_callflow_names_the_key(mutate: Any, key: str) -> None:
    data = copy.deepcopy(raw())
    mutate(data)
    config, problems = check_callflow(data, QUEUES)
    assert config is None
    assert [(p.file, p.key) for p in problems] == [("callflow.toml", key)]


def test_queue_hours_from_config() -> None:
    data = raw()
    data["hours"]["queues"] = {"social": {"working_days": "08:00-20:00", "days_off": ""}}
    config, problems = check_callflow(data, QUEUES)
    assert problems == [] and config is not None
    assert config.hours_of("social").days_off is None
    assert config.hours_of("housing") == config.default_hours


# --- the dialer's order --------------------------------------------------------------


class MemoryCallbacks:
    """The claim rules of the case store's, in memory: oldest arrival first, never
    more being dialled than ``free``."""

    def __init__(self, requests: list[tuple[int, str, datetime]]) -> None:
        self.rows: dict[int, dict[str, Any]] = {
            rid: {"queue": q, "arrived": at, "status": "pending", "attempts": 0}
            for rid, q, at in requests}
        self.finished: list[tuple[int, bool]] = []

    async def queues_waiting(self) -> list[str]:
        return sorted({r["queue"] for r in self.rows.values()
                       if r["status"] in ("pending", "dialing")})

    async def claim(self, queue: str, free: int, dialer: str,
                    lease_seconds: float) -> CallbackJob | None:
        dialing = sum(1 for r in self.rows.values()
                      if r["queue"] == queue and r["status"] == "dialing")
        due = sorted((r["arrived"], rid) for rid, r in self.rows.items()
                     if r["queue"] == queue and r["status"] == "pending")
        if dialing >= free or not due:
            return None
        rid = due[0][1]
        row = self.rows[rid]
        row["status"], row["attempts"] = "dialing", row["attempts"] + 1
        return CallbackJob(rid, queue, f"38044000{rid:04d}", row["arrived"], row["attempts"], 3)

    async def finish(self, job: CallbackJob, answered: bool, detail: str,
                     retry_seconds: float) -> str:
        self.finished.append((job.request_id, answered))
        self.rows[job.request_id]["status"] = "done" if answered else "pending"
        return str(self.rows[job.request_id]["status"])


class FakeAmi:
    """Answers Originate like Asterisk (an OriginateResponse event for the ChannelId)."""

    def __init__(self, answer: bool = True) -> None:
        self.originates: list[dict[str, Any]] = []
        self.handlers: list[Any] = []
        self.answer = answer
        self.connected = True

    def on_event(self, pattern: str, handler: Any) -> None:
        self.handlers.append(handler)

    async def action(self, name: str, /, **headers: Any) -> AmiMessage:
        self.originates.append(headers)
        response = "Success" if self.answer else "Failure"
        event = AmiMessage.of(Event="OriginateResponse", Response=response,
                              Uniqueid=headers["ChannelId"], Reason="4" if self.answer else "3")
        asyncio.get_running_loop().call_soon(lambda: [h(event) for h in self.handlers])
        return AmiMessage.of(Response="Success")


def dialer(ami: FakeAmi, store: MemoryCallbacks,
           shipped: tuple[CallflowConfig, WorkingCalendar]) -> CallbackDialer:
    return CallbackDialer(ami, store, shipped[0].callback, "d1", "pbx-1")  # type: ignore[arg-type]


async def test_dialer_calls_back_in_order_of_arrival_only_as_operators_free_up(
    shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    t0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
    store = MemoryCallbacks([(7, "housing", t0 + timedelta(seconds=30)),
                             (3, "housing", t0 + timedelta(seconds=50)),
                             (9, "housing", t0), (4, "social", t0)])
    ami = FakeAmi()
    d = dialer(ami, store, shipped)
    loads = {"housing": QueueLoad("housing", 2, 1, 0, 0, 0)}  # social: nobody logged in
    started = await d.dispatch(["housing", "social"], loads)
    assert [j.request_id for j in started] == [9]  # the oldest, one free operator
    await d.wait_idle()
    await d.stop()
    assert store.finished == [(9, True)]
    d = dialer(ami, store, shipped)
    loads = {"housing": QueueLoad("housing", 3, 2, 0, 0, 0)}
    assert [j.request_id for j in await d.dispatch(["housing"], loads)] == [7, 3]
    await d.wait_idle()
    await d.stop()
    assert [o["ChannelId"] for o in ami.originates] == [
        "pbx-1-cb-9-1", "pbx-1-cb-7-1", "pbx-1-cb-3-1"]
    first = ami.originates[0]
    assert first["Channel"] == "PJSIP/380440000009@citizens-trunk"
    assert first["Context"] == "hotline-callback" and "HOTLINE_QUEUE=housing" in first["Variable"]
    assert store.rows[4]["status"] == "pending"  # no operator of "social": not dialled


async def test_unanswered_callback_is_retried_as_a_new_attempt(
    shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    store = MemoryCallbacks([(1, "main", datetime(2026, 11, 30, tzinfo=UTC))])
    ami = FakeAmi(answer=False)
    d = dialer(ami, store, shipped)
    free = {"main": QueueLoad("main", 1, 1, 0, 0, 0)}
    await d.dispatch(["main"], free)
    await d.wait_idle()
    await d.dispatch(["main"], free)
    await d.wait_idle()
    await d.stop()
    assert store.finished == [(1, False), (1, False)]
    assert [o["ChannelId"] for o in ami.originates] == ["pbx-1-cb-1-1", "pbx-1-cb-1-2"]


def test_queue_summary_items_become_loads() -> None:
    items = [AmiMessage.of(Event="QueueSummary", Queue="housing", LoggedIn="3", Available="1",
                           Callers="2", HoldTime="40", TalkTime="200", LongestHoldTime="70"),
             AmiMessage.of(Event="QueueSummaryComplete", ListItems="1")]
    assert loads_from_summary(items) == {"housing": QueueLoad("housing", 3, 1, 2, 40, 200)}


# --- the flow, through the real FastAGI server ----------------------------------------


class Journal:
    def __init__(self) -> None:
        self.steps: list[IvrStep] = []

    async def record_step(self, step: IvrStep) -> None:
        self.steps.append(step)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s.detail for s in self.steps if s.step == name]


class Ports:
    def __init__(self, notices: Mapping[str, list[Notice]] | None = None,
                 loads: Mapping[str, QueueLoad] | None = None,
                 overrides: Mapping[str, HoursOverride] | None = None) -> None:
        self._notices = notices or {}
        self._loads = loads or {}
        self._overrides = overrides or {}
        self.booked: list[CallbackRequest] = []

    async def notices_for(self, caller_number: str, at: datetime) -> list[Notice]:
        return list(self._notices.get(caller_number, []))

    async def queue_load(self, queue: str) -> QueueLoad | None:
        return self._loads.get(queue)

    async def hours_overrides(self) -> Mapping[str, HoursOverride]:
        return self._overrides

    async def book_callback(self, request: CallbackRequest) -> int:
        self.booked.append(request)
        return 41 + len(self.booked)


def responder(get_data: list[str], stream: dict[str, str] | None = None) -> Any:
    """GET DATA replies in order; STREAM FILE of a named sound presses a digit."""
    pending = list(get_data)
    presses = stream or {}

    def respond(command: str) -> list[str]:
        if command.startswith("GET DATA"):
            reply = pending.pop(0)
            return [f"200 result={reply}"] if reply.isdigit() else reply.split("|")
        if command.startswith("STREAM FILE"):
            sound = command.split()[2].strip('"')
            digit = presses.get(sound)
            return [f"200 result={ord(digit)} endpos=800" if digit else "200 result=0 endpos=8000"]
        if command == "ANSWER" or command.startswith("SET VARIABLE"):
            return ["200 result=1"]
        return ["510 Invalid or unknown command"]

    return respond


CALLER = "380441234567"  # FakeAsterisk's default caller id


async def call(menu: IvrConfig, callflow: Callflow, journal: Journal, respond: Any) -> list[str]:
    server = FastAgiServer({"ivr": make_main_menu(menu, journal, "pbx-1", callflow=callflow)},
                           "127.0.0.1", 0)
    await server.start()
    try:
        agi = await FakeAsterisk.connect(server.port)
        await agi.send_env("ivr")
        commands = await agi.converse(respond)
        await agi.close()
        return commands
    finally:
        await server.stop()


def flow(shipped: tuple[CallflowConfig, WorkingCalendar], ports: Ports,
         config: CallflowConfig | None = None) -> Callflow:
    return Callflow(config or shipped[0], shipped[1], ports, ports, ports, ports, "pbx-1")


WATER = Notice(7, "water", "hotline/notices/7", "Немає холодної води до 18:00")


async def test_district_notice_is_played_before_the_menu_to_its_district_only(
    menu: IvrConfig, shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    ports = Ports(notices={CALLER: [WATER]})
    journal = Journal()
    commands = await call(menu, flow(shipped, ports), journal, responder(["1"]))
    plays = [c for c in commands if c.startswith(("STREAM FILE", "GET DATA"))]
    notice_at = plays.index('STREAM FILE "hotline/notices/7" "0"')
    assert plays[notice_at - 1] == 'STREAM FILE "hotline/notice_intro" "0"'
    assert plays[notice_at + 1] == 'STREAM FILE "hotline/notice_skip" "0"'
    assert plays[notice_at + 2].startswith('GET DATA "hotline/menu"')
    assert journal.named("notice") == [{"ids": [7], "kinds": ["water"], "skipped": False}]
    assert 'SET VARIABLE "HOTLINE_QUEUE" "housing"' in commands

    other = Journal()  # a caller of another district (no notice for them)
    commands = await call(menu, flow(shipped, Ports(notices={"380440000000": [WATER]})), other,
                          responder(["1"]))
    assert not any("notice" in c for c in commands)
    assert other.named("notice") == []


async def test_skipping_a_notice_goes_straight_to_an_operator(
    menu: IvrConfig, shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    journal = Journal()
    commands = await call(menu, flow(shipped, Ports(notices={CALLER: [WATER]})), journal,
                          responder([], {"hotline/notices/7": "0"}))
    assert not any(c.startswith('GET DATA "hotline/menu"') for c in commands)
    assert 'SET VARIABLE "HOTLINE_QUEUE" "main"' in commands
    assert journal.named("notice")[0]["skipped"] is True
    assert journal.named("choice") == [
        {"digit": "", "queue": "main", "attempt": 0, "reason": "notice_skip"}]


async def test_a_caller_who_hangs_up_after_a_notice_is_counted_as_saved(
    menu: IvrConfig, shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    journal = Journal()
    await call(menu, flow(shipped, Ports(notices={CALLER: [WATER]})), journal,
               responder(["HANGUP|511 Command Not Permitted on a dead channel"]))
    assert journal.named("hangup") == [{"during": "menu", "after_notice": True}]


async def test_long_wait_offers_a_callback_and_books_it_with_the_arrival_time(
    menu: IvrConfig, shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    busy = {"housing": QueueLoad("housing", 2, 0, 5, 60, 240)}  # 6 × 240 / 2 = 720 s
    ports = Ports(loads=busy)
    journal = Journal()
    before = datetime.now(UTC)
    commands = await call(menu, flow(shipped, ports), journal, responder(["1", "1"]))
    assert any(c.startswith('GET DATA "hotline/callback_offer"') for c in commands)
    assert 'STREAM FILE "hotline/callback_booked" ""' in commands
    assert 'SET VARIABLE "IVR_EXIT" "callback"' in commands
    assert 'SET VARIABLE "HOTLINE_QUEUE" "housing"' in commands
    [request] = ports.booked
    assert (request.queue, request.caller_number, request.reason) == ("housing", CALLER, "wait")
    assert before <= request.arrived_at <= datetime.now(UTC)
    assert journal.named("wait_estimate") == [
        {"queue": "housing", "seconds": 720, "threshold": 180}]
    assert journal.named("callback_booked")[0]["request_id"] == 42

    # declined (no key): queued as usual; a short wait: no offer at all
    for loads, replies in ((busy, ["1", "(timeout)"]),
                           ({"housing": QueueLoad("housing", 2, 1, 0, 0, 0)}, ["1"])):
        ports = Ports(loads=loads)
        commands = await call(menu, flow(shipped, ports), Journal(),
                              responder([r if r != "(timeout)" else "200 result= (timeout)"
                                         for r in replies]))
        assert ports.booked == []
        assert not any("IVR_EXIT" in c for c in commands)
        assert 'SET VARIABLE "IVR_SOURCE" "fastagi"' in commands


async def test_out_of_hours_plays_the_closed_message_and_offers_a_callback(
    menu: IvrConfig, shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    closed = {ALL_QUEUES: HoursOverride(ALL_QUEUES, "closed", "drill", "admin",
                                        datetime.now(UTC))}
    ports = Ports(overrides=closed)
    journal = Journal()
    commands = await call(menu, flow(shipped, ports), journal,
                          responder(["2", "200 result= (timeout)"]))
    assert 'STREAM FILE "hotline/closed" ""' in commands
    assert 'SET VARIABLE "IVR_EXIT" "closed"' in commands
    assert not any('IVR_SOURCE "fastagi"' in c and "EXIT" in c for c in commands)
    assert journal.named("hours") == [{"queue": "transport", "open": False, "override": "closed"}]
    assert ports.booked == []

    ports = Ports(overrides=closed)
    commands = await call(menu, flow(shipped, ports), Journal(), responder(["2", "1"]))
    assert 'SET VARIABLE "IVR_EXIT" "callback"' in commands
    assert [r.reason for r in ports.booked] == ["closed"]


async def test_broken_ports_cost_the_caller_nothing(
    menu: IvrConfig, shipped: tuple[CallflowConfig, WorkingCalendar],
) -> None:
    class Broken(Ports):
        async def notices_for(self, caller_number: str, at: datetime) -> list[Notice]:
            await asyncio.Event().wait()  # a database that never answers
            return []

        async def hours_overrides(self) -> Mapping[str, HoursOverride]:
            raise ConnectionRefusedError("postgres is down")

    callflow = flow(shipped, Broken())
    callflow.lookup_timeout = 0.05
    commands = await call(menu, callflow, Journal(), responder(["3"]))
    assert 'SET VARIABLE "HOTLINE_QUEUE" "social"' in commands
    assert 'SET VARIABLE "IVR_SOURCE" "fastagi"' in commands
