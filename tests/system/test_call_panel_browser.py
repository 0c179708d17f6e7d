"""The in-call panel in a real headless Chromium (Debian's ``/usr/bin/chromium``,
driven by playwright) on a real TCP port over the real PostgreSQL and Redis, framed
the way the desk page frames it (``<iframe id="call-panel">`` on our own origin):
an operator searches the taxonomy with a typo, fills the form, sees the server's
message by the field it names, files the appeal and reads its number; answers from
the knowledge base and sets the disposition. The case store has it all; the browser
refuses to frame any other page of ours; nothing breaks the CSP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, Route, expect

from crm_sync.desk.knowledge import ArticleFields, create_article
from hotline.web.guard import CONTENT_SECURITY_POLICY, FRAME_HOST_POLICY
from tests.support.appeals import appeals_case_store
from tests.support.browser import chromium, new_page, serve
from tests.support.databases import MakeDatabase
from tests.support.desk import desk_app, house_number, insert_call, new_phone
from tests.support.web import User, add_user

SCREENSHOT = Path("/tmp/call-panel.png")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "call_panel_browser") as p:
        yield p


@pytest_asyncio.fixture
async def base_url(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    async with serve(desk_app(pool, redis_client)) as url:
        yield url


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def sign_in(page: Page, base_url: str, user: User) -> None:
    await page.goto(f"{base_url}/login")
    await page.fill("#login", user.login)
    await page.fill("#password", user.password)
    await page.click("button[type=submit]")
    await expect(page).not_to_have_url(re.compile(r"/login$"))


async def host_page(page: Page, base_url: str, frames: dict[str, str],
                    policy: str = FRAME_HOST_POLICY) -> None:
    """A page of our origin that frames ``frames`` (id → path) under the policy the
    guard gives the desk page (``/desk``, issue 8)."""
    iframes = "".join(f'<iframe id="{i}" src="{p}" width="1000" height="1400"></iframe>'
                      for i, p in frames.items())

    async def fulfil(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html",
                            headers={"Content-Security-Policy": policy},
                            body=f"<!doctype html><html><body>{iframes}</body></html>")

    await page.route(f"{base_url}/desk-host", fulfil)
    await page.goto(f"{base_url}/desk-host")


async def test_an_operator_files_an_appeal_and_wraps_up_in_the_framed_panel(
    base_url: str, browser: Browser, pool: asyncpg.Pool
) -> None:
    operator = await add_user(pool, "operator", "Оператор Ганна")
    article = await create_article(pool, ArticleFields(
        title="Графік опалювального сезону", category="heating_temperature", keywords="батареї",
        body="Опалення вмикають, коли середньодобова температура три дні нижча за +8 °C."),
        "admin1")
    phone = new_phone()
    call_id, uniqueid = await insert_call(pool, caller_number=phone, caller_name="Олена Ґудзь")
    address = f"вул. Драйзера, {house_number()}"
    problems: list[str] = []
    page = await new_page(browser, problems, viewport={"width": 1100, "height": 1500})
    await sign_in(page, base_url, operator)
    await host_page(page, base_url, {"call-panel": f"/desk/call/{uniqueid}"})
    panel = page.frame_locator("#call-panel")
    await expect(panel.locator("#caller-number")).to_have_text(phone)
    await expect(panel.locator("#citizen")).to_have_text("новий громадянин")
    await expect(panel.locator("#tax-sphere")).to_have_value("housing")  # the call's queue
    await expect(panel.locator("#f-phone")).to_have_value(phone)

    # the taxonomy, searched with a typo (е for є)
    await panel.locator("#tax-q").fill("ліфт не працюе")
    lift = panel.locator('#tax-results button[data-code="passenger_lift_out_of_order"]')
    await lift.click()
    await expect(panel.locator("#chosen-category")).to_contain_text("пасажирський ліфт")
    # the district follows the street
    await panel.locator("#f-address").fill(address)
    await expect(panel.locator("#district-note")).to_contain_text("Деснянський")
    await expect(panel.locator("#f-district")).to_have_value("desnianskyi")

    # no text yet: the server's message by the field, nothing filed
    await panel.locator("#file-appeal").click()
    text_error = panel.locator('[data-error-for="text"]')
    await expect(text_error).to_be_visible()
    await expect(text_error).to_contain_text("describe the problem")
    await expect(panel.locator("#f-text")).to_have_attribute("aria-invalid", "true")
    assert await pool.fetchval("SELECT count(*) FROM appeals WHERE call_id = $1", call_id) == 0

    await panel.locator("#f-text").fill("Пасажирський ліфт не працює з ранку")
    await panel.locator("#f-consent").check()
    await panel.locator("#file-appeal").click()
    number_box = panel.locator("#appeal-number")
    await expect(number_box).to_have_text(re.compile(r"^1551-\d{4}-\d{6,}$"))
    await expect(text_error).to_be_hidden()
    number = await number_box.text_content()
    await expect(panel.locator("#appeal-routed")).to_contain_text("№ 7 Деснянського")
    await expect(panel.locator("#disposition")).to_have_value("appeal_created")
    row = await pool.fetchrow(
        """SELECT a.call_id, e.code AS executor, ci.phone, ci.notify_consent, a.text,
                  d.code AS district
           FROM appeals a JOIN citizens ci ON ci.id = a.citizen_id
           JOIN executors e ON e.id = a.executor_id JOIN districts d ON d.id = a.district_id
           WHERE a.number = $1""", number)
    assert row is not None and row["call_id"] == call_id
    assert (row["executor"], row["district"]) == ("zhek_desnianskyi_7", "desnianskyi")
    assert (row["phone"], row["notify_consent"]) == (phone, True)
    assert row["text"] == "Пасажирський ліфт не працює з ранку"

    # the knowledge base: another ending than the article's
    await panel.locator("#kb-q").fill("опаленням")
    await panel.locator(f'#kb-results button[data-id="{article["id"]}"]').click()
    await expect(panel.locator("#kb-title")).to_have_text("Графік опалювального сезону")
    await panel.locator("#kb-use").click()
    await expect(panel.locator("#kb-used")).to_contain_text("Графік опалювального сезону")
    # the directory
    await panel.locator("#dir-q").fill("газ")
    await expect(panel.locator("#dir-results")).to_contain_text("104")

    # wrap-up
    await panel.locator("#disposition").select_option("appeal_created")
    await panel.locator("#save-disposition").click()
    await expect(panel.locator("#disposition-saved")).to_contain_text("Звернення зареєстровано")
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    call = await pool.fetchrow("SELECT disposition, kb_article_id, citizen_id FROM calls "
                               "WHERE id = $1", call_id)
    assert (call["disposition"], call["kb_article_id"]) == ("appeal_created", article["id"])
    assert call["citizen_id"] is not None
    # Chromium logs the refused submission's 400 itself; nothing else went wrong
    assert [p for p in problems if "status of 400" not in p] == []


async def test_chromium_frames_the_panel_but_no_other_page(
    base_url: str, browser: Browser, pool: asyncpg.Pool
) -> None:
    admin = await add_user(pool, "admin")  # may open every one of these pages
    _, uniqueid = await insert_call(pool)
    page = await new_page(browser)
    await sign_in(page, base_url, admin)
    await host_page(page, base_url, {"panel": f"/desk/call/{uniqueid}",
                                     "wallboard": "/wallboard", "kb": "/desk/knowledge"})
    await expect(page.frame_locator("#panel").locator("#call-card")).to_be_visible()
    urls = {}
    for name in ("panel", "wallboard", "kb"):
        handle = await page.locator(f"#{name}").element_handle()
        assert handle is not None
        frame = await handle.content_frame()
        assert frame is not None
        urls[name] = frame.url
    assert urls["panel"].endswith(f"/desk/call/{uniqueid}")
    # refused by the browser: its error page in the frame, nothing of ours
    assert urls["wallboard"].startswith("chrome-error://"), urls
    assert urls["kb"].startswith("chrome-error://"), urls

    # any other page of ours (the default policy) cannot frame even the panel
    other = await new_page(browser)
    await sign_in(other, base_url, admin)
    await host_page(other, base_url, {"panel": f"/desk/call/{uniqueid}"},
                    policy=CONTENT_SECURITY_POLICY)
    await expect(other.frame_locator("#panel").locator("#call-card")).to_have_count(0)
    handle = await other.locator("#panel").element_handle()
    frame = await handle.content_frame() if handle is not None else None
    assert frame is not None and not frame.url.endswith(f"/desk/call/{uniqueid}"), frame


async def test_an_admin_writes_and_edits_an_article(
    base_url: str, browser: Browser, pool: asyncpg.Pool
) -> None:
    admin = await add_user(pool, "admin")
    problems: list[str] = []
    page = await new_page(browser, problems)
    await sign_in(page, base_url, admin)
    await page.goto(f"{base_url}/desk/knowledge")
    await page.fill("#a-title", "Відключення гарячої води влітку")
    await page.select_option("#a-category", "no_hot_water")
    await page.fill("#a-keywords", "ГВП, профілактика")
    await page.fill("#a-body", "Щоліта гарячу воду вимикають на профілактику до 14 днів.")
    await page.click("#a-save")
    await expect(page.locator("#a-saved")).to_have_text("Збережено.")
    await expect(page.locator("#a-heading")).to_contain_text("Стаття №")
    await expect(page.locator("#a-list tbody")).to_contain_text("Відключення гарячої води")
    # an empty title: the server's message by the field
    await page.fill("#a-title", "")
    await page.click("#a-save")
    await expect(page.locator('[data-error-for="title"]')).to_have_text("required")
    await page.fill("#a-title", "Відключення гарячої води на профілактику")
    await page.click("#a-save")
    await expect(page.locator("#a-saved")).to_have_text("Збережено.")
    await expect(page.locator("#a-heading")).to_contain_text("Стаття №")
    await expect(page.locator("#a-list tbody")).to_contain_text("на профілактику")
    row = await pool.fetchrow(
        "SELECT a.title, a.version, c.code FROM kb_articles a JOIN categories c "
        "ON c.id = a.category_id WHERE a.title LIKE 'Відключення гарячої води%'")
    assert (row["title"], row["version"], row["code"]) == (
        "Відключення гарячої води на профілактику", 2, "no_hot_water")
    assert [p for p in problems if "status of 400" not in p] == []
