"""The operator desk end to end: a REAL Asterisk 22 (the sandbox), the service
(agi, ami and web roles), real PostgreSQL and Redis, and two operators in a real
headless Chromium. A simulated citizen with an open appeal calls; the ringing
operator's page pops the caller with that appeal, turns "in call", the operator
files a new appeal in the desk's in-call panel (linked to the call and the
caller, routed), then pausing in the page pauses the member in Asterisk
(checked with QueueStatus); the other operator's page, signed in all along,
never gets anything of that call.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from crm_sync.appeals import (
    AppealsService,
    NewAppeal,
    load_appeals_config,
    load_routing_config,
)
from crm_sync.db import create_pool
from crm_sync.desk.operators import set_skills
from crm_sync.migrate import migrate
from crm_sync.people import upsert_operator
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
from cti_bridge.ami_client import AmiClient
from hotline.app import HotlineService
from hotline.core.appeals import Actor, ActorKind, Channel
from hotline.devtools import asterisk_sandbox as sandbox
from hotline.devtools import simulator
from tests.support.browser import chromium, new_page
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.ports import port
from tests.support.sandbox import make_sandbox, running_service, service_settings
from tests.support.web import PASSWORD

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

SERVER_ID = "hotline-desk"
AMI_PORT, AGI_PORT, SIP_PORT, WEB_PORT = port(21038), port(21574), port(21060), port(21551)
DIGIT_DELAY = 4.5  # the greeting is not interruptible: press after it
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("desk", SERVER_ID, ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT, queue_timeout=60)
    sandbox.down(spec)
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(make_database: MakeDatabase) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A case store of its own with the taxonomy and routing (appeals need them)."""
    url = await make_database("desk_browser")
    pool = await create_pool(url)
    await migrate(pool)
    await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
    config = load_appeals_config(CONFIG_DIR)
    await load_routing_config(pool, config.routing, config.settings)
    yield url, pool
    await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    asterisk: sandbox.SandboxSpec, database: tuple[str, asyncpg.Pool], redis_url: str
) -> AsyncIterator[HotlineService]:
    settings = service_settings(asterisk, database_url=database[0], redis_url=redis_url,
                                roles=["agi", "ami", "web"], web_port=WEB_PORT)
    async with running_service(settings) as svc:
        yield svc


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    client = sandbox.simulator_ami(asterisk)
    await client.start()
    yield client
    await client.close()


async def sign_in(page: Page, base: str, login: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#login", login)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/desk")  # an operator's home is the desk
    await expect(page.locator("#live")).to_have_text("live")


async def member(sim: AmiClient, queue: str, interface: str) -> dict[str, str]:
    """The member as Asterisk's QueueStatus reports it ({} when not a member)."""
    items = await sim.action_list("QueueStatus", Queue=queue, Member=interface)
    for item in items:
        if item.event == "QueueMember" and item.get("Location") == interface:
            return dict(item.headers)
    return {}


async def eventually(query: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """The first truthy answer of ``query`` (the service writes through a queue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := await query():
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"nothing within {timeout} s")


async def operators(pool: asyncpg.Pool, tag: str, *skills: str) -> list[tuple[str, int, str]]:
    """Simulated-member operators with one skill each: (login, member number, interface)."""
    made = []
    for i, skill in enumerate(skills):
        login, number = f"op{i}_{tag}", 3300 + next(_numbers)
        await upsert_operator(pool, login, f"Оператор {i}", "operator", PASSWORD,
                              interface=simulator.operator_interface(number))
        await set_skills(pool, login, {skill: 0}, ["housing", "main"])
        made.append((login, number, simulator.operator_interface(number)))
    return made


async def test_desk_pops_the_caller_and_pauses_in_asterisk(
    service: HotlineService, sim: AmiClient, database: tuple[str, asyncpg.Pool]
) -> None:
    pool = database[1]
    base = f"http://127.0.0.1:{WEB_PORT}"
    tag = uuid.uuid4().hex[:6]
    olena, petro = f"olena_{tag}", f"petro_{tag}"
    olena_n, petro_n = 3100 + next(_numbers), 3200 + next(_numbers)
    olena_if = simulator.operator_interface(olena_n)
    for login, name, number in ((olena, "Олена Оператор", olena_n),
                                (petro, "Петро Оператор", petro_n)):
        await upsert_operator(pool, login, name, "operator", PASSWORD,
                              interface=simulator.operator_interface(number))
        await set_skills(pool, login, {"housing": 0}, ["housing", "main"])
    caller = f"38067{int(time.time()) % 100000:05d}{next(_numbers):02d}"
    appeals_config = load_appeals_config(CONFIG_DIR)
    appeal = (await AppealsService(pool, calendar=appeals_config.calendar,
                                   settings=appeals_config.settings).register(NewAppeal(
        channel=Channel.PHONE, category="no_cold_water", district="obolonskyi",
        address=f"вул. Десна{tag}, 5", text="Немає холодної води", citizen_phone="+" + caller,
        citizen_name="Тарас Шевченко"), Actor(ActorKind.OPERATOR, "earlier"))).appeal
    # the operator talks until the page hangs up
    await sim.action("Setvar", Variable=f"SIM_TALK_{olena_n}", Value="120")

    problems: list[str] = []
    petro_frames: list[str] = []
    async with chromium() as browser:
        page = await new_page(browser, problems, viewport={"width": 1400, "height": 1000})
        other = await new_page(browser, problems)
        other.on("websocket", lambda ws: ws.on("framereceived", lambda f: petro_frames.append(
            f if isinstance(f, str) else f.decode(errors="replace"))))
        try:
            await sign_in(page, base, olena)
            await sign_in(other, base, petro)
            await expect(page.locator("#interface")).to_have_text(olena_if)
            await expect(page.locator("#members tr.logged-out")).to_be_visible()

            # log in from the page: Asterisk has the member, and the page shows Asterisk's word
            await page.click("#btn-login")
            await expect(page.locator("#message")).to_contain_text("logged in to housing")
            await expect(page.locator('#members tr[data-queue="housing"] .status')).to_have_text(
                "available")
            assert (await member(sim, "housing", olena_if)).get("Paused") == "0"

            await simulator.call_in(sim, simulator.Citizen(caller, "Тарас Шевченко", "1",
                                                           DIGIT_DELAY, 60))
            pop = page.locator("#pop")
            await expect(pop).to_be_visible(timeout=30_000)
            await expect(page.locator("#pop-number")).to_have_text(caller)
            await expect(page.locator("#pop-name")).to_have_text("Тарас Шевченко")
            await expect(page.locator("#pop-citizen")).to_contain_text("Тарас Шевченко")
            row = page.locator(f'#pop-appeals tr[data-number="{appeal.number}"]')
            await expect(row).to_contain_text(str(appeal.status))
            await expect(row).to_contain_text(appeal.executor_name_uk or "")
            await expect(page.locator("#pop-queue")).to_contain_text("housing")
            await expect(page.locator("#pop-ivr")).to_contain_text("pressed 1")
            await expect(page.locator("#pop-language")).to_have_text("uk")
            await expect(page.locator("#pop-state")).to_have_text("in call")
            uniqueid = await pop.get_attribute("data-uniqueid")
            assert uniqueid
            await expect(page.locator("#call-panel")).to_have_attribute(
                "src", f"/desk/call/{uniqueid}")
            # the operator files an appeal in the call, in the desk's own panel
            panel = page.frame_locator("#call-panel")
            await expect(panel.locator("#caller-number")).to_contain_text(caller[-7:])
            await panel.locator("#tax-q").fill("ліфт не працюе")
            await panel.locator(
                '#tax-results button[data-code="passenger_lift_out_of_order"]').click()
            await panel.locator("#f-address").fill(f"вул. Драйзера, {next(_numbers)}")
            await expect(panel.locator("#f-district")).to_have_value("desnianskyi")
            await panel.locator("#f-text").fill("Ліфт не працює з ранку")
            await panel.locator("#f-consent").check()
            await panel.locator("#file-appeal").click()
            await expect(panel.locator("#appeal-number")).to_have_text(
                re.compile(r"^1551-\d{4}-\d{6,}$"))
            filed = await pool.fetchrow(
                """SELECT c.uniqueid, ci.phone, e.code AS executor FROM appeals a
                   JOIN calls c ON c.id = a.call_id JOIN citizens ci ON ci.id = a.citizen_id
                   JOIN executors e ON e.id = a.executor_id WHERE a.number = $1""",
                await panel.locator("#appeal-number").text_content())
            assert filed is not None and filed["uniqueid"] == uniqueid  # linked to the call
            assert filed["phone"].endswith(caller)  # and to the caller
            assert filed["executor"] == "zhek_desnianskyi_7"  # routed as routing.toml says
            # hang up from the page: Asterisk ends the call, the card says so
            await page.click("#btn-hangup")
            await expect(page.locator("#message")).to_have_text("hung up")
            await expect(page.locator("#pop-state")).to_have_text("ended")

            # pausing in the page pauses the member in Asterisk, with the reason
            await page.select_option("#pause-reason", "lunch")
            await page.click("#btn-pause")
            await expect(page.locator("#message")).to_have_text("paused: lunch")
            await expect(page.locator('#members tr[data-queue="housing"] .reason')).to_have_text(
                "lunch")
            state = await member(sim, "housing", olena_if)
            assert (state.get("Paused"), state.get("PausedReason")) == ("1", "lunch")
            deadline = time.monotonic() + 15
            reasons: list[str] = []
            while time.monotonic() < deadline and "lunch" not in reasons:
                reasons = [r["reason"] for r in await pool.fetch(
                    "SELECT s.reason FROM operator_state_changes s JOIN operators o "
                    "ON o.id = s.operator_id WHERE o.login = $1 AND s.state = 'paused'", olena)]
                await asyncio.sleep(0.2)
            assert "lunch" in reasons  # what the statistics read pause time by reason from

            # the other operator's page never saw any of it
            await expect(other.locator("#pop")).to_be_hidden()
            assert not any(caller[-7:] in f for f in petro_frames)
            await page.screenshot(path="/tmp/desk.png", full_page=True)
            assert [p for p in problems if "/desk/call/" not in p and "404" not in p] == []
        finally:
            for number in (olena_n, petro_n):
                await simulator.remove_operator(sim, number, ("housing", "main"))


async def test_transfer_to_another_queue_pops_there(
    service: HotlineService, sim: AmiClient, database: tuple[str, asyncpg.Pool]
) -> None:
    """The first operator sends the caller to the catch-all queue (Setvar + Redirect to
    the dialplan's queue entry); the operator of that queue gets the pop."""
    pool = database[1]
    base = f"http://127.0.0.1:{WEB_PORT}"
    (first, first_n, _), (second, second_n, _) = await operators(
        pool, uuid.uuid4().hex[:6], "housing", "main")
    for number in (first_n, second_n):
        await sim.action("Setvar", Variable=f"SIM_TALK_{number}", Value="120")
    caller = f"38067{int(time.time()) % 100000:05d}{next(_numbers):02d}"
    problems: list[str] = []
    async with chromium() as browser:
        page, other = await new_page(browser, problems), await new_page(browser, problems)
        try:
            await sign_in(page, base, first)
            await sign_in(other, base, second)
            for p in (page, other):
                await p.click("#btn-login")
                await expect(p.locator("#message")).to_contain_text("logged in to")
            await simulator.call_in(sim, simulator.Citizen(caller, "Леся Українка", "1",
                                                           DIGIT_DELAY, 90))
            await expect(page.locator("#pop-state")).to_have_text("in call", timeout=30_000)
            await expect(page.locator("#pop-citizen")).to_have_text("new citizen")
            await page.select_option("#transfer-queue", "main")
            await page.click("#btn-transfer-queue")
            await expect(page.locator("#message")).to_have_text("transferred to queue main")
            await expect(page.locator("#pop-state")).to_have_text("ended")
            await expect(other.locator("#pop-number")).to_have_text(caller, timeout=30_000)
            await expect(other.locator("#pop-state")).to_have_text("in call")
            await expect(other.locator("#pop-queue")).to_contain_text("housing → main")
            await other.click("#btn-hangup")
            await expect(other.locator("#pop-state")).to_have_text("ended")
            assert [p for p in problems if "/desk/call/" not in p and "404" not in p] == []
        finally:
            for number in (first_n, second_n):
                await simulator.remove_operator(sim, number, ("housing", "main"))
