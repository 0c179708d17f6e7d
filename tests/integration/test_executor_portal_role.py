"""The web role as ``hotline run`` starts it: the appeals service is wired into the web
app (the portal answers), and settled appeals past their reopening period are closed
in the background by a task that stops with the service."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import aiohttp

from crm_sync.appeals import (
    AppealsService,
    NewAppeal,
    load_appeals_config,
    load_routing_config,
)
from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from crm_sync.people import authenticate, executor_of, upsert_operator
from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
from hotline.app import HotlineService, open_backends
from hotline.cli import DEMO_APPEALS, DEMO_EXECUTOR, _seed_demo_executor
from hotline.core.appeals import Actor, ActorKind, AppealStatus, Channel
from hotline.settings import Settings
from tests.support.appeals import OPERATOR, Ids, appeals_case_store, house
from tests.support.databases import MakeDatabase
from tests.support.paths import CONFIG_DIR
from tests.support.web import PASSWORD, sign_in_session

TASK = "appeals-close-settled"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_the_web_role_serves_the_portal_and_closes_settled_appeals(
    make_database: MakeDatabase, redis_url: str
) -> None:
    url = await make_database("portal_role")
    config = load_appeals_config(CONFIG_DIR)
    pool = await create_pool(url)
    try:
        await migrate(pool)
        await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
        await load_routing_config(pool, config.routing, config.settings)
        service = AppealsService(pool, calendar=config.calendar, settings=config.settings)
        appeal = (await service.register(NewAppeal(
            channel=Channel.PHONE, category="billing_subsidies", district="pecherskyi",
            address=house(), text="Субсидія"), OPERATOR)).appeal
        worker = await Ids(pool).executor_actor("rda_pecherskyi")
        await service.accept(appeal.id, worker, channel=Channel.EXECUTOR_PORTAL)
        await service.resolve(appeal.id, worker, "Зроблено", channel=Channel.EXECUTOR_PORTAL)
        # resolved long ago: the citizen's time to reopen it is over
        await pool.execute(
            "UPDATE appeals SET status_changed_at = now() - make_interval(days => $2) "
            "WHERE id = $1", appeal.id, config.settings.reopen_days + 1)
        login = f"ex_{uuid.uuid4().hex[:8]}"
        await upsert_operator(pool, login, "Виконавець", "executor", PASSWORD,
                              executor="rda_pecherskyi")

        settings = Settings()
        settings.service.roles = ["web"]
        settings.web.port = free_port()
        settings.database.url, settings.redis.url = url, redis_url
        backends = await open_backends(settings)
        svc = HotlineService(settings, backends)
        await svc.start()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                response = await sign_in_session(http, svc.web_url.rstrip("/"), login, PASSWORD)
                assert response.status == 200 and response.url.path == "/executor"
                async with http.get(f"{svc.web_url}api/executor/appeals?status=any") as answer:
                    assert answer.status == 200
                    numbers = [a["number"] for a in (await answer.json())["appeals"]]
                assert appeal.number in numbers
            for _ in range(200):
                status = await pool.fetchval("SELECT status FROM appeals WHERE id = $1",
                                             appeal.id)
                if status == AppealStatus.CLOSED.value:
                    break
                await asyncio.sleep(0.05)
            assert status == AppealStatus.CLOSED.value
            assert [t for t in asyncio.all_tasks() if t.get_name() == TASK]
        finally:
            await svc.stop()
            await backends.close()
        assert [t for t in asyncio.all_tasks() if t.get_name() == TASK] == []
        actor = await pool.fetchval(
            "SELECT actor FROM appeal_history WHERE appeal_id = $1 AND to_status = 'closed'",
            appeal.id)
        assert actor == "system:appeals"
    finally:
        await pool.close()


async def test_the_demo_seeds_an_executor_user_with_appeals_to_work_on(
    make_database: MakeDatabase, scratch_dir: Path
) -> None:
    config = load_appeals_config(CONFIG_DIR)
    settings = Settings()
    settings.service.state_dir = str(scratch_dir)
    async with appeals_case_store(make_database, "portal_demo") as pool:
        password = await _seed_demo_executor(pool, settings, config)
        again = await _seed_demo_executor(pool, settings, config)  # a second demo run
        login, executor, _ = DEMO_EXECUTOR
        assert again == password
        who = await authenticate(pool, login, password)
        assert who is not None and who.role == "executor"
        service = AppealsService(pool, calendar=config.calendar, settings=config.settings)
        actor = Actor(ActorKind.EXECUTOR, login, executor_id=await executor_of(pool, login))
        page = await service.list_appeals(actor)
        assert len(page.items) == len(DEMO_APPEALS)
        assert {a.executor_code for a in page.items} == {executor}
