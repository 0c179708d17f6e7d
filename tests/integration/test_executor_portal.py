"""The executor portal over HTTP (aiohttp's test server) on the real PostgreSQL and
Redis: an executor lists, filters, pages, accepts and resolves; another
organisation's appeal is a 404 by URL, by id and through every list and filter;
state changes need the CSRF token and our own origin."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_sync.appeals import AppealsService, NewAppeal, NewAttachment, load_appeals_config
from crm_sync.people import PersonError, upsert_operator
from hotline.core.appeals import Actor, ActorKind, AppealStatus, Channel
from hotline.web.app import build_web_app
from hotline.web.common import APPEALS
from tests.support.appeals import OPERATOR, appeals_case_store, house, unique_street
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import PASSWORD, SESSION_KEY, User, add_user, csrf_in, sign_in_form

Client = TestClient[web.Request, web.Application]
OURS, THEIRS = "rda_pecherskyi", "rda_obolonskyi"
#: a category the district administrations get (no utility or housing-office rule)
CATEGORY = "billing_subsidies"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "portal") as p:
        yield p


@pytest.fixture
def service(pool: asyncpg.Pool) -> AppealsService:
    config = load_appeals_config(CONFIG_DIR)
    return AppealsService(pool, calendar=config.calendar, settings=config.settings)


@pytest_asyncio.fixture
async def client(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, service: AppealsService
) -> AsyncIterator[Client]:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[APPEALS] = service
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def executor_user(pool: asyncpg.Pool, executor: str = OURS) -> User:
    user = User(f"ex_{uuid.uuid4().hex[:8]}", PASSWORD, f"Виконавець {executor}", "executor")
    await upsert_operator(pool, user.login, user.display_name, "executor", PASSWORD,
                          executor=executor)
    return user


async def register(
    service: AppealsService, district: str, *, street: str | None = None, text: str = "",
    attachments: tuple[NewAttachment, ...] = (),
) -> Any:
    registered = await service.register(NewAppeal(
        channel=Channel.PHONE, category=CATEGORY, district=district, address=house(street),
        text=text or f"Перерахунок субсидії {uuid.uuid4().hex[:6]}",
        citizen_phone=f"+38050{uuid.uuid4().int % 10**7:07d}", attachments=attachments,
    ), OPERATOR)
    assert registered.primary is None
    return registered.appeal


async def page_token(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return csrf_in(await response.text())


async def post(client: Client, path: str, data: dict[str, str], token: str,
               **kwargs: Any) -> aiohttp.ClientResponse:
    return await client.post(path, data={**data, "csrf": token}, allow_redirects=False,
                             **kwargs)


def numbers_in(page: str) -> list[str]:
    return re.findall(r'<tr data-number="([^"]+)"', page)


async def listed(client: Client, **query: str) -> tuple[list[str], str | None]:
    response = await client.get("/api/executor/appeals", params=query)
    assert response.status == 200, await response.text()
    body = await response.json()
    return [a["number"] for a in body["appeals"]], body["next"]


# --- lists --------------------------------------------------------------------------


async def test_an_executor_lists_filters_and_pages_only_their_appeals(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    street = unique_street()
    ours = [await register(service, "pecherskyi", street=street) for _ in range(27)]
    theirs = await register(service, "obolonskyi", street=street)
    assert {a.executor_code for a in ours} == {OURS} and theirs.executor_code == THEIRS
    user = await executor_user(pool)
    await sign_in_form(client, user)

    # the page: newest first, 25 of them, a link to the next page that keeps the filter
    response = await client.get("/executor", params={"q": street})
    page = await response.text()
    assert response.status == 200
    assert numbers_in(page) == [a.number for a in reversed(ours)][:25]
    assert theirs.number not in page and "Печерська" in page
    next_href = re.search(r'<a class="next" rel="next" href="([^"]+)"', page)
    assert next_href is not None
    second = await (await client.get(next_href.group(1).replace("&amp;", "&"))).text()
    assert numbers_in(second) == [a.number for a in reversed(ours)][25:]
    assert 'rel="next"' not in second

    # the API pages the same way, keyset: no appeal twice, none skipped
    first, cursor = await listed(client, q=street)
    assert cursor is not None
    rest, end = await listed(client, q=street, after=cursor)
    assert first + rest == [a.number for a in reversed(ours)] and end is None

    # filters: district, category, status, number, overdue
    assert (await listed(client, q=street, district="obolonskyi"))[0] == []
    assert len((await listed(client, q=street, district="pecherskyi"))[0]) == 25
    assert (await listed(client, q=street, category="no_hot_water"))[0] == []
    await service.accept(ours[0].id, await _actor(pool, user), channel=Channel.EXECUTOR_PORTAL)
    assert (await listed(client, q=street, status="accepted"))[0] == [ours[0].number]
    assert (await listed(client, q=ours[3].number))[0] == [ours[3].number]
    words = ours[5].text.split()[-1]  # the unique word of its text
    assert (await listed(client, q=f"{words} {street}"))[0] == [ours[5].number]
    await pool.execute("UPDATE appeals SET due_at = now() - interval '2 days' WHERE id = ANY($1)",
                       [ours[1].id, theirs.id])
    assert (await listed(client, q=street, overdue="1"))[0] == [ours[1].number]
    overdue, _ = await listed(client, view="overdue")
    assert ours[1].number in overdue and theirs.number not in overdue
    overdue_page = await (await client.get("/executor", params={"view": "overdue"})).text()
    assert ours[1].number in overdue_page and theirs.number not in overdue_page
    assert "overdue</strong>" in overdue_page

    # a bad filter is a clear 400, not a 500
    response = await client.get("/api/executor/appeals", params={"status": "nonsense"})
    assert response.status == 400
    assert (await response.json())["message"] == "status: unknown status 'nonsense'"
    response = await client.get("/executor", params={"after": "garbage"})
    assert response.status == 400 and "not a page cursor" in await response.text()


async def _actor(pool: asyncpg.Pool, user: User) -> Actor:
    executor_id = await pool.fetchval("SELECT executor_id FROM operators WHERE login = $1",
                                      user.login)
    return Actor(ActorKind.EXECUTOR, user.login, executor_id=executor_id)


async def test_search_takes_percent_and_underscore_literally(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    street = unique_street()
    plain = await register(service, "pecherskyi", street=street, text="сто відсотків")
    marked = await register(service, "pecherskyi", street=street, text="знижка 100% за_рік")
    await sign_in_form(client, await executor_user(pool))
    assert (await listed(client, q=f"{street} %"))[0] == [marked.number]
    assert (await listed(client, q=f"{street} _"))[0] == [marked.number]
    assert set((await listed(client, q=street))[0]) == {plain.number, marked.number}


# --- one appeal, its changes ---------------------------------------------------------


async def test_an_executor_accepts_works_and_resolves_an_appeal(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    appeal = await register(service, "pecherskyi", attachments=(
        NewAttachment("https://photos.example/bill.jpg", "image/jpeg", "рахунок"),))
    await service.add_comment(appeal.id, OPERATOR, "Громадянин просить передзвонити",
                              visibility="internal", channel=Channel.PHONE)
    user = await executor_user(pool)
    await sign_in_form(client, user)
    path = f"/executor/appeals/{appeal.id}"
    response = await client.get(path)
    page = await response.text()
    assert response.status == 200
    for shown in (appeal.number, appeal.text, "Громадянин просить передзвонити",
                  "https://photos.example/bill.jpg", "рахунок", "New (routed to you)"):
        assert shown in page
    assert 'value="accepted"' in page and "/decline" in page
    token = csrf_in(page)

    response = await post(client, f"{path}/status", {"status": "accepted", "version": "1"}, token)
    assert response.status == 409, "a change made on a stale page is refused"
    assert "changed meanwhile" in await response.text()
    version = str(await pool.fetchval("SELECT version FROM appeals WHERE id = $1", appeal.id))
    response = await post(client, f"{path}/status", {"status": "accepted", "version": version},
                          token)
    assert (response.status, response.headers["Location"]) == (303, f"{path}?notice=accepted")
    page = await (await client.get(response.headers["Location"])).text()
    assert "The appeal is accepted." in page and "Start work" in page

    response = await post(client, f"{path}/status", {"status": "in_progress"}, token)
    assert response.status == 303
    response = await post(client, f"{path}/comments",
                          {"body": "Документи перевіряємо", "visibility": "citizen"}, token)
    assert response.status == 303

    # resolving needs words: the page again, with the service's reason
    response = await post(client, f"{path}/status", {"status": "done", "reason": " "}, token)
    assert response.status == 400
    assert "reason: required to change an appeal from in_progress to done" in (
        await response.text())
    response = await post(client, f"{path}/status",
                          {"status": "done", "reason": "Субсидію перераховано"}, token)
    assert response.status == 303

    # a transition the table forbids shows why, and changes nothing
    before = await pool.fetchval("SELECT version FROM appeals WHERE id = $1", appeal.id)
    response = await post(client, f"{path}/status", {"status": "accepted"}, token)
    assert response.status == 409
    assert "appeal status cannot change from done to accepted" in await response.text()
    assert await pool.fetchval("SELECT version FROM appeals WHERE id = $1", appeal.id) == before

    history = await pool.fetch(
        "SELECT actor, channel, to_status, note FROM appeal_history WHERE appeal_id = $1 "
        "AND channel = 'executor_portal' ORDER BY id", appeal.id)
    assert [(h["actor"], h["to_status"]) for h in history] == [
        (f"executor:{user.login}", "accepted"), (f"executor:{user.login}", "in_progress"),
        (f"executor:{user.login}", "done")]
    assert history[-1]["note"] == "Субсидію перераховано"
    comment = await pool.fetchrow(
        "SELECT visibility, actor FROM appeal_comments WHERE appeal_id = $1 AND body = $2",
        appeal.id, "Документи перевіряємо")
    assert dict(comment) == {"visibility": "citizen", "actor": f"executor:{user.login}"}
    body = await (await client.get(f"/api/executor/appeals/{appeal.id}")).json()
    assert body["appeal"]["status"] == "done" and body["actions"] == []


async def test_asking_the_citizen_and_declining_as_not_ours(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    asked = await register(service, "pecherskyi")
    declined = await register(service, "pecherskyi")
    await sign_in_form(client, await executor_user(pool))
    token = await page_token(client, f"/executor/appeals/{asked.id}")
    await post(client, f"/executor/appeals/{asked.id}/status", {"status": "accepted"}, token)
    response = await post(client, f"/executor/appeals/{asked.id}/status",
                          {"status": "needs_clarification", "reason": "Який номер рахунку?"},
                          token)
    assert response.status == 303
    assert (await service.get(asked.id, OPERATOR)).status is AppealStatus.NEEDS_CLARIFICATION

    response = await post(client, f"/executor/appeals/{declined.id}/decline", {"reason": ""},
                          token)
    assert response.status == 400 and "say why it is not yours" in await response.text()
    response = await post(client, f"/executor/appeals/{declined.id}/decline",
                          {"reason": "Це питання ЖЕД"}, token)
    assert (response.status, response.headers["Location"]) == (303, "/executor?notice=declined")
    after = await service.get(declined.id, OPERATOR)
    assert after.status is AppealStatus.ROUTED and after.executor_code != OURS
    # gone from the executor's reach at once
    assert (await client.get(f"/executor/appeals/{declined.id}")).status == 404


# --- another organisation's appeal ----------------------------------------------------


async def test_another_organisations_appeal_is_not_found_anywhere(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    secret = f"Секрет{uuid.uuid4().hex[:8]}"
    theirs = await register(service, "obolonskyi", text=f"Скарга {secret}")
    await service.add_comment(theirs.id, OPERATOR, f"коментар {secret}", visibility="internal",
                              channel=Channel.PHONE)
    missing = await pool.fetchval("SELECT max(id) + 1000 FROM appeals")
    await sign_in_form(client, await executor_user(pool))
    token = await page_token(client, "/executor")

    def hidden(text: str) -> None:
        for leak in (secret, theirs.number, theirs.address, THEIRS, "obolonskyi"):
            assert leak not in text, f"{leak!r} leaked"

    # by URL: the same page as for an appeal that does not exist
    response = await client.get(f"/executor/appeals/{theirs.id}")
    text = await response.text()
    assert response.status == 404
    hidden(text)
    nothing = await client.get(f"/executor/appeals/{missing}")
    assert (await nothing.text()).replace(str(missing), str(theirs.id)) == text
    for bad in ("abc", "1" * 40, "-1"):
        assert (await client.get(f"/executor/appeals/{bad}")).status == 404
    # by id through the API: the same JSON as for nothing
    response = await client.get(f"/api/executor/appeals/{theirs.id}")
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "appeal_not_found"
    hidden(str(body))
    # no change gets through, and the answer is the same 404
    version = str(theirs.version)
    for action, data in (("status", {"status": "accepted", "version": version}),
                         ("status", {"status": "rejected", "reason": "ні"}),
                         ("decline", {"reason": "не наше"}),
                         ("comments", {"body": "привіт", "visibility": "internal"})):
        response = await post(client, f"/executor/appeals/{theirs.id}/{action}", data, token)
        assert response.status == 404, action
        hidden(await response.text())
    after = await service.get(theirs.id, OPERATOR)
    assert (after.status, after.version) == (AppealStatus.ROUTED, theirs.version + 1)
    assert await pool.fetchval("SELECT count(*) FROM appeal_comments WHERE appeal_id = $1",
                               theirs.id) == 1
    # through every list and filter
    for query in ({"q": secret}, {"q": theirs.number}, {"district": "obolonskyi"},
                  {"status": "any", "q": secret}, {"view": "overdue"}, {"view": "due_soon"}):
        numbers, _ = await listed(client, **query)
        assert theirs.number not in numbers, query
        page = await (await client.get("/executor", params=query)).text()
        hidden(page.split('<table id="appeals">')[1])  # above it: the filter as typed
    await pool.execute("UPDATE appeals SET due_at = now() - interval '1 day' WHERE id = $1",
                       theirs.id)
    assert theirs.number not in (await listed(client, view="overdue"))[0]
    assert theirs.number not in (await listed(client, overdue="1", q=secret))[0]


# --- CSRF, origin, roles ----------------------------------------------------------------


async def test_portal_posts_need_the_csrf_token_and_our_origin(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    appeal = await register(service, "pecherskyi")
    await sign_in_form(client, await executor_user(pool))
    path = f"/executor/appeals/{appeal.id}"
    token = await page_token(client, path)
    for action, data in (("status", {"status": "accepted"}), ("decline", {"reason": "x"}),
                         ("comments", {"body": "x", "visibility": "internal"})):
        response = await client.post(f"{path}/{action}", data=data, allow_redirects=False)
        assert response.status == 403, action
        assert "The form has expired" in await response.text()
        response = await post(client, f"{path}/{action}", data, "0" * 64)
        assert response.status == 403, action
        response = await post(client, f"{path}/{action}", data, token,
                              headers={"Origin": "https://evil.example"})
        assert response.status == 403, action
    after = await service.get(appeal.id, OPERATOR)
    assert (after.status, after.version) == (AppealStatus.ROUTED, appeal.version)
    assert await pool.fetchval("SELECT count(*) FROM appeal_comments WHERE appeal_id = $1",
                               appeal.id) == 0
    # the state-changing routes take no GET
    assert (await client.get(f"{path}/status", allow_redirects=False)).status == 405
    response = await post(client, f"{path}/status", {"status": "accepted"}, token)
    assert response.status == 303


async def test_roles_staff_view_all_but_change_nothing_others_are_refused(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    ours = await register(service, "pecherskyi")
    theirs = await register(service, "obolonskyi")
    supervisor = await add_user(pool, "supervisor")
    await sign_in_form(client, supervisor)
    for appeal in (ours, theirs):
        page = await (await client.get(f"/executor/appeals/{appeal.id}")).text()
        assert appeal.number in page and "No action for you" in page
    numbers, _ = await listed(client, status="any")
    assert {ours.number, theirs.number} <= set(numbers)
    token = await page_token(client, "/executor")
    response = await post(client, f"/executor/appeals/{ours.id}/status", {"status": "accepted"},
                          token)
    assert response.status == 403

    await sign_in_form(client, await add_user(pool, "operator"))
    assert (await client.get("/executor", allow_redirects=False)).status == 403
    assert (await client.get("/api/executor/appeals")).status == 403

    # an executor's user without an organisation sees nothing, and is told why
    orphan = await add_user(pool, "executor")
    await sign_in_form(client, orphan)
    response = await client.get("/executor")
    assert response.status == 403 and "not linked to an executor organisation" in (
        await response.text())
    assert (await client.get(f"/api/executor/appeals/{ours.id}")).status == 403

    # an executor's home is the portal
    await sign_in_form(client, await executor_user(pool))
    response = await client.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, "/executor")


async def test_moving_a_user_to_another_organisation_moves_what_they_see(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    ours = await register(service, "pecherskyi")
    user = await executor_user(pool)
    await sign_in_form(client, user)
    assert (await client.get(f"/api/executor/appeals/{ours.id}")).status == 200
    await upsert_operator(pool, user.login, user.display_name, "executor", PASSWORD,
                          executor=THEIRS)
    assert (await client.get(f"/api/executor/appeals/{ours.id}")).status == 401  # signed out
    await sign_in_form(client, user)
    assert (await client.get(f"/api/executor/appeals/{ours.id}")).status == 404


async def test_executor_users_name_a_real_organisation(pool: asyncpg.Pool) -> None:
    login = f"ex_{uuid.uuid4().hex[:8]}"
    with pytest.raises(PersonError, match=r"^executor: no active executor organisation"):
        await upsert_operator(pool, login, "X", "executor", PASSWORD, executor="nope")
    with pytest.raises(PersonError, match=r"^executor: only an executor's user"):
        await upsert_operator(pool, login, "X", "operator", PASSWORD, executor=OURS)
    by_id = await pool.fetchval("SELECT id FROM executors WHERE code = $1", OURS)
    await upsert_operator(pool, login, "X", "executor", PASSWORD, executor=str(by_id))
    assert await pool.fetchval("SELECT executor_id FROM operators WHERE login = $1",
                               login) == by_id


async def test_the_search_index_serves_the_portals_filter(pool: asyncpg.Pool) -> None:
    """The expression of 0006's index is the one the service filters on."""
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        try:
            plan = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN SELECT id FROM appeals a WHERE (a.address || ' ' || a.text) "
                "ILIKE '%субсид%'"))
        finally:
            await conn.execute("RESET enable_seqscan")
    assert "appeals_search_trgm_idx" in plan


async def test_short_words_and_search_plans(
    client: Client, pool: asyncpg.Pool, service: AppealsService
) -> None:
    """A word of one or two letters (a house number) filters too; it is kept off the
    trigram index, and every search is planned for its own words."""
    street = unique_street()
    first = await register(service, "pecherskyi", street=street, text="Під'їзд ЖЖ без світла")
    await register(service, "pecherskyi", street=street, text="Під'їзд ЮЮ без світла")
    await sign_in_form(client, await executor_user(pool))
    assert (await listed(client, q=f"{street} жж"))[0] == [first.number]
    stats = await pool.fetchval("SELECT attstattarget FROM pg_attribute "
                                "WHERE attrelid = 'appeals_search_trgm_idx'::regclass")
    assert stats == 1000
