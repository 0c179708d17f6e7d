"""The informing desk in a real headless Chromium over the real PostgreSQL and Redis:
a supervisor drafts a district campaign and sees its audience, cannot approve it
herself, a second supervisor approves it (the audience is fixed and queued) and
cancels it midway; a dead letter is seen masked and replayed; the page breaks no
CSP rule and refuses an operator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, Dialog, Page, expect

from crm_sync.campaigns import load_campaigns_config
from hotline.core.people import OPERATOR, SUPERVISOR
from hotline.web.app import build_web_app
from hotline.web.campaigns import CAMPAIGNS_CONFIG
from tests.support.appeals import appeals_case_store
from tests.support.browser import chromium, new_page, serve, sign_in_page
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import SESSION_KEY, User, add_user

DISTRICT, OTHER, TOPIC = "podilskyi", "obolonskyi", "road_closures"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "informing_browser") as p:
        yield p


@pytest_asyncio.fixture
async def base_url(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[CAMPAIGNS_CONFIG] = load_campaigns_config(CONFIG_DIR)
    async with serve(app) as url:
        yield url


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def subscribers(pool: asyncpg.Pool, count: int, district: str) -> None:
    run = uuid.uuid4().int % 10**6
    ids = await pool.fetch(
        "INSERT INTO citizens (phone) SELECT unnest($1::text[]) RETURNING id",
        [f"+38097{run:06d}{n:03d}" for n in range(count)])
    await pool.execute(
        """INSERT INTO subscriptions (citizen_id, district_id, topic, confirmed_at)
           SELECT unnest($1::bigint[]), (SELECT id FROM districts WHERE code = $2), $3,
                  now()""", [r["id"] for r in ids], district, TOPIC)


async def signed_in(browser: Browser, base_url: str, user: User,
                    problems: list[str]) -> Page:
    page = await new_page(browser, problems)
    page.on("dialog", _accept)
    await sign_in_page(page, base_url, user.login, user.password)
    await page.goto(f"{base_url}/admin/informing")
    return page


async def _accept(dialog: Dialog) -> None:
    # the page asks before approving, cancelling or replaying: the person says yes
    await dialog.accept()


async def test_a_campaign_is_drafted_previewed_approved_by_another_and_cancelled(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    await subscribers(pool, 7, DISTRICT)
    await subscribers(pool, 3, OTHER)  # another district: not in the audience
    author = await add_user(pool, SUPERVISOR, "Автор")
    approver = await add_user(pool, SUPERVISOR, "Друга")
    problems: list[str] = []
    page = await signed_in(browser, base_url, author, problems)

    await page.select_option("#c-topic", TOPIC)
    await page.check(f"#c-districts input[value={DISTRICT}]")
    await page.fill("#c-text-uk", "Перекрито вулицю Сагайдачного до 18:00")
    await page.fill("#c-text-en", "Sahaidachnoho street closed until 18:00")
    await page.fill("#c-send-at", "2026-01-05T10:00")
    await page.click("#new-campaign button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("7 subscribers")
    await expect(page.locator("#d-audience")).to_have_text("7")
    campaign = int(await page.locator("#d-id").inner_text())

    await page.click("#d-approve")  # the author's own approval is refused, with the reason
    await expect(page.locator("#notice")).to_contain_text("someone other than its author")
    assert await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign) == "draft"
    assert [p for p in problems if "403" not in p] == []  # the refusal was the API's 403
    problems.clear()

    other = await signed_in(browser, base_url, approver, problems)
    await other.click(f"#campaign-list tr[data-id='{campaign}'] button")
    await other.click("#d-approve")
    await expect(other.locator("#d-status")).to_have_text("approved")
    await expect(other.locator("#d-recipients")).to_have_text("7")
    row = await pool.fetchrow("SELECT status, approved_by, recipients FROM campaigns "
                              "WHERE id = $1", campaign)
    assert dict(row) == {"status": "approved", "approved_by": approver.login, "recipients": 7}

    await other.click("#d-cancel")
    await expect(other.locator("#d-status")).to_have_text("cancelled")
    assert await pool.fetchval("SELECT cancelled_by FROM campaigns WHERE id = $1",
                               campaign) == approver.login
    assert problems == []


async def test_a_dead_letter_is_shown_masked_and_replayed(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    phone = f"+38067{uuid.uuid4().int % 10**7:07d}"
    citizen = await pool.fetchval("INSERT INTO citizens (phone) VALUES ($1) RETURNING id",
                                  phone)
    event = await pool.fetchval(
        "INSERT INTO outbox (topic, key, payload) VALUES ('test.dead', $1, '{}') RETURNING id",
        uuid.uuid4().hex)
    message = await pool.fetchval(
        """INSERT INTO outbox_messages (event_id, idempotency_key, provider, order_key,
               citizen_id, recipient, body, status, attempts, last_error)
           VALUES ($1, $2, 'sms', $3, $4, $5, 'Ваше звернення зареєстровано', 'dead', 8,
                   'gateway 503') RETURNING id""",
        event, uuid.uuid4().hex, f"sms:{citizen}", citizen, phone)
    problems: list[str] = []
    page = await signed_in(browser, base_url, await add_user(pool, SUPERVISOR), problems)
    row = page.locator(f"#dead-list tr[data-id='{message}']")
    await expect(row).to_contain_text("gateway 503")
    assert phone not in await page.content()  # masked: the number is personal
    await row.locator("button").click()
    await expect(page.locator("#notice")).to_contain_text(f"Message {message} is queued again")
    await expect(row).to_have_count(0)
    assert await pool.fetchval("SELECT status FROM outbox_messages WHERE id = $1",
                               message) == "queued"
    assert problems == []


async def test_an_operator_is_refused_the_informing_desk(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    operator = await add_user(pool, OPERATOR)
    page = await new_page(browser)
    await sign_in_page(page, base_url, operator.login, operator.password)
    response = await page.goto(f"{base_url}/admin/informing")
    assert response is not None and response.status == 403
    assert await page.locator("#new-campaign").count() == 0
