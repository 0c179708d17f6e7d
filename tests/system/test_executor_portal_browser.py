"""The executor portal in a real headless Chromium (Debian's ``/usr/bin/chromium``,
driven by playwright), served on a real TCP port over the real PostgreSQL and Redis:
an executor of one district administration signs in, filters, accepts and resolves
an appeal; another organisation's appeal is a 404; no page breaks the CSP; the
portal is usable at a phone's width."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, Dialog, Page, expect

from crm_sync.appeals import AppealsService, NewAppeal, load_appeals_config
from crm_sync.people import upsert_operator
from hotline.core.appeals import AppealStatus, Channel
from hotline.web.app import build_web_app
from hotline.web.common import APPEALS
from tests.support.appeals import OPERATOR, appeals_case_store, house, unique_street
from tests.support.browser import chromium, new_page, serve, sign_in_page
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import PASSWORD, SESSION_KEY, User, add_user

SCREENSHOT = Path("/tmp/portal.png")
PHONE = {"width": 390, "height": 844}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "portal_browser") as p:
        yield p


@pytest.fixture
def service(pool: asyncpg.Pool) -> AppealsService:
    config = load_appeals_config(CONFIG_DIR)
    return AppealsService(pool, calendar=config.calendar, settings=config.settings)


@pytest_asyncio.fixture
async def base_url(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, service: AppealsService
) -> AsyncIterator[str]:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[APPEALS] = service
    async with serve(app) as url:
        yield url


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def sign_in(page: Page, base_url: str, user: User) -> None:
    await sign_in_page(page, base_url, user.login, user.password)


async def register(service: AppealsService, district: str, street: str, text: str) -> Any:
    registered = await service.register(NewAppeal(
        channel=Channel.PHONE, category="billing_subsidies", district=district,
        address=house(street), text=text,
        citizen_phone=f"+38050{uuid.uuid4().int % 10**7:07d}"), OPERATOR)
    return registered.appeal


async def test_an_executor_filters_accepts_and_resolves_in_chromium(
    base_url: str, browser: Browser, pool: asyncpg.Pool, service: AppealsService
) -> None:
    street = unique_street()
    ours = [await register(service, "pecherskyi", street, f"Субсидія {n}") for n in range(3)]
    theirs = await register(service, "obolonskyi", street, "Чужа скарга про субсидію")
    user = User(f"ex_{uuid.uuid4().hex[:8]}", PASSWORD, "Диспетчер Печерської РДА", "executor")
    await upsert_operator(pool, user.login, user.display_name, "executor", PASSWORD,
                          executor="rda_pecherskyi")
    problems: list[str] = []
    page = await new_page(browser, problems, viewport=PHONE, is_mobile=True, has_touch=True)

    await sign_in(page, base_url, user)
    await expect(page).to_have_url(f"{base_url}/executor")
    await expect(page.locator("#organisation")).to_contain_text("Печерськ")

    # filter: the search box, then the status list (applied on change by executor.js)
    await page.fill("#f-q", street)
    await page.click("#filters button[type=submit]")
    rows = page.locator("#appeals tbody tr[data-number]")
    await expect(rows).to_have_count(3)
    numbers = await rows.evaluate_all("rows => rows.map(r => r.dataset.number)")
    assert numbers == [a.number for a in reversed(ours)] and theirs.number not in numbers
    await page.select_option("#f-status", "accepted")
    await expect(page).to_have_url(re.compile(r"status=accepted"))
    await expect(page.locator("#appeals tbody tr[data-number]")).to_have_count(0)
    await page.select_option("#f-status", "open")
    await expect(rows).to_have_count(3)

    # accept, start work, resolve
    await page.click(f'a:text("{ours[0].number}")')
    await expect(page.locator("#number")).to_have_text(ours[0].number)
    await page.click("form.a-accept button")
    await expect(page.locator(".notice")).to_have_text("The appeal is accepted.")
    await expect(page.locator("#status")).to_have_text("Accepted")
    await page.click("form.a-start button")
    await expect(page.locator("#status")).to_have_text("In progress")
    # the browser itself refuses an empty resolution (the field is required) …
    await page.click("form.a-resolve button")
    await expect(page.locator("#status")).to_have_text("In progress")
    await page.fill("form.a-resolve textarea", "Субсидію перераховано")
    await page.click("form.a-resolve button")
    await expect(page.locator("#status")).to_have_text("Resolved")
    await expect(page.locator("#history")).to_contain_text("Субсидію перераховано")
    await page.screenshot(path=str(SCREENSHOT.with_name("portal-appeal.png")), full_page=True)
    done = await service.get(ours[0].id, OPERATOR)
    assert done.status is AppealStatus.DONE

    # "not ours" asks first; dismissed, nothing happens
    await page.goto(f"{base_url}/executor/appeals/{ours[1].id}")
    await page.fill("form.a-decline textarea", "Це не наше")
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await page.click("form.a-decline button")
    await expect(page.locator("#status")).to_have_text("New (routed to you)")
    assert dialogs and "are you sure" in dialogs[0]
    assert (await service.get(ours[1].id, OPERATOR)).executor_code == "rda_pecherskyi"

    await page.goto(f"{base_url}/executor?status=any&q={street}")
    await expect(rows).to_have_count(3)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    # usable on a phone: nothing wider than the screen
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert problems == []

    # another organisation's appeal, by URL: the 404 page, nothing of it shown
    response = await page.goto(f"{base_url}/executor/appeals/{theirs.id}")
    assert response is not None and response.status == 404
    await expect(page.locator("h1")).to_have_text("Not found")
    body = await page.content()
    assert theirs.number not in body and "Чужа скарга" not in body
    assert [p for p in problems if "404" not in p] == []  # Chromium logs the 404 itself


async def test_portal_and_wallboard_render_without_csp_violations(
    base_url: str, browser: Browser, pool: asyncpg.Pool, service: AppealsService
) -> None:
    appeal = await register(service, "pecherskyi", unique_street(), "Текст")
    supervisor = await add_user(pool, "supervisor")
    problems: list[str] = []
    page = await new_page(browser, problems, viewport={"width": 1280, "height": 900})
    policies: list[str] = []
    page.on("response", lambda r: policies.append(r.headers.get("content-security-policy", ""))
            if "/executor" in r.url else None)
    await sign_in(page, base_url, supervisor)
    await expect(page).to_have_url(f"{base_url}/wallboard")
    await expect(page.locator("#live")).to_have_text("live")
    await page.goto(f"{base_url}/executor?status=any")
    await expect(page.locator(f'tr[data-number="{appeal.number}"]')).to_have_count(1)
    await page.goto(f"{base_url}/executor/appeals/{appeal.id}")
    await expect(page.locator("#number")).to_have_text(appeal.number)
    await expect(page.locator("#actions")).to_contain_text("No action for you")
    # the styles and the script are the files, applied under the CSP
    header = await page.evaluate("getComputedStyle(document.querySelector('header'))"
                                 ".backgroundColor")
    assert header == "rgb(18, 53, 91)"
    assert policies and all("script-src 'self'" in p and "style-src 'self'" in p
                            for p in policies)
    assert problems == []
