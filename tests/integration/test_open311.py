"""Open311 GeoReport v2 over real HTTP (aiohttp's test server) on the real
PostgreSQL and Redis: the shapes of the specification in JSON and XML, keys per
channel, errors in the standard's form with nothing written, idempotent retries,
the guard's exemption, and the OpenAPI document against the route table."""

from __future__ import annotations

import itertools
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from crm_sync.appeals import AppealsService, load_appeals_config
from crm_sync.open311_keys import create_key, key_for, revoke_key
from hotline.core.appeals import Actor, ActorKind, Channel
from hotline.web.app import build_web_app
from hotline.web.common import APPEALS
from hotline.web.openapi import app_operations, document, documented_operations
from tests.support.appeals import Ids, appeals_case_store, unique_street
from tests.support.databases import MakeDatabase
from tests.support.open311 import (
    ATTRIBUTE,
    BASE,
    CREATED,
    REQUEST,
    SERVICE,
    report,
    xml_errors,
    xml_rows,
)
from tests.support.paths import CONFIG_DIR
from tests.support.web import SESSION_KEY, add_user, sign_in_session

Client = TestClient[web.Request, web.Application]
NUMBER = re.compile(r"1551-\d{4}-\d{6,}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    async with appeals_case_store(make_database, "open311") as pool:
        yield pool


@pytest_asyncio.fixture
async def service(pool: asyncpg.Pool) -> AppealsService:
    config = load_appeals_config(CONFIG_DIR)
    return AppealsService(pool, calendar=config.calendar, settings=config.settings)


@pytest_asyncio.fixture
async def app(pool: asyncpg.Pool, redis_client: aioredis.Redis,
              service: AppealsService) -> web.Application:
    app = build_web_app(pool, redis_client, SESSION_KEY)
    app[APPEALS] = service
    return app


@pytest_asyncio.fixture
async def client(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def key(pool: asyncpg.Pool) -> str:
    return (await create_key(pool, "web", label="test")).secret


async def appeal_count(pool: asyncpg.Pool) -> int:
    value: int = await pool.fetchval("SELECT count(*) FROM appeals")
    return value


_spot = itertools.count()


def place() -> dict[str, str]:
    """A place no other test reports (so no report is linked as a duplicate): a new
    street, and a point about 200 m from every other one (the module's database is new)."""
    i = next(_spot)
    return {"address_string": f"{unique_street()}, 5",
            "lat": f"{50.30 + (i % 100) * 0.002:.4f}", "long": f"{30.30 + (i // 100) * 0.003:.4f}"}


# --- services ------------------------------------------------------------------------


async def test_services_in_json_and_xml_as_the_specification_names_them(client: Client) -> None:
    response = await client.get(f"{BASE}/services.json")
    assert response.status == 200 and response.content_type == "application/json"
    services = await response.json()
    codes = {s["service_code"] for s in services}
    assert {"no_hot_water", "passenger_lift_out_of_order", "asphalt_repair"} <= codes
    assert all(list(s) == SERVICE for s in services)
    lift = next(s for s in services if s["service_code"] == "passenger_lift_out_of_order")
    assert lift["service_name"] == "Не працює пасажирський ліфт"
    assert (lift["metadata"], lift["type"]) == (True, "realtime")

    english = await (await client.get(f"{BASE}/services.json?locale=en")).json()
    lift_en = next(s for s in english if s["service_code"] == "passenger_lift_out_of_order")
    assert lift_en["service_name"] == "Passenger lift out of order"
    assert lift_en["group"] == "Housing and utilities"

    response = await client.get(f"{BASE}/services.xml", params={"jurisdiction_id": "kyiv.ua"})
    assert response.status == 200 and response.content_type == "text/xml"
    rows = xml_rows(await response.read(), "services", "service")
    assert all(list(row) == SERVICE for row in rows)
    assert {r["service_code"] for r in rows} == codes
    assert {r["metadata"] for r in rows} == {"true"}


async def test_service_definition_with_attributes(client: Client) -> None:
    definition = await (await client.get(
        f"{BASE}/services/passenger_lift_out_of_order.json?locale=en")).json()
    assert list(definition) == ["service_code", "attributes"]
    by_code = {a["code"]: a for a in definition["attributes"]}
    assert all(list(a) == ATTRIBUTE for a in definition["attributes"])
    assert by_code["entrance"]["required"] is True
    assert by_code["district"]["datatype"] == "singlevaluelist"
    assert {"key": "holosiivskyi", "name": "Holosiivskyi"} in by_code["district"]["values"]

    body = await (await client.get(f"{BASE}/services/passenger_lift_out_of_order.xml")).read()
    tree = ET.fromstring(body)
    assert tree.tag == "service_definition"
    assert [c.tag for c in tree] == ["service_code", "attributes"]
    attributes = tree.find("attributes")
    assert attributes is not None
    for node in attributes:
        assert node.tag == "attribute"
        assert [c.tag for c in node] == ATTRIBUTE
    district = next(n for n in attributes if n.findtext("code") == "district")
    values = list(district.iterfind("values/value"))
    assert len(values) == 10
    assert {(v.tag, tuple(c.tag for c in v)) for v in values} == {("value", ("key", "name"))}


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_unknown_service_is_404_in_the_standard_form(client: Client, fmt: str) -> None:
    response = await client.get(f"{BASE}/services/no_such_thing.{fmt}")
    assert response.status == 404
    if fmt == "json":
        errors = await response.json()
        assert errors[0]["code"] == 404 and "no_such_thing" in errors[0]["description"]
    else:
        assert xml_errors(await response.read())[0][0] == "404"


# --- POST requests ---------------------------------------------------------------------


async def test_full_path_json_post_then_get_shows_status_and_agency(
    client: Client, pool: asyncpg.Pool, service: AppealsService, key: str
) -> None:
    response = await client.post(f"{BASE}/requests.json", data=report(key, **place()))
    assert response.status == 201, await response.text()
    created = await response.json()
    assert list(created[0]) == CREATED
    number = created[0]["service_request_id"]
    assert NUMBER.fullmatch(number) and created[0]["token"] == number

    got = await client.get(f"{BASE}/requests/{number}.json",
                           params={"api_key": key, "locale": "en"})
    assert got.status == 200
    [request] = await got.json()
    assert list(request) == REQUEST
    assert request["service_request_id"] == number
    assert request["status"] == "open"
    assert request["service_code"] == "passenger_lift_out_of_order"
    assert request["agency_responsible"] == "Holosiivskyi district state administration"
    assert request["expected_datetime"] is not None
    assert request["description"].startswith("Ліфт стоїть третій день")
    assert "Номер під'їзду: 2" in request["description"]

    # the appeal's life as the executor moves it: closed, with the executor's words
    appeal = await service.get_by_number(number, Actor(ActorKind.SYSTEM, "test"))
    assert appeal.channel == "web"
    assert appeal.citizen_ids, "the citizen (phone) is recorded"
    worker = await Ids(pool).executor_actor("rda_holosiivskyi")
    await service.accept(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
    await service.resolve(appeal.id, worker, "Ліфт відремонтовано", channel=Channel.EXECUTOR_PORTAL)
    [request] = await (await client.get(f"{BASE}/requests/{number}.json",
                                        params={"api_key": key})).json()
    assert (request["status"], request["status_notes"]) == ("closed", "Ліфт відремонтовано")
    assert request["agency_responsible"].startswith("Голосіївська")


async def test_full_path_in_xml_and_the_token_resolves(client: Client, key: str) -> None:
    response = await client.post(f"{BASE}/requests.xml",
                                 data=report(key, **place(), account_id="acc-7"))
    assert response.status == 201 and response.content_type == "text/xml"
    [created] = xml_rows(await response.read(), "service_requests", "request")
    assert list(created) == CREATED and created["account_id"] == "acc-7"
    number = created["service_request_id"]

    got = await client.get(f"{BASE}/requests/{number}.xml", params={"api_key": key})
    [request] = xml_rows(await got.read(), "service_requests", "request")
    assert list(request) == REQUEST
    assert (request["status"], request["service_request_id"]) == ("open", number)
    assert request["agency_responsible"].startswith("Голосіївська")
    assert float(request["lat"]) > 50 and request["zipcode"] == ""

    token = await client.get(f"{BASE}/tokens/{created['token']}.xml", params={"api_key": key})
    assert xml_rows(await token.read(), "service_requests", "request") == [
        {"service_request_id": number, "token": number}]


async def test_json_body_and_channel_of_the_key(client: Client, pool: asyncpg.Pool) -> None:
    mobile = (await create_key(pool, "mobile")).secret
    fields = report(mobile, **place())
    body: dict[str, Any] = {k: v for k, v in fields.items() if not k.startswith("attribute")}
    body["attribute"] = {"entrance": 3, "district": "holosiivskyi"}
    response = await client.post(f"{BASE}/requests.json", json=body)
    assert response.status == 201, await response.text()
    number = (await response.json())[0]["service_request_id"]
    assert await pool.fetchval("SELECT channel FROM appeals WHERE number = $1", number) == "mobile"


async def test_a_retry_with_the_same_idempotency_key_creates_nothing(
    client: Client, pool: asyncpg.Pool, key: str
) -> None:
    fields = report(key, **place())
    headers = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    first = await client.post(f"{BASE}/requests.json", data=fields, headers=headers)
    before = await appeal_count(pool)
    again = await client.post(f"{BASE}/requests.json", data=fields, headers=headers)
    assert (first.status, again.status) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    number = (await first.json())[0]["service_request_id"]
    assert (await again.json())[0]["service_request_id"] == number
    assert await appeal_count(pool) == before

    other = dict(fields, description="Зовсім інше")
    reused = await client.post(f"{BASE}/requests.json", data=other, headers=headers)
    assert reused.status == 422
    assert number in (await reused.json())[0]["description"]
    assert await appeal_count(pool) == before


async def test_a_retry_from_the_same_device_creates_nothing(
    client: Client, pool: asyncpg.Pool, key: str
) -> None:
    fields = report(key, **place(), device_id=f"phone-{uuid.uuid4()}")
    first = await (await client.post(f"{BASE}/requests.json", data=fields)).json()
    before = await appeal_count(pool)
    again = await client.post(f"{BASE}/requests.json", data=fields)
    assert again.status == 200
    assert (await again.json())[0]["service_request_id"] == first[0]["service_request_id"]
    assert await appeal_count(pool) == before


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown service", {"service_code": "no_such_service"}, 400, "service_code"),
    ("required attribute missing", {"attribute[entrance]": ""}, 400, "attribute[entrance]"),
    ("value not in the list", {"attribute[district]": "atlantis"}, 400, "attribute[district]"),
    ("attribute of another service", {"attribute[colour]": "red"}, 400, "attribute[colour]"),
    ("lat without long", {"long": ""}, 400, "lat and long"),
    ("latitude out of range", {"lat": "91"}, 400, "lat"),
    ("no location", {"lat": "", "long": "", "address_string": ""}, 400, "location"),
    ("bad e-mail", {"email": "not-an-address"}, 400, "email"),
    ("bad media_url", {"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ("other jurisdiction", {"jurisdiction_id": "lviv.ua"}, 404, "jurisdiction_id"),
    ("no service code", {"service_code": ""}, 400, "service_code"),
]


@pytest.mark.parametrize(("case", "change", "status", "named"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_invalid_input_is_refused_in_the_standard_form_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, key: str, fmt: str, case: str,
    change: dict[str, str], status: int, named: str,
) -> None:
    fields = report(key, **place())
    fields.update(change)
    fields = {k: v for k, v in fields.items() if v != ""}
    before = await appeal_count(pool)
    response = await client.post(f"{BASE}/requests.{fmt}", data=fields)
    assert response.status == status, await response.text()
    if fmt == "json":
        errors = [(str(e["code"]), e["description"]) for e in await response.json()]
    else:
        errors = xml_errors(await response.read())
    assert errors and all(code == str(status) for code, _ in errors)
    assert any(named in text for _, text in errors), errors
    assert await appeal_count(pool) == before


MALFORMED: list[tuple[str, bytes, str, int]] = [
    ("form without =", b"api_key&service_code", "application/x-www-form-urlencoded", 400),
    ("form not utf-8", b"description=\xff\xfe", "application/x-www-form-urlencoded", 400),
    ("broken JSON", b'{"service_code": ', "application/json", 400),
    ("JSON array", b"[1, 2]", "application/json", 400),
    ("JSON nested value", b'{"service_code": {"a": 1}}', "application/json", 400),
    ("plain text", b"service_code=x", "text/plain", 415),
    ("XML body", b"<request/>", "application/xml", 415),
    ("too large", b"description=" + b"x" * 70_000, "application/x-www-form-urlencoded", 413),
]


@pytest.mark.parametrize(("case", "body", "ctype", "status"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
async def test_malformed_bodies_get_4xx_in_the_standard_form(
    client: Client, pool: asyncpg.Pool, case: str, body: bytes, ctype: str, status: int
) -> None:
    before = await appeal_count(pool)
    response = await client.post(f"{BASE}/requests.xml", data=body,
                                 headers={"Content-Type": ctype})
    assert response.status == status, await response.text()
    assert xml_errors(await response.read())[0][0] == str(status)
    assert await appeal_count(pool) == before


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_wrong_or_revoked_key_is_403(
    client: Client, pool: asyncpg.Pool, fmt: str
) -> None:
    new = await create_key(pool, "facebook")
    fields = report(new.secret, **place())
    before = await appeal_count(pool)
    for wrong in ("", "h1551_" + "x" * 43, new.secret[:-1]):
        response = await client.post(f"{BASE}/requests.{fmt}",
                                     data={**fields, "api_key": wrong} if wrong else
                                     {k: v for k, v in fields.items() if k != "api_key"})
        assert response.status == 403
    ok = await client.post(f"{BASE}/requests.{fmt}", data=fields)
    assert ok.status == 201
    await revoke_key(pool, new.key.id)
    assert await key_for(pool, new.secret) is None
    revoked = await client.post(f"{BASE}/requests.{fmt}", data=place() | fields)
    assert revoked.status == 403
    if fmt == "json":
        assert (await revoked.json())[0]["code"] == 403
    else:
        assert xml_errors(await revoked.read())[0][0] == "403"
    reading = await client.get(f"{BASE}/requests.{fmt}", params={"api_key": new.secret})
    assert reading.status == 403
    assert await appeal_count(pool) == before + 1
    # only the hash is kept
    stored = await pool.fetchval("SELECT key_sha256 FROM api_keys WHERE id = $1", new.key.id)
    assert new.secret.encode() not in bytes(stored)


async def test_other_methods_are_405_in_the_standard_form(client: Client, key: str) -> None:
    response = await client.delete(f"{BASE}/requests.json")
    assert response.status == 405 and response.headers["Allow"] == "GET, POST"
    assert (await response.json())[0]["code"] == 405
    response = await client.get(f"{BASE}/requests.yaml", params={"api_key": key})
    assert response.status == 404


# --- GET requests ----------------------------------------------------------------------


async def test_get_requests_filters_and_pages(
    client: Client, pool: asyncpg.Pool, service: AppealsService, key: str
) -> None:
    numbers = []
    for code, extra in (("passenger_lift_out_of_order", {}),
                        ("no_hot_water", {"attribute[entrance]": ""}),
                        ("no_hot_water", {"attribute[entrance]": ""})):
        fields = {k: v for k, v in (report(key, **place()) | {"service_code": code} | extra)
                  .items() if v != ""}
        response = await client.post(f"{BASE}/requests.json", data=fields)
        assert response.status == 201, await response.text()
        numbers.append((await response.json())[0]["service_request_id"])
    ids = ",".join(numbers)

    async def ask(**params: str) -> list[str]:
        response = await client.get(f"{BASE}/requests.json",
                                    params={"api_key": key, "service_request_id": ids, **params})
        assert response.status == 200, await response.text()
        return [r["service_request_id"] for r in await response.json()]

    assert await ask() == numbers[::-1]  # newest first
    assert await ask(service_code="no_hot_water") == numbers[:0:-1]
    appeal = await service.get_by_number(numbers[0], Actor(ActorKind.SYSTEM, "test"))
    await service.close(appeal.id, Actor(ActorKind.OPERATOR, "op"), channel=Channel.PHONE,
                        reason="withdrawn by the citizen")
    assert await ask(status="closed") == [numbers[0]]
    assert await ask(status="open") == numbers[:0:-1]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await ask(start_date=future) == []
    assert await ask(end_date=future, start_date="2020-01-01T00:00:00Z") == numbers[::-1]

    first = await client.get(f"{BASE}/requests.json",
                             params={"api_key": key, "service_request_id": ids, "page_size": "2"})
    assert len(await first.json()) == 2 and 'rel="next"' in first.headers["Link"]
    rest = await client.get(f"{BASE}/requests.json", params={
        "api_key": key, "service_request_id": ids, "page_size": "2",
        "after": first.headers["X-Next-Cursor"]})
    assert [r["service_request_id"] for r in await rest.json()] == [numbers[0]]
    assert "Link" not in rest.headers

    xml = await client.get(f"{BASE}/requests.xml", params={"api_key": key,
                                                            "service_request_id": ids})
    rows = xml_rows(await xml.read(), "service_requests", "request")
    assert [r["service_request_id"] for r in rows] == numbers[::-1]
    assert all(list(r) == REQUEST for r in rows)

    for bad in ({"status": "pending"}, {"start_date": "yesterday"},
                {"start_date": "2026-01-01T00:00:00"}, {"service_code": "nope"},
                {"page_size": "0"}, {"after": "garbage"}):
        response = await client.get(f"{BASE}/requests.json", params={"api_key": key, **bad})
        assert response.status == 400, bad
        assert (await response.json())[0]["code"] == 400
    missing = await client.get(f"{BASE}/requests/1551-1999-999999.json", params={"api_key": key})
    assert missing.status == 404


# --- the guard, the OpenAPI document ------------------------------------------------------


async def test_the_post_needs_no_csrf_token_but_a_cookie_is_no_key(
    client: Client, app: web.Application, pool: asyncpg.Pool, key: str
) -> None:
    # a signed-in browser's cookie does not stand for an api_key
    user = await add_user(pool, "supervisor")
    await sign_in_session(client.session, str(client.make_url("")).rstrip("/"),
                          user.login, user.password)
    assert client.session.cookie_jar.filter_cookies(client.make_url("/"))
    fields = {k: v for k, v in report(key, **place()).items() if k != "api_key"}
    response = await client.post(f"{BASE}/requests.json", data=fields)
    assert response.status == 403
    assert "api_key" in (await response.json())[0]["description"]
    # another site's page is still refused before anything is read
    before = await appeal_count(pool)
    response = await client.post(f"{BASE}/requests.json", data=report(key, **place()),
                                 headers={"Origin": "https://evil.example"})
    assert response.status == 403
    response = await client.post(f"{BASE}/requests.json", data=report(key, **place()),
                                 headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    assert await appeal_count(pool) == before
    # the browser routes still ask for the token
    response = await client.post("/logout", allow_redirects=False)
    assert response.status == 403


async def test_openapi_document_describes_every_route(
    client: Client, app: web.Application
) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    assert served["openapi"].startswith("3.")
    assert documented_operations(served) == app_operations(app)
    assert ("POST", f"{BASE}/requests.{{format}}") in app_operations(app)
    assert served == document()
    validate(served)  # a valid OpenAPI 3.1 document, every $ref resolved


async def test_a_second_report_of_one_problem_is_linked_and_says_so(
    client: Client, key: str
) -> None:
    spot = place()
    first = await (await client.post(f"{BASE}/requests.json", data=report(key, **spot))).json()
    response = await client.post(f"{BASE}/requests.json",
                                 data=report(key, **spot, phone="+380671112233"))
    assert response.status == 201
    [second] = await response.json()
    primary = first[0]["service_request_id"]
    assert second["service_request_id"] != primary
    assert primary in second["service_notice"]
    [request] = await (await client.get(f"{BASE}/requests/{second['service_request_id']}.json",
                                        params={"api_key": key})).json()
    assert (request["status"], request["status_notes"]) == ("closed", f"duplicate of {primary}")
