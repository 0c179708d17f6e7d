"""The in-call panel over HTTP (aiohttp's test server) on the real PostgreSQL and
Redis: an appeal filed from a call goes through the appeals service, linked to the
call and the citizen and routed by config/routing.toml; the taxonomy search forgives
typos; the knowledge base is searched in Ukrainian (other endings, apostrophes,
typos in titles); the article and the disposition land on the call; every bad field
is named and nothing is written; roles, CSRF and Origin are enforced; only the panel
may be framed, and only by our own pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.core.desk import DISPOSITIONS
from tests.support.appeals import appeals_case_store
from tests.support.databases import MakeDatabase
from tests.support.desk import desk_app, house_number, insert_call, new_phone
from tests.support.web import User, add_user, sign_in_form

Client = TestClient[web.Request, web.Application]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "call_panel") as p:
        yield p


@pytest_asyncio.fixture
async def client(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Client]:
    async with TestClient(TestServer(desk_app(pool, redis_client))) as test_client:
        yield test_client


async def signed_in(client: Client, pool: asyncpg.Pool, role: str = "operator") -> str:
    user: User = await add_user(pool, role)
    return await sign_in_form(client, user)


async def post(client: Client, path: str, token: str | None, body: dict[str, Any]) -> Any:
    headers = {"X-CSRF-Token": token} if token is not None else {}
    return await client.post(path, json=body, headers=headers)


def appeal_form(**changes: Any) -> dict[str, Any]:
    form = {"category": "passenger_lift_out_of_order",
            "address": f"вул. Драйзера, {house_number()}", "district": "",
            "text": "Ліфт не працює третій день", "phone": new_phone(), "name": "Олена",
            "email": "", "notify_channel": "sms", "consent": True}
    form.update(changes)
    return form


async def counts(pool: asyncpg.Pool) -> tuple[int, ...]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM appeals), (SELECT count(*) FROM citizens),
                  (SELECT count(*) FROM outbox), (SELECT count(*) FROM appeal_history)""")
    return tuple(row)


# --- the appeal ----------------------------------------------------------------------


async def test_an_appeal_from_a_call_is_linked_routed_and_numbered(
    client: Client, pool: asyncpg.Pool
) -> None:
    token = await signed_in(client, pool)
    phone = new_phone()
    call_id, uniqueid = await insert_call(pool, caller_number=phone, caller_name="Олена")
    info = await (await client.get(f"/api/desk/calls/{uniqueid}")).json()
    assert info["call"]["caller_number"] == phone and info["citizen"] is None
    assert [s["code"] for s in info["queue_spheres"]] == ["housing"]
    assert [d["code"] for d in info["dispositions"]] == list(DISPOSITIONS)

    # no district given: the street list says Desnianskyi, whose housing office 7
    # has vul. Draizera (config/routing.toml)
    form = appeal_form(phone=phone, form_id="form-0001-abcdef")
    response = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token, form)
    assert response.status == 201, await response.text()
    body = await response.json()
    number = body["appeal"]["number"]
    assert re.fullmatch(r"1551-\d{4}-\d{6,}", number)
    assert body["district_resolved"] is True
    assert body["appeal"]["executor"] == "zhek_desnianskyi_7"
    row = await pool.fetchrow(
        """SELECT a.call_id, a.citizen_id, a.channel, a.status, d.code AS district,
                  e.code AS executor, ci.phone, ci.name, ci.notify_consent, ci.notify_channel,
                  (SELECT citizen_id FROM calls WHERE id = a.call_id) AS call_citizen,
                  (SELECT role FROM appeal_citizens WHERE appeal_id = a.id) AS role,
                  (SELECT count(*) FROM appeal_routings WHERE appeal_id = a.id) AS routings
           FROM appeals a JOIN citizens ci ON ci.id = a.citizen_id
           JOIN districts d ON d.id = a.district_id JOIN executors e ON e.id = a.executor_id
           WHERE a.number = $1""", number)
    assert row["call_id"] == call_id and row["call_citizen"] == row["citizen_id"]
    assert (row["phone"], row["name"], row["role"]) == (phone, "Олена", "author")
    assert (row["channel"], row["status"], row["district"]) == ("phone", "routed", "desnianskyi")
    assert row["executor"] == "zhek_desnianskyi_7" and row["routings"] == 1
    assert row["notify_consent"] is True and row["notify_channel"] == "sms"
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE payload->>'number' = $1 "
                               "AND topic = 'appeal.created'", number) == 1

    # a retried submission of the same form: the same appeal, nothing new
    again = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token, form)
    assert again.status == 200
    assert (await again.json())["appeal"]["number"] == number
    assert await pool.fetchval("SELECT count(*) FROM appeals WHERE call_id = $1", call_id) == 1
    info = await (await client.get(f"/api/desk/calls/{uniqueid}")).json()
    assert [a["number"] for a in info["appeals"]] == [number]
    assert info["citizen"]["phone"] == phone


async def test_routing_follows_the_category_and_the_chosen_district(
    client: Client, pool: asyncpg.Pool
) -> None:
    token = await signed_in(client, pool, "supervisor")
    cases = [
        # heating goes to the city's heat utility whatever the district
        ("heating_temperature", f"вул. Липська, {house_number()}", "", "kyivteploenergo"),
        # subsidies: the district's administration; the street resolves Pecherskyi
        ("billing_subsidies", f"вул. Липська, {house_number()}", "", "rda_pecherskyi"),
        # a street not in the list: the district chosen by hand decides
        ("billing_subsidies", f"вул. Невідома, {house_number()}", "obolonskyi",
         "rda_obolonskyi"),
    ]
    for category, address, district, executor in cases:
        _, uniqueid = await insert_call(pool)
        response = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token,
                              appeal_form(category=category, address=address,
                                          district=district))
        assert response.status == 201, await response.text()
        assert (await response.json())["appeal"]["executor"] == executor, (category, address)


async def test_a_known_citizen_is_reused_and_their_call_linked(
    client: Client, pool: asyncpg.Pool
) -> None:
    token = await signed_in(client, pool)
    phone = new_phone()
    citizen_id = await pool.fetchval(
        "INSERT INTO citizens (phone, name) VALUES ($1, 'Петро') RETURNING id", phone)
    call_id, uniqueid = await insert_call(pool, caller_number=phone)
    info = await (await client.get(f"/api/desk/calls/{uniqueid}")).json()
    assert info["citizen"]["id"] == citizen_id and info["citizen"]["name"] == "Петро"
    before = await pool.fetchval("SELECT count(*) FROM citizens")
    response = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token,
                          appeal_form(phone=phone, name="Інше ім'я", consent=False,
                                      notify_channel="none"))
    assert response.status == 201, await response.text()
    number = (await response.json())["appeal"]["number"]
    row = await pool.fetchrow("SELECT citizen_id, call_id FROM appeals WHERE number = $1", number)
    assert (row["citizen_id"], row["call_id"]) == (citizen_id, call_id)
    assert await pool.fetchval("SELECT count(*) FROM citizens") == before
    citizen = await pool.fetchrow("SELECT name, notify_consent FROM citizens WHERE id = $1",
                                  citizen_id)
    assert (citizen["name"], citizen["notify_consent"]) == ("Петро", False)


async def test_every_bad_field_gets_its_message_and_nothing_is_written(
    client: Client, pool: asyncpg.Pool
) -> None:
    token = await signed_in(client, pool)
    _, uniqueid = await insert_call(pool)
    before = await counts(pool)
    response = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token, {
        "category": "", "address": f"вул. Невідома, {house_number()}", "district": "",
        "text": "   ", "phone": "12ab", "name": "x" * 201, "email": "not-an-address",
        "notify_channel": "pigeon", "consent": "yes", "colour": "red"})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_input"
    fields = body["details"]["fields"]
    assert set(fields) == {"category", "district", "text", "phone", "name", "email",
                           "notify_channel", "consent", "colour"}
    assert "choose the district" in fields["district"]
    assert "digits" in fields["phone"] and "e-mail" in fields["email"]
    # codes that do not exist, and an e-mail channel without an address
    response = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token, appeal_form(
        category="no_such_issue", district="atlantis", email="", notify_channel="email",
        address=""))
    fields = (await response.json())["details"]["fields"]
    assert set(fields) == {"category", "address", "district", "email"}
    response = await post(client, f"/api/desk/calls/{uniqueid}/appeal", token,
                          appeal_form(district="atlantis"))
    assert (await response.json())["details"]["fields"] == {
        "district": "unknown district 'atlantis'"}
    assert await counts(pool) == before
    assert await pool.fetchval("SELECT citizen_id FROM calls WHERE uniqueid = $1",
                               uniqueid) is None


# --- searches --------------------------------------------------------------------------


async def test_the_taxonomy_search_forgives_typos(client: Client, pool: asyncpg.Pool) -> None:
    await signed_in(client, pool)

    async def first(q: str, sphere: str = "") -> list[str]:
        response = await client.get("/api/desk/taxonomy", params={"q": q, "sphere": sphere})
        assert response.status == 200
        return [i["code"] for i in (await response.json())["issues"]]

    assert (await first("асфальд"))[0] == "asphalt_repair"  # д for т
    assert (await first("опаленя"))[0] == "heating_temperature"  # a letter missing
    assert (await first("субсидя"))[0] == "billing_subsidies"
    assert (await first("гарача вода"))[0] == "no_hot_water"  # a keyword, misspelt
    assert "passenger_lift_out_of_order" in (await first("ліфт не працюе"))[:2]
    assert await first("асфальд", sphere="housing") == []
    transport = await first("", sphere="transport")
    assert transport == ["asphalt_repair"]
    assert len(await first("")) == 10


async def create_article(client: Client, token: str, **fields: Any) -> dict[str, Any]:
    response = await post(client, "/api/admin/kb/articles", token, fields)
    assert response.status == 201, await response.text()
    article: dict[str, Any] = (await response.json())["article"]
    return article


async def test_the_knowledge_base_is_searched_in_ukrainian(
    client: Client, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    admin_token = await signed_in(client, pool, "admin")
    heating = await create_article(
        client, admin_token, title="Графік опалювального сезону", category="heating_temperature",
        keywords="батареї, тепло", body="Опалення вмикають, коли середньодобова температура "
        "три дні поспіль нижча за +8 °C.")
    subsidy = await create_article(
        client, admin_token, title="Як оформити житлову субсидію", category="billing_subsidies",
        body="Заяву про призначення субсидій подають до центру соціальних виплат.")
    lights = await create_article(
        client, admin_token, title="Освітлення під’їздів", category="no_entrance_lighting",
        body="Лампи в під’їзді замінює обслуговуюча організація будинку.")
    hidden = await create_article(
        client, admin_token, title="Застаріла стаття про опалення", body="Неактуально.",
        active=False)

    async with TestClient(TestServer(desk_app(pool, redis_client))) as operator:
        await signed_in(operator, pool)

        async def found(q: str) -> list[int]:
            response = await operator.get("/api/desk/kb", params={"q": q})
            assert response.status == 200
            return [a["id"] for a in (await response.json())["articles"]]

        # other endings than the article's: the stems match
        assert (await found("опаленням"))[:1] == [heating["id"]]
        assert (await found("субсидії"))[:1] == [subsidy["id"]]
        assert (await found("субсидію житлову")) == [subsidy["id"]]
        # the apostrophe typed otherwise (' against ’), another case
        assert (await found("під'їзді"))[:1] == [lights["id"]]
        # a keyword; a typo in a title word
        assert heating["id"] in await found("батареях")
        assert (await found("опалювальнго"))[:1] == [heating["id"]]
        assert hidden["id"] not in await found("опалення")
        assert await found("космодром") == []
        one = await operator.get(f"/api/desk/kb/{heating['id']}")
        assert (await one.json())["article"]["title"] == "Графік опалювального сезону"
        assert (await operator.get(f"/api/desk/kb/{hidden['id']}")).status == 404
        # operators read, admins write
        refused = await post(operator, "/api/admin/kb/articles", None, {"title": "x"})
        assert refused.status == 403

    # the admin sees hidden articles too, edits with the version they read
    listing = await (await client.get("/api/admin/kb/articles", params={"q": "опалення"})).json()
    assert {heating["id"], hidden["id"]} <= {a["id"] for a in listing["articles"]}
    edit = await post(client, f"/api/admin/kb/articles/{hidden['id']}", admin_token, {
        "title": hidden["title"], "body": "Знову актуально.", "active": True,
        "version": str(hidden["version"])})
    assert edit.status == 200 and (await edit.json())["article"]["version"] == 2
    stale = await post(client, f"/api/admin/kb/articles/{hidden['id']}", admin_token, {
        "title": "Стара версія", "body": "x", "version": str(hidden["version"])})
    assert stale.status == 409
    bad = await post(client, "/api/admin/kb/articles", admin_token,
                     {"title": "", "body": "", "category": "no_such", "active": "so"})
    assert set((await bad.json())["details"]["fields"]) == {"title", "body", "active"}


async def test_the_directory_and_the_streets_are_searchable(
    client: Client, pool: asyncpg.Pool
) -> None:
    await signed_in(client, pool)
    gas = await (await client.get("/api/desk/directory", params={"q": "запах газу"})).json()
    assert [s["phone"] for s in gas["services"]] == ["104"]
    everything = await (await client.get("/api/desk/directory")).json()
    assert len(everything["services"]) >= 5
    street = await (await client.get("/api/desk/streets", params={"q": "Драйзера 12"})).json()
    assert street["district"] == "desnianskyi" and street["street"] == "вул. Драйзера"
    typo = await (await client.get("/api/desk/streets", params={"q": "вул. Драйзерра, 3"})).json()
    assert typo["district"] == "desnianskyi"
    unknown = await client.get("/api/desk/streets", params={"q": "вул. Марсіанська 1"})
    assert (await unknown.json())["district"] is None


# --- what is recorded on the call ------------------------------------------------------------


async def test_the_article_and_the_disposition_are_recorded_on_the_call(
    client: Client, pool: asyncpg.Pool
) -> None:
    admin_token = await signed_in(client, pool, "admin")
    article = await create_article(client, admin_token, title="Вивіз сміття за графіком",
                                   body="Графік вивозу сміття оприлюднює районна адміністрація.")
    inactive = await create_article(client, admin_token, title="Неактивна", body="-",
                                    active=False)
    call_id, uniqueid = await insert_call(pool)
    path = f"/api/desk/calls/{uniqueid}"
    assert (await post(client, f"{path}/article", admin_token,
                       {"article_id": article["id"]})).status == 200
    assert (await post(client, f"{path}/disposition", admin_token,
                       {"disposition": "consultation"})).status == 200
    row = await pool.fetchrow("SELECT disposition, kb_article_id FROM calls WHERE id = $1",
                              call_id)
    assert (row["disposition"], row["kb_article_id"]) == ("consultation", article["id"])
    for body, field in (({"disposition": "bored"}, "disposition"),
                        ({"article_id": inactive["id"]}, "article_id"),
                        ({"article_id": "x"}, "article_id")):
        action = "disposition" if field == "disposition" else "article"
        response = await post(client, f"{path}/{action}", admin_token, body)
        assert response.status == 400
        assert (await response.json())["details"]["field"] == field
    row = await pool.fetchrow("SELECT disposition, kb_article_id FROM calls WHERE id = $1",
                              call_id)
    assert (row["disposition"], row["kb_article_id"]) == ("consultation", article["id"])
    missing = await post(client, "/api/desk/calls/0.0/disposition", admin_token,
                         {"disposition": "dropped"})
    assert missing.status == 404 and (await missing.json())["error"] == "call_not_found"


async def test_the_disposition_catalogue_is_the_schemas(pool: asyncpg.Pool) -> None:
    definition = await pool.fetchval(
        """SELECT pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = 'calls'::regclass AND conname = 'calls_disposition_check'""")
    assert sorted(re.findall(r"'(\w+)'::text", definition)) == sorted(DISPOSITIONS)


# --- who may, and from where -------------------------------------------------------------


async def test_executors_anonymous_and_forged_requests_are_refused(
    client: Client, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    call_id, uniqueid = await insert_call(pool)
    path = f"/api/desk/calls/{uniqueid}"
    # nobody signed in
    assert (await client.get(path)).status == 401
    assert (await client.post(f"{path}/disposition", json={"disposition": "dropped"})).status in (
        401, 403)
    page = await client.get(f"/desk/call/{uniqueid}", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/login"
    # an executor's user
    token = await signed_in(client, pool, "executor")
    assert (await client.get(path)).status == 403
    assert (await client.get(f"/desk/call/{uniqueid}")).status == 403
    assert (await client.get("/api/desk/taxonomy", params={"q": "ліфт"})).status == 403
    response = await post(client, f"{path}/appeal", token, appeal_form())
    assert response.status == 403
    assert (await post(client, f"{path}/disposition", token,
                       {"disposition": "dropped"})).status == 403

    async with TestClient(TestServer(desk_app(pool, redis_client))) as operator:
        token = await signed_in(operator, pool)
        before = await counts(pool)
        # no CSRF token, a wrong one, another site's page
        assert (await post(operator, f"{path}/appeal", None, appeal_form())).status == 403
        wrong = await post(operator, f"{path}/appeal", "0" * 64, appeal_form())
        assert (await wrong.json())["error"] == "csrf_failed"
        foreign = await operator.post(f"{path}/disposition", json={"disposition": "dropped"},
                                      headers={"X-CSRF-Token": token,
                                               "Origin": "https://evil.example"})
        assert foreign.status == 403 and (await foreign.json())["error"] == "origin_refused"
        assert await counts(pool) == before
        assert await pool.fetchval("SELECT disposition FROM calls WHERE id = $1", call_id) is None
        # the operator with the page's token may
        assert (await post(operator, f"{path}/disposition", token,
                           {"disposition": "dropped"})).status == 200


async def test_only_the_panel_is_frameable_and_only_by_our_pages(
    client: Client, pool: asyncpg.Pool
) -> None:
    await signed_in(client, pool)
    _, uniqueid = await insert_call(pool)
    panel = await client.get(f"/desk/call/{uniqueid}")
    assert panel.status == 200
    assert panel.headers["X-Frame-Options"] == "SAMEORIGIN"
    csp = panel.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" not in csp
    text = await panel.text()
    assert f'data-uniqueid="{uniqueid}"' in text and "/static/call_panel.js" in text
    # an unknown call: the 404 page, in the frame too
    missing = await client.get("/desk/call/1.404")
    assert missing.status == 404 and missing.headers["X-Frame-Options"] == "SAMEORIGIN"
    for path in ("/", "/login", f"/api/desk/calls/{uniqueid}", "/api/desk/kb",
                 "/static/call_panel.js", "/desk/knowledge", "/desk/call"):
        response = await client.get(path, allow_redirects=False)
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


async def test_the_knowledge_page_is_for_admins(
    client: Client, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await signed_in(client, pool, "admin")
    page = await client.get("/desk/knowledge")
    assert page.status == 200 and "/static/knowledge_admin.js" in await page.text()
    async with TestClient(TestServer(desk_app(pool, redis_client))) as operator:
        await signed_in(operator, pool)
        assert (await operator.get("/desk/knowledge")).status == 403
        assert (await operator.get("/api/admin/kb/articles")).status == 403


async def test_the_demo_articles_are_written_once_and_found(pool: asyncpg.Pool) -> None:
    from crm_sync.desk.knowledge import DEMO_ARTICLES, search_articles, seed_demo_articles

    await pool.execute("UPDATE calls SET kb_article_id = NULL")
    await pool.execute("DELETE FROM kb_articles")
    assert await seed_demo_articles(pool) == len(DEMO_ARTICLES)
    assert await seed_demo_articles(pool) == 0
    hits = await search_articles(pool, "субсидії")
    assert hits and hits[0]["title"] == "Як оформити житлову субсидію"
