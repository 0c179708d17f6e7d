"""Load through the REAL Asterisk sandbox: every call record against queue_log.

    .venv/bin/python bench/bench_load.py              # both runs below, as root
    .venv/bin/python bench/bench_load.py --calls 900 --rate 30 --operators 150
    .venv/bin/python bench/bench_load.py --calls 300 --rate 5 --operators 40 \\
        --outage-at 20 --outage 240

Simulated citizens (Local channels with Cyrillic names, mixed digits and
patience, 8 % hanging up in the greeting) are originated at ``--rate`` calls/s
into the sandbox's inbound context; ``--operators`` simulated operators
(Local channels talking 3–8 s) are logged in to every queue. The service runs
as its own process (``hotline run --role agi,ami``) on an embedded PostgreSQL
that ``--outage`` stops for that many seconds, ``--outage-at`` seconds into
the run. An independent AMI connection records what Asterisk sent.

Reported (figures, not pass/fail): records present out of calls originated;
records equal to queue_log out of the calls queue_log closed — outcome, wait,
talk of answered calls — before reconciliation (what AMI gave) and after;
AgentComplete events missing for answered calls (and how many came without
the caller's fields); where the talk times came from; how close talk times
derived from AgentConnect → BridgeLeave would have been had no AgentComplete
come at all (the recorded stream replayed through the tracker without them;
``BENCH_DEBUG=1`` lists the ones more than a second off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from crm_sync.taxonomy import load_taxonomy  # noqa: E402
from cti_bridge.ami_client import AmiClient, AmiError  # noqa: E402
from cti_bridge.ami_protocol import AmiMessage  # noqa: E402
from cti_bridge.call_tracker import CallTracker  # noqa: E402
from hotline.core.records import CallRecord  # noqa: E402
from hotline.devtools import asterisk_sandbox as sandbox  # noqa: E402
from hotline.devtools import simulator  # noqa: E402
from hotline.devtools.embedded import start_embedded_postgres, start_embedded_redis  # noqa: E402
from hotline.settings import Settings  # noqa: E402
from ivr.menu import load_catalogue  # noqa: E402

SLOT = int(os.environ.get("HOTLINE_TEST_SLOT", "0"))
SERVER_ID = "hotline-bench"
AMI_PORT, AGI_PORT, SIP_PORT = (base + 100 * SLOT for base in (21038, 21574, 21060))
CLOSING = {"COMPLETECALLER": "answered", "COMPLETEAGENT": "answered", "ABANDON": "abandoned",
           "EXITWITHTIMEOUT": "timeout", "EXITEMPTY": "no_agents", "EXITWITHKEY": "abandoned",
           "BLINDTRANSFER": "answered", "ATTENDEDTRANSFER": "answered"}


@dataclass
class Recorder:
    """What Asterisk sent on an AMI connection of our own (and when it arrived)."""

    complete_by_uid: set[str] = field(default_factory=set)
    complete_without_caller: int = 0
    connect_by_uid: set[str] = field(default_factory=set)
    stream: list[tuple[float, AmiMessage]] = field(default_factory=list)

    def __call__(self, msg: AmiMessage) -> None:
        self.stream.append((time.time(), msg))
        if msg.event == "AgentComplete":
            uid = msg.get("Uniqueid")
            if uid:
                self.complete_by_uid.add(uid)
            else:
                self.complete_without_caller += 1
        elif msg.event == "AgentConnect" and msg.get("Uniqueid"):
            self.connect_by_uid.add(msg.get("Uniqueid") or "")


def citizen(rng: random.Random, choices: simulator.Choices) -> simulator.Citizen:
    """The demo's mix, pressing after the (uninterruptible) greeting."""
    c = simulator.random_citizen(rng, choices)
    if not c.digits:  # hangs up in the greeting
        return c
    return simulator.Citizen(c.number, c.name, c.digits, rng.uniform(4.5, 6.0), c.hangup_after)


def queue_log_calls(path: Path, offset: int) -> dict[str, dict[str, list[str]]]:
    calls: dict[str, dict[str, list[str]]] = {}
    with path.open("rb") as f:
        f.seek(offset)
        for raw in f.read().decode(errors="replace").splitlines():
            parts = raw.split("|")
            if len(parts) >= 5 and parts[1].startswith(f"{SERVER_ID}-"):
                calls.setdefault(parts[1], {})[parts[4]] = parts[5:]
    return calls


def expected(events: dict[str, list[str]]) -> dict[str, Any] | None:
    final = next((e for e in CLOSING if e in events), None)
    if final is None:
        return None
    answered = CLOSING[final] == "answered"
    if "CONNECT" in events:
        wait = int(events["CONNECT"][0])
    elif final == "EXITWITHKEY":
        wait = int(events[final][3])
    else:
        wait = int(events[final][2])
    talk = int(events[final][-2] if final.endswith("TRANSFER") else events[final][1]) \
        if answered else None
    return {"outcome": CLOSING[final], "wait_seconds": wait, "talk_seconds": talk}


def logged(path: Path, needle: str) -> bool:
    return path.exists() and needle in path.read_text(errors="replace")


async def wait_for_log(path: Path, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if logged(path, needle):
            return
        await asyncio.sleep(0.3)
    raise SystemExit(f"the service did not log {needle!r}; see {path}")


async def originate(ami: AmiClient, who: simulator.Citizen) -> bool:
    try:
        await simulator.call_in(ami, who)
    except AmiError as exc:
        print(f"  originate failed: {exc}", file=sys.stderr)
        return False
    return True


def make_scratch() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    scratch.chmod(0o755)  # the embedded PostgreSQL runs as its own user
    return scratch


async def run(args: argparse.Namespace, spec: sandbox.SandboxSpec) -> dict[str, Any]:
    scratch = make_scratch()
    pg = await asyncio.to_thread(start_embedded_postgres, scratch / "pg")
    redis = await asyncio.to_thread(start_embedded_redis, scratch / "redis")
    service_log = scratch / "service.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOTLINE_") and k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=pg.url, REDIS_URL=redis.url, HOTLINE_AMI_PORT=str(AMI_PORT),
               HOTLINE_AGI_PORT=str(AGI_PORT), HOTLINE_AMI_SECRET=spec.ami_secret,
               HOTLINE_SERVICE_SERVER_ID=SERVER_ID, HOTLINE_SERVICE_STATE_DIR=str(scratch),
               HOTLINE_ASTERISK_QUEUE_LOG=str(spec.queue_log),
               HOTLINE_SERVICE_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
    offset = spec.queue_log.stat().st_size if spec.queue_log.exists() else 0
    with service_log.open("ab") as out:
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "run", "--role", "agi,ami",
            env=env, stdout=out, stderr=out, cwd=ROOT)
    # What Asterisk sends, on an AMI connection of our own (the service's read-only
    # account); calls and operators through the simulator's account.
    listener = AmiClient("127.0.0.1", AMI_PORT, spec.ami_user, spec.ami_secret)
    recorder = Recorder()
    listener.on_event("*", recorder)
    ami = sandbox.simulator_ami(spec, action_timeout=30)
    try:
        await wait_for_log(service_log, "asterisk_connected", 60)
        await listener.start()
        await ami.start()
        queues = load_catalogue(spec.config_dir)
        choices = simulator.menu_choices(queues, load_taxonomy(spec.config_dir).spheres)
        for n in range(args.operators):
            await simulator.add_operator(ami, 5001 + n, queues.names)
        rng = random.Random(args.seed)
        outage: asyncio.Task[None] | None = None
        if args.outage:
            outage = asyncio.create_task(database_outage(pg, args.outage_at, args.outage))
        started = time.monotonic()
        originates = []
        for i in range(args.calls):  # on schedule, not one Originate reply after another
            originates.append(asyncio.create_task(originate(ami, citizen(rng, choices))))
            await asyncio.sleep(max(0.0, started + (i + 1) / args.rate - time.monotonic()))
        originated = sum(await asyncio.gather(*originates))
        arrival_seconds = time.monotonic() - started
        if outage is not None:
            await outage
        result = await settle(args, spec, pg.url, offset, originated)
        result.update(originated=originated, arrival_seconds=round(arrival_seconds, 1),
                      recorder=recorder,
                      outage=await asyncio.to_thread(spool_figures, service_log))
        for n in range(args.operators):
            await simulator.remove_operator(ami, 5001 + n, queues.names)
        return result
    finally:
        await ami.close()
        await listener.close()
        if service.returncode is None:
            service.terminate()
            await service.wait()
        kept = Path(tempfile.gettempdir()) / f"bench_load_service_{SLOT}.log"
        await asyncio.to_thread(shutil.copyfile, service_log, kept)
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(scratch, ignore_errors=True)


async def database_outage(pg: Any, at: float, seconds: float) -> None:
    await asyncio.sleep(at)
    print(f"  PostgreSQL stopped at {at:g} s for {seconds:g} s", file=sys.stderr)
    await asyncio.to_thread(pg.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(pg.restart)
    print("  PostgreSQL started again", file=sys.stderr)


async def settle(args: argparse.Namespace, spec: sandbox.SandboxSpec, url: str, offset: int,
                 originated: int) -> dict[str, Any]:
    """Wait until every call has its record and the records stop changing."""
    conn = await asyncpg.connect(url)
    try:
        deadline, last, stable_since = time.monotonic() + args.settle, None, time.monotonic()
        rows: list[asyncpg.Record] = []
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            try:
                rows = await conn.fetch("SELECT * FROM calls")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.close()
                conn = await asyncpg.connect(url)
                continue
            log = queue_log_calls(spec.queue_log, offset)
            done = sum(1 for r in rows if r["outcome"] != "in_progress")
            closed = all(expected(e) is not None for e in log.values())
            state = (len(rows), done, sum(1 for r in rows if r["reconciled_at"]))
            if state != last:
                last, stable_since = state, time.monotonic()
            if done >= originated and closed and time.monotonic() - stable_since > 6:
                break
        corrections = await conn.fetch(
            "SELECT c.uniqueid, k.field, k.was, k.became FROM call_corrections k "
            "JOIN calls c ON c.id = k.call_id")
        return {"rows": [dict(r) for r in rows], "corrections": [dict(c) for c in corrections],
                "queue_log": queue_log_calls(spec.queue_log, offset)}
    finally:
        await conn.close()


def derivation_check(recorder: Recorder, log: dict[str, dict[str, list[str]]]) -> Counter[str]:
    """The recorded stream replayed WITHOUT any AgentComplete through the call tracker
    (each message at its arrival time): how close derived talk times come to queue_log."""
    now = [datetime.now(UTC)]
    tracker = CallTracker(SERVER_ID, ["hotline-inbound"], clock=lambda: now[0])
    tracker.set_boot_epoch(1)
    finals: dict[str, CallRecord] = {}
    for at, msg in recorder.stream:
        if msg.event == "AgentComplete":
            continue
        now[0] = datetime.fromtimestamp(at, UTC)
        for emitted in tracker.handle(msg):
            if emitted.ended_at is not None:
                finals[emitted.uniqueid] = emitted
    result = Counter[str]()
    for callid, events in log.items():
        want = expected(events)
        record = finals.get(callid)
        if want is None or want["talk_seconds"] is None or record is None:
            continue
        if record.talk_seconds is None:
            result["none"] += 1
            continue
        off = abs(record.talk_seconds - want["talk_seconds"])
        result["equal" if off == 0 else "1 s off" if off == 1 else "more"] += 1
        if off > 1 and os.environ.get("BENCH_DEBUG"):
            print(f"  derived {record.talk_seconds} s, queue_log {want['talk_seconds']} s: "
                  f"{callid} {events}", file=sys.stderr)
    return result


def spool_figures(service_log: Path) -> dict[str, Any]:
    """The outage as the service logged it."""
    found: dict[str, Any] = {}
    for line in service_log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        name = event.get("event", "")
        if name in {"call_store_unavailable", "call_store_recovered"}:
            found[name] = {"pending": event.get("pending")}
        elif name in {"call_store_spool_full", "call_store_spool_replayed"}:
            found[name] = event
    return found


def report(name: str, result: dict[str, Any]) -> dict[str, Any]:
    rows = {r["uniqueid"]: r for r in result["rows"]}
    corrected: dict[str, dict[str, str | None]] = {}
    for c in result["corrections"]:
        corrected.setdefault(c["uniqueid"], {})[c["field"]] = c["was"]
    log, recorder = result["queue_log"], result["recorder"]
    compared = Counter[str]()
    equal_after, equal_before = Counter[str](), Counter[str]()
    for callid, events in log.items():
        want = expected(events)
        row = rows.get(callid)
        if want is None or row is None:
            compared["unmatched"] += 1
            continue
        for key, value in want.items():
            if key == "talk_seconds" and value is None:
                continue
            compared[key] += 1
            equal_after[key] += row[key] == value
            was = corrected.get(callid, {})  # what AMI had said, where queue_log changed it
            ami_value = was[key] if key in was else row[key]
            equal_before[key] += str(ami_value) == str(value)
    answered = [c for c, e in log.items() if "CONNECT" in e]
    missing = [c for c in answered if c not in recorder.complete_by_uid]
    sources = Counter(rows[c]["talk_source"] for c in answered if c in rows)
    derived_corrected = sum(1 for c in answered
                            if corrected.get(c, {}).get("talk_source") == "derived")
    talk_corrected = sum(1 for c in answered if "talk_seconds" in corrected.get(c, {}))
    by_member = sum(1 for c in missing if c in rows and rows[c]["talk_source"] ==
                    "agent_complete" and "talk_seconds" not in corrected.get(c, {}))
    figures = {
        "run": name,
        "calls originated": result["originated"],
        "records": len(rows),
        "records finished": sum(1 for r in rows.values() if r["outcome"] != "in_progress"),
        "arrivals (s)": result["arrival_seconds"],
        "calls closed in queue_log": len(log) - compared["unmatched"],
        "equal to queue_log after reconciliation":
            {k: f"{equal_after[k]}/{compared[k]}" for k in ("outcome", "wait_seconds",
                                                            "talk_seconds")},
        "equal to queue_log from AMI alone":
            {k: f"{equal_before[k]}/{compared[k]}" for k in ("outcome", "wait_seconds",
                                                             "talk_seconds")},
        "answered (CONNECT in queue_log)": len(answered),
        "AgentComplete missing for the caller's Uniqueid": len(missing),
        "AgentComplete events without caller fields": recorder.complete_without_caller,
        "talk source (final)": dict(sources),
        "talk derived (equal to queue_log + corrected)":
            sources.get("derived", 0) + derived_corrected,
        "talk corrected by reconciliation": talk_corrected,
        "AgentComplete without caller fields matched by member": by_member,
        "derived talk if NO AgentComplete had come (replayed stream)":
            dict(derivation_check(recorder, log)),
        "database outage (service log)": result["outage"],
    }
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int)
    parser.add_argument("--rate", type=float, help="calls per second")
    parser.add_argument("--operators", type=int)
    parser.add_argument("--outage", type=float, default=0.0, help="PostgreSQL down, seconds")
    parser.add_argument("--outage-at", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=400.0, help="max wait at the end, s")
    parser.add_argument("--seed", type=int, default=1551)
    args = parser.parse_args()
    runs: list[tuple[str, argparse.Namespace]]
    if args.calls is None:  # the two reference runs, at the machine's reduced size
        runs = [
            ("300 calls at 30 calls/s, 150 operators",
             argparse.Namespace(**{**vars(args), "calls": 300, "rate": 30.0,
                                   "operators": 150, "outage": 0.0})),
            ("150 calls at 5 calls/s, 40 operators, PostgreSQL down 20 s",
             argparse.Namespace(**{**vars(args), "calls": 150, "rate": 5.0, "operators": 40,
                                   "outage": 20.0, "outage_at": 10.0})),
        ]
    else:
        name = f"{args.calls} calls at {args.rate:g} calls/s, {args.operators} operators"
        runs = [(name + (f", PostgreSQL down {args.outage:g} s" if args.outage else ""), args)]
    spec = sandbox.SandboxSpec(
        instance=f"bench{SLOT}" if SLOT else "bench",
        root=Path(os.environ.get("HOTLINE_ASTERISK_ROOT") or Settings().asterisk.root),
        server_id=SERVER_ID, ami_port=AMI_PORT, ami_user="hotline",
        ami_secret=secrets.token_urlsafe(18), agi_host="127.0.0.1", agi_port=AGI_PORT,
        sip_port=SIP_PORT, sip_password=secrets.token_urlsafe(12),
        config_dir=Settings().config_path, queue_timeout=120,
    )
    await asyncio.to_thread(sandbox.down, spec)
    await asyncio.to_thread(sandbox.up, spec)
    try:
        for name, run_args in runs:
            print(f"\n== {name}", file=sys.stderr)
            report(name, await run(run_args, spec))
    finally:
        await asyncio.to_thread(sandbox.down, spec)


if __name__ == "__main__":
    asyncio.run(main())
