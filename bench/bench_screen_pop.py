"""Screen-pop latency: from the AgentCalled event to the operator's browser websocket.

    .venv/bin/python bench/bench_screen_pop.py [--operators 200] [--rates 0.556,10]
                                               [--seconds 60]

Three processes, as a deployment runs them (embedded PostgreSQL and Redis in a
temporary folder):

- the *ami role*: our AMI client logged in to a fake Asterisk (this process's
  :class:`tests.support.fake_ami_server.FakeAmiServer`), the call tracker and the
  desk's :class:`cti_bridge.desk.DeskController` with the real case-store lookups
  (citizen by number, their appeals through the appeals service, recent calls);
- the *web role*: the real web app on 127.0.0.1 (one Redis subscriber for all its
  websockets);
- this process: the fake Asterisk, and ``--operators`` operators' desk websockets
  (``/ws/desk``, a signed session each), all connected for the whole run.

Each call is Newchannel + QueueCallerJoin, then AgentCalled for one operator (in
turn), AgentConnect 0.5 s later, AgentComplete 2 s later (after 10 warm-up calls,
reported apart). Every caller is a
known citizen with an open appeal. The latency of a call is from the moment this
process writes AgentCalled to the AMI socket to the moment that operator's
websocket delivers the pop: it includes the AMI hop, the case-store lookups,
Redis and the web process. 2,000 calls an hour is 0.556 call/s; the other rates
accelerate it (the same work per call, closer together) to show the headroom.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.support.fake_ami_server import FakeAmiServer  # noqa: E402

AMI_USER, AMI_SECRET = "hotline", "bench-secret"
NOMINAL_RATE = 2000 / 3600


def interface(n: int) -> str:
    return f"Local/{7000 + n}@hotline-sim-operator/n"


def caller(n: int) -> str:
    return f"38050{n:07d}"


async def prepare(pg_url: str, operators: int, citizens: int) -> None:
    """Schema, taxonomy, routing; the operators; citizens with an open appeal each."""
    from crm_sync.appeals import (
        AppealsService,
        NewAppeal,
        load_appeals_config,
        load_routing_config,
    )
    from crm_sync.db import create_pool
    from crm_sync.migrate import migrate
    from crm_sync.people import hash_password
    from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
    from hotline.core.appeals import Actor, ActorKind, Channel
    from hotline.settings import CONFIG_DIR

    pool = await create_pool(pg_url)
    await migrate(pool)
    await seed_taxonomy(pool, load_taxonomy(CONFIG_DIR))
    config = load_appeals_config(CONFIG_DIR)
    await load_routing_config(pool, config.routing, config.settings)
    password = hash_password("bench-password")
    await pool.executemany(
        "INSERT INTO operators (login, display_name, role, password_hash, queue_interface) "
        "VALUES ($1, $2, 'operator', $3, $4)",
        [(f"op{n}", f"Оператор {n}", password, interface(n)) for n in range(operators)])
    service = AppealsService(pool, calendar=config.calendar, settings=config.settings)
    actor = Actor(ActorKind.OPERATOR, "bench")
    for n in range(citizens):
        await service.register(NewAppeal(
            channel=Channel.PHONE, category="no_cold_water", district="obolonskyi",
            address=f"вул. Бенчмаркова, {n + 1}", text="Немає холодної води",
            citizen_phone="+" + caller(n), citizen_name=f"Громадянин {n}"), actor)
    await pool.close()


def run_web(pg_url: str, redis_url: str, operators: int, out: Any) -> None:
    """The web role; puts its port and one session token per operator on ``out``."""

    async def main() -> None:
        import redis.asyncio as aioredis
        from aiohttp import web

        from crm_sync.db import create_pool
        from hotline.core.logs import configure_logging
        from hotline.core.people import Principal
        from hotline.web.app import build_web_app
        from hotline.web.common import SESSIONS

        configure_logging("console", "error")
        pool = await create_pool(pg_url)
        redis = aioredis.Redis.from_url(redis_url)
        app = build_web_app(pool, redis, uuid.uuid4().bytes * 2)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        epochs = dict(await pool.fetch("SELECT login, session_epoch FROM operators"))
        tokens = [await app[SESSIONS].create(Principal(f"op{n}", f"Оператор {n}", "operator"),
                                             epochs[f"op{n}"]) for n in range(operators)]
        out.put((runner.addresses[0][1], tokens))
        await asyncio.Event().wait()

    asyncio.run(main())


def run_ami_role(pg_url: str, redis_url: str, ami_port: int, ready: Any) -> None:
    """The ami role's desk part, logged in to the fake Asterisk."""

    async def main() -> None:
        import redis.asyncio as aioredis

        from crm_sync.appeals import AppealsService, load_appeals_config
        from crm_sync.db import create_pool
        from crm_sync.desk.operators import PostgresCallerContext, PostgresOperatorDirectory
        from cti_bridge.ami_client import AmiClient
        from cti_bridge.call_tracker import CallTracker
        from cti_bridge.desk import DeskController
        from hotline.core.desk import DeskConfig, PauseReason
        from hotline.core.logs import configure_logging
        from hotline.settings import CONFIG_DIR

        configure_logging("console", "error")
        pool = await create_pool(pg_url)
        redis = aioredis.Redis.from_url(redis_url)
        config = load_appeals_config(CONFIG_DIR)
        appeals = AppealsService(pool, calendar=config.calendar, settings=config.settings)
        ami = AmiClient("127.0.0.1", ami_port, AMI_USER, AMI_SECRET, ping_interval=0)
        tracker = CallTracker("bench", ["hotline-inbound"])
        ami.on_event("*", tracker.handle)
        DeskController(ami, tracker, redis, PostgresOperatorDirectory(pool),
                       PostgresCallerContext(pool, appeals),
                       DeskConfig((PauseReason("lunch", "Обід"),), 0, "", 5.0),
                       queues={"housing": {"label": "ЖКГ", "sphere": "housing"}})
        await ami.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def scenario(server: FakeAmiServer, sockets: list[aiohttp.ClientWebSocketResponse],
                   rate: float, seconds: float, citizens: int) -> list[float]:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    all_sent, drained = asyncio.Event(), asyncio.Event()
    operators = len(sockets)

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            received = time.perf_counter()
            data = json.loads(message.data)
            if data.get("type") == "pop" and data.get("state") == "ringing":
                started = sent.pop(data["uniqueid"], None)
                if started is not None:
                    latencies.append(received - started)
                if all_sent.is_set() and not sent:
                    drained.set()

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    followups: set[asyncio.Task[None]] = set()

    async def follow(uid: str, member: str) -> None:
        await asyncio.sleep(0.5)
        await server.emit({"Event": "AgentConnect", "Queue": "housing", "Interface": member,
                           "Uniqueid": uid, "Channel": f"Local/1551@hotline-inbound-{uid};2",
                           "HoldTime": "1", "RingTime": "1"})
        await asyncio.sleep(2.0)
        await server.emit({"Event": "AgentComplete", "Queue": "housing", "Interface": member,
                           "Uniqueid": uid, "Reason": "caller"},
                          {"Event": "Hangup", "Uniqueid": uid, "Cause": "16"})

    calls = max(1, int(rate * seconds))
    begun = time.perf_counter()
    for i in range(calls):
        await asyncio.sleep(max(0.0, begun + i / rate - time.perf_counter()))
        uid = f"{int(time.time())}.{uuid.uuid4().int % 10**8}"
        number, member = caller(i % citizens), interface(i % operators)
        await server.emit(
            {"Event": "Newchannel", "Channel": f"Local/1551@hotline-inbound-{uid};2",
             "Uniqueid": uid, "Linkedid": uid, "Context": "hotline-inbound", "Exten": "1551",
             "CallerIDNum": number, "CallerIDName": "Громадянин"},
            {"Event": "QueueCallerJoin", "Queue": "housing", "Uniqueid": uid, "Position": "1",
             "Count": "1"})
        sent[uid] = time.perf_counter()
        await server.emit({"Event": "AgentCalled", "Queue": "housing", "Interface": member,
                           "MemberName": "Оператор", "Uniqueid": uid, "CallerIDNum": number,
                           "CallerIDName": "Громадянин", "Language": "uk",
                           "Channel": f"Local/1551@hotline-inbound-{uid};2"})
        task = asyncio.create_task(follow(uid, member))
        followups.add(task)
        task.add_done_callback(followups.discard)
    all_sent.set()
    if sent:  # the last pops on their way
        drained.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), 10)
    lost = len(sent)
    await asyncio.gather(*followups)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    if lost:
        print(f"  {lost} pops never arrived")
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operators", type=int, default=200)
    parser.add_argument("--citizens", type=int, default=300)
    parser.add_argument("--rates", default=f"{NOMINAL_RATE:.3f},10",
                        help="calls per second, comma-separated (0.556 = 2,000 an hour)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per rate")
    args = parser.parse_args()

    from hotline.core.logs import configure_logging
    from hotline.devtools.embedded import astart_embedded_postgres, astart_embedded_redis

    configure_logging("console", "error")
    with tempfile.TemporaryDirectory(prefix="bench-pop-") as folder:
        pg = await astart_embedded_postgres(Path(folder) / "pg")
        redis = await astart_embedded_redis(Path(folder) / "redis")
        processes: list[Any] = []
        try:
            t = time.perf_counter()
            await prepare(pg.url, args.operators, args.citizens)
            print(f"prepared {args.operators} operators, {args.citizens} citizens with an "
                  f"appeal each in {time.perf_counter() - t:.1f} s")
            server = FakeAmiServer(AMI_USER, AMI_SECRET)
            await server.start()
            ctx = multiprocessing.get_context("spawn")
            out, ready = ctx.Queue(), ctx.Event()
            processes = [
                ctx.Process(target=run_web, args=(pg.url, redis.url, args.operators, out)),
                ctx.Process(target=run_ami_role, args=(pg.url, redis.url, server.port, ready)),
            ]
            for process in processes:
                process.start()
            web_port, tokens = await asyncio.to_thread(out.get, True, 60)
            assert await asyncio.to_thread(ready.wait, 60), "the ami role did not start"
            base = f"http://127.0.0.1:{web_port}"
            sessions = [aiohttp.ClientSession(cookies={"hotline_session": token})
                        for token in tokens]
            sockets = [await s.ws_connect(f"{base}/ws/desk", headers={"Origin": base})
                       for s in sessions]
            print(f"{len(sockets)} operator websockets connected")
            await asyncio.sleep(1.0)
            # The first pops of a process are slower (the directory's first read, query
            # plans, connections): reported apart, not mixed into the steady state.
            warm = await scenario(server, sockets, 5.0, 2.0, args.citizens)
            print(f"warm-up: {len(warm)} pops, first {warm[0] * 1000:.1f} ms, "
                  f"max {max(warm) * 1000:.1f} ms")
            for rate in (float(r) for r in args.rates.split(",")):
                latencies = await scenario(server, sockets, rate, args.seconds, args.citizens)
                ms = [v * 1000 for v in latencies]
                label = ("2,000 calls/hour" if abs(rate - NOMINAL_RATE) < 0.01
                         else f"{rate * 3600:,.0f} calls/hour ({rate / NOMINAL_RATE:.0f}x)")
                print(f"{label}: {len(ms)} pops, p50 {pct(ms, 0.5):.1f} ms, "
                      f"p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms")
            for ws in sockets:
                await ws.close()
            for s in sessions:
                await s.close()
            await server.stop()
        finally:
            for process in processes:
                process.terminate()
                process.join(10)
            await asyncio.to_thread(redis.stop)
            await asyncio.to_thread(pg.stop)


if __name__ == "__main__":
    asyncio.run(main())
