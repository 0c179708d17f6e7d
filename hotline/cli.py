"""The ``hotline`` command: run, migrate, demo, asterisk up|down|status, user add|deactivate,
apikey add|revoke|list, demo-data load-seed, generate-history, stats-refresh, config,
check-config.

Expected failures (a bad setting, a database or Redis that is not there, an
AMI that refuses the login, a sandbox that cannot start) end with one line
``hotline: error: …`` and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hotline.core.errors import HotlineError
from hotline.core.logs import configure_logging, get_logger
from hotline.settings import Settings, SettingsError, load_settings, read_or_create_secrets

if TYPE_CHECKING:
    import asyncpg

QueueSummary = Callable[[], Awaitable[dict[str, Any]]]

EXIT_ERROR = 2


def _parse_sets(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SettingsError(f"--set {item!r}: expected section.key=value")
        out[key.strip()] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="config file (default config/hotline.toml)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a setting (highest precedence); repeatable",
    )
    parser.add_argument("--log-format", choices=("console", "json"))
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (FastAGI, AMI, web, outbox relay)")
    run.add_argument("--role", dest="process_roles",
                     help="comma-separated roles to run: agi,ami,web,relay (default all)")

    sub.add_parser("migrate", help="apply database migrations and seed the taxonomy")

    demo = sub.add_parser("demo", help="everything on one machine with simulated calls")
    demo.add_argument("--calls-per-minute", type=float, default=12.0)
    demo.add_argument("--operators", type=int, default=4)
    demo.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    demo.add_argument("--verbose", action="store_true",
                      help="logs on the console too (default: only in the state directory)")

    ast = sub.add_parser("asterisk", help="the real Asterisk sandbox")
    ast.add_argument("action", choices=("up", "down", "status"))

    user = sub.add_parser("user", help="people who sign in to the web pages")
    user.add_argument("action", choices=("add", "deactivate"))
    user.add_argument("login")
    user.add_argument("--role", help="for add: operator, supervisor, admin, …")
    user.add_argument("--name", default="")
    user.add_argument("--executor", help="for add --role executor: the organisation's code or id")
    user.add_argument("--skills", default="", help="for add (operators): the queues they "
                      "log in to, with penalties, e.g. housing:0,main:5 (queues.toml's names)")
    user.add_argument("--member", default=None, help="for add (operators): their queue "
                      "member when not their SIP phone PJSIP/<login> (a simulated one, "
                      "Local/101@hotline-sim-operator/n)")
    user.add_argument(
        "--password-env", default="HOTLINE_NEW_PASSWORD",
        help="environment variable holding the password (asked for when unset)",
    )

    apikey = sub.add_parser("apikey", help="api keys of the Open311 intake channels")
    apikey.add_argument("action", choices=("add", "revoke", "list"))
    apikey.add_argument("target", nargs="?", help="add: the channel (web, mobile, facebook, "
                        "gov_contact_centre); revoke: the key's id")
    apikey.add_argument("--label", default="", help="for add: whose key it is")

    outbox = sub.add_parser("outbox", help="the outbox relay's messages: list, replay")
    outbox.add_argument("action", choices=("list", "replay"))
    outbox.add_argument("target", nargs="?", help="replay: a message id")
    outbox.add_argument("--dead", action="store_true", help="list: dead letters only")
    outbox.add_argument("--all-dead", action="store_true", help="replay: every dead letter")

    crm_cmd = sub.add_parser("crm", help="the external CRM: reconcile both sides")
    crm_cmd.add_argument("action", choices=("reconcile",))
    crm_cmd.add_argument("--since", required=True,
                         help="ISO date or time (UTC if no offset): appeals changed since")
    crm_cmd.add_argument("--report-only", action="store_true",
                         help="report the drift, push nothing again")

    demo_data = sub.add_parser("demo-data", help="demo data for the leadership dashboard")
    demo_data.add_argument("action", choices=("load-seed",),
                           help="load-seed: the seed's 2017 tables and ratings (again: replaced)")
    history = sub.add_parser("generate-history",
                             help="generate years of calls for the reports' scale test")
    history.add_argument("--years", type=float, default=10.0)
    history.add_argument("--calls-per-day", type=int, default=5480)
    history.add_argument("--appeals-per-year", type=int, default=1_000_000,
                         help="appeals for the dashboard's scale (0: calls only)")
    sub.add_parser("stats-refresh",
                   help="write the reports' thresholds from config and rebuild the rollups")

    sub.add_parser("config", help="print the effective settings (secrets hidden)")
    sub.add_parser(
        "check-config",
        help="check every file of the config directory and the Asterisk configuration made "
             "from it; one line per problem, exit 1 when there is any",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides: dict[str, Any] = _parse_sets(args.set)
        if args.log_format:
            overrides["service.log_format"] = args.log_format
        if getattr(args, "process_roles", None):
            overrides["service.roles"] = args.process_roles
        settings = load_settings(args.config, overrides=overrides)
        configure_logging(settings.service.log_format, settings.service.log_level)
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _expected_error(exc)
        if message is None:
            raise
        print(f"hotline: error: {message}", file=sys.stderr)
        return EXIT_ERROR


def _expected_error(exc: Exception) -> str | None:
    """The one-line message for failures a person can fix; None for bugs."""
    if isinstance(exc, HotlineError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{exc.strerror}: {exc.filename or ''}".rstrip(": ")
    return None


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "config":
        print(json.dumps(settings.redacted(), indent=2, ensure_ascii=False))
        return 0
    if args.command == "check-config":
        if not _config_ok(settings, sys.stdout):
            return 1
        print(f"{settings.config_path}: no problems")
        return 0
    if args.command in ("run", "demo") and not _config_ok(settings, sys.stderr):
        print("hotline: error: the configuration has problems (listed above); "
              "`hotline check-config` lists them too", file=sys.stderr)
        return EXIT_ERROR
    if args.command == "asterisk":
        return _asterisk(args.action, settings)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "user" and args.action == "deactivate":
        return asyncio.run(_user_deactivate(args, settings))
    if args.command == "user":
        return asyncio.run(_user_add(args, settings))
    if args.command == "apikey":
        return asyncio.run(_apikey(args, settings))
    if args.command == "outbox":
        return asyncio.run(_outbox(args, settings))
    if args.command == "crm":
        return asyncio.run(_crm_reconcile(args, settings))
    if args.command == "demo-data":
        return asyncio.run(_demo_data_load_seed(settings))
    if args.command in ("generate-history", "stats-refresh"):
        return asyncio.run(_stats(args, settings))
    if args.command == "run":
        if "ami" in settings.service.roles:
            _fill_ami_secret(settings)
        return _run_loop(_run(settings), settings.service.event_loop)
    if args.command == "demo":
        return _run_loop(_demo(args, settings), settings.service.event_loop)
    raise AssertionError(args.command)


def _run_loop(main: Coroutine[Any, Any, int], event_loop: str) -> int:
    """The long-running commands on uvloop when it is installed (``auto``): the
    FastAGI server serves about twice the sessions per CPU second on it
    (bench/bench_fastagi.py)."""
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()
                raise SettingsError(
                    "service.event_loop: uvloop is not installed (pip install '.[fast]')"
                ) from None
        else:
            return int(uvloop.run(main))
    return asyncio.run(main)


def _config_ok(settings: Settings, out: TextIO) -> bool:
    """Print every problem of the configuration, one line each; True when none."""
    from hotline.checks import check_config

    problems = check_config(settings.config_path, asterisk_root=Path(settings.asterisk.root))
    for problem in problems:
        print(problem.line(), file=out)
    return not problems


# --- secrets the demo and the sandbox generate for themselves ---------------


def instance_secrets(settings: Settings, instance: str) -> dict[str, str]:
    """Generated once per sandbox instance, kept outside the repo (file 0600 from
    its creation, directory 0700; a looser one is tightened, a foreign one refused)."""
    return read_or_create_secrets(
        settings.state_path / "secrets" / f"asterisk-{instance}.toml",
        lambda: {
            "ami_secret": secrets.token_urlsafe(24),
            "sip_password": secrets.token_urlsafe(18),
            "supervisor_password": secrets.token_urlsafe(12),
        },
    )


def _fill_ami_secret(settings: Settings) -> None:
    """Use the sandbox's generated secret when none is configured (local set-ups)."""
    if not settings.ami.secret:
        path = settings.state_path / "secrets" / f"asterisk-{settings.asterisk.instance}.toml"
        if not path.exists():
            raise SettingsError(
                "ami.secret: not set; put it in HOTLINE_AMI_SECRET or HOTLINE_SECRETS_FILE "
                "(or run `hotline asterisk up` to create a local sandbox with its own secret)"
            )
        settings.ami.secret = instance_secrets(settings, settings.asterisk.instance)["ami_secret"]


def sandbox_spec(settings: Settings) -> Any:
    from hotline.devtools.asterisk_sandbox import SandboxSpec

    values = instance_secrets(settings, settings.asterisk.instance)
    return SandboxSpec(
        instance=settings.asterisk.instance,
        root=Path(settings.asterisk.root),
        server_id=settings.service.server_id,
        ami_port=settings.ami.port,
        ami_user=settings.ami.username,
        ami_secret=settings.ami.secret or values["ami_secret"],
        agi_host=settings.agi.host,
        agi_port=settings.agi.port,
        sip_port=settings.asterisk.sip_port,
        sip_password=values["sip_password"],
        config_dir=settings.config_path,
        queue_timeout=settings.asterisk.queue_timeout,
        mirror=settings.asterisk.mirror,
        operators=tuple(settings.asterisk.sip_operators),
    )


def _asterisk(action: str, settings: Settings) -> int:
    from hotline.devtools import asterisk_sandbox as sandbox

    spec = sandbox_spec(settings)
    if action == "up":
        pid = sandbox.up(spec)
        print(f"Asterisk '{spec.instance}' is running (pid {pid}); AMI 127.0.0.1:{spec.ami_port}")
    elif action == "down":
        stopped = sandbox.down(spec)
        print(f"Asterisk '{spec.instance}' " + ("stopped" if stopped else "was not running"))
    else:
        info = sandbox.status(spec)
        print(json.dumps(info, indent=2))
        return 0 if info["running"] else 1
    return 0


# --- async commands -----------------------------------------------------------


async def _migrate(settings: Settings) -> int:
    from crm_sync.appeals import load_appeals_config, load_routing_config
    from crm_sync.migrate import migrate
    from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
    from hotline.app import open_database

    taxonomy = load_taxonomy(settings.config_path)
    appeals_config = load_appeals_config(settings.config_path)  # a bad file fails first
    database = await open_database(settings, keep_embedded=True)
    try:
        applied = await migrate(database.pool)
        counts = await seed_taxonomy(database.pool, taxonomy)
        routing = await load_routing_config(
            database.pool, appeals_config.routing, appeals_config.settings
        )
        rebuilt = await _stats_thresholds(database.pool, settings)
    finally:
        await database.close()
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    if rebuilt:
        print("statistics: thresholds changed, rollups rebuilt")
    print("taxonomy: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print("routing: " + ", ".join(f"{k} {v}" for k, v in routing.items()))
    return 0


async def _demo_data_load_seed(settings: Settings) -> int:
    from crm_sync.leadership.config import load_leadership_config
    from crm_sync.leadership.demo import load_seed
    from crm_sync.migrate import migrate
    from hotline.app import open_database

    config = load_leadership_config(settings.config_path)
    database = await open_database(settings, keep_embedded=True)
    try:
        await migrate(database.pool)
        counts = await load_seed(database.pool, settings.config_path, config)
    finally:
        await database.close()
    print("seed 2017 loaded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


async def _user_add(args: argparse.Namespace, settings: Settings) -> int:
    from crm_sync.migrate import migrate
    from crm_sync.people import upsert_operator
    from hotline.app import open_database

    if not args.role:
        raise SettingsError("user add: --role is required")
    if args.role == "executor" and not args.executor:
        raise SettingsError("user add: --executor CODE is required for --role executor")
    password = os.environ.get(args.password_env) or getpass.getpass(f"password for {args.login}: ")
    database = await open_database(settings, keep_embedded=True)
    try:
        await migrate(database.pool)  # a fresh install: people before the first `run`
        skills = await _skills(args.skills, settings) if args.skills else None
        await upsert_operator(
            database.pool, args.login, args.name or args.login, args.role, password,
            interface=args.member, executor=args.executor,
        )
        if skills is not None:
            from crm_sync.desk.operators import set_skills

            await set_skills(database.pool, args.login, skills, skills)
    finally:
        await database.close()
    print(f"user {args.login} ({args.role}) saved")
    return 0


async def _skills(text: str, settings: Settings) -> dict[str, int]:
    """``housing:0,main:5`` → queue → penalty, every queue one of the catalogue's."""
    from ivr.menu import load_catalogue

    catalogue = await asyncio.to_thread(load_catalogue, settings.config_path)
    skills: dict[str, int] = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        queue, _, penalty = (p.strip() for p in item.partition(":"))
        if not penalty.isdigit() or not 0 <= int(penalty) <= 100:
            raise SettingsError(f"user add: --skills: {item!r} is not QUEUE:PENALTY (0 to 100)")
        if queue not in catalogue.queues:
            raise SettingsError(f"user add: --skills: {queue!r} is not a queue of queues.toml "
                                f"({', '.join(catalogue.names)})")
        skills[queue] = int(penalty)
    return skills


async def _user_deactivate(args: argparse.Namespace, settings: Settings) -> int:
    """They can no longer sign in; their open sessions and websockets end at once."""
    from crm_sync.people import PersonError, deactivate_person
    from hotline.app import open_database

    database = await open_database(settings, keep_embedded=True)
    try:
        found = await deactivate_person(database.pool, args.login)
    finally:
        await database.close()
    if not found:
        raise PersonError(f"login: no such user {args.login!r}")
    print(f"user {args.login} deactivated")
    return 0


async def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    """``add CHANNEL`` prints the new key once (only its hash is kept); ``revoke ID``
    refuses it from the next request on; ``list`` shows ids, channels and prefixes."""
    from crm_sync.migrate import migrate
    from crm_sync.open311_keys import create_key, list_keys, revoke_key
    from hotline.app import open_database

    if args.action != "list" and not args.target:
        raise SettingsError(f"apikey {args.action}: say which "
                            f"{'channel' if args.action == 'add' else 'key id'}")
    if args.action == "revoke" and not args.target.isdigit():
        raise SettingsError(f"apikey revoke: a key id (see `hotline apikey list`), "
                            f"got {args.target!r}")
    database = await open_database(settings, keep_embedded=True)
    try:
        await migrate(database.pool)
        if args.action == "add":
            new = await create_key(database.pool, args.target, label=args.label,
                                   created_by=getpass.getuser())
            print(f"api key {new.key.id} for channel {new.key.channel.value} "
                  "(shown once; only its hash is kept):", file=sys.stderr)
            print(new.secret)
        elif args.action == "revoke":
            key = await revoke_key(database.pool, int(args.target))
            print(f"api key {key.id} ({key.channel.value}, {key.prefix}…) revoked")
        else:
            for key in await list_keys(database.pool):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                print(f"{key.id}\t{key.channel.value}\t{key.prefix}…\t{state}\t{key.label}")
    finally:
        await database.close()
    return 0


async def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    """``list [--dead]``: newest first, numbers masked; ``replay ID|--all-dead``: back
    to the queue, same idempotency key."""
    from crm_sync.migrate import migrate
    from crm_sync.outbox.admin import list_messages, replay
    from hotline.app import open_database
    from hotline.core.privacy import mask_phone

    if args.action == "replay" and not args.all_dead and not str(args.target).isdigit():
        raise SettingsError("outbox replay: a message id, or --all-dead")
    database = await open_database(settings, keep_embedded=True)
    try:
        await migrate(database.pool)
        if args.action == "list":
            for m in await list_messages(database.pool, dead=args.dead):
                who = m["recipient"] if "@" in m["recipient"] else mask_phone(m["recipient"])
                print(f"{m['id']}\t{m['provider']}\t{m['status']}\t{m['attempts']}\t{who}\t"
                      f"{m['idempotency_key']}\t{m['last_error'] or ''}")
        else:
            count = await replay(database.pool, None if args.all_dead else int(args.target),
                                 datetime.now(UTC))
            print(f"{count} message(s) queued again")
    finally:
        await database.close()
    return 0


async def _crm_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the report as JSON; exit 1 when there was drift (2 is an error)."""
    from crm_sync.migrate import migrate
    from crm_sync.outbox.crm import CrmClient, reconcile
    from hotline.app import open_database

    if not settings.crm.url:
        raise SettingsError("crm reconcile: crm.url is not set")
    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        raise SettingsError(f"crm reconcile: --since {args.since!r}: an ISO date expected") \
            from None
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    client = CrmClient(settings.crm.url, settings.crm.api_key,
                       timeout=settings.crm.request_timeout)
    database = await open_database(settings, keep_embedded=True)
    try:
        await migrate(database.pool)
        report = await reconcile(database.pool, client, since, fix=not args.report_only,
                                 now=datetime.now(UTC))
    finally:
        await client.close()
        await database.close()
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    return 1 if report.drift else 0


async def _stats_thresholds(pool: asyncpg.Pool, settings: Settings) -> bool:
    """The SL and short-abandon thresholds from config into the case store; the
    rollups rebuilt when they changed. True if rebuilt."""
    from crm_sync.stats.rollup import refresh_all, write_thresholds
    from ivr.menu import load_catalogue

    catalogue = load_catalogue(settings.config_path)
    levels = {name: q.service_level for name, q in catalogue.queues.items()}
    if not await write_thresholds(pool, levels, settings.stats.short_abandon_seconds):
        return False
    await refresh_all(pool)
    return True


async def _stats(args: argparse.Namespace, settings: Settings) -> int:
    """``generate-history``: years of calls with a progress bar; ``stats-refresh``."""
    from crm_sync.leadership.history import generate_appeals
    from crm_sync.migrate import migrate
    from crm_sync.stats.history import generate_calls
    from crm_sync.stats.rollup import refresh_all
    from hotline.app import open_database

    database = await open_database(settings, keep_embedded=True)
    try:
        await migrate(database.pool)
        if args.command == "stats-refresh":
            if not await _stats_thresholds(database.pool, settings):
                await refresh_all(database.pool)
            print("statistics: rollups rebuilt")
            return 0
        if (not 0 < args.years <= 20 or not 0 < args.calls_per_day <= 1_000_000
                or not 0 <= args.appeals_per_year <= 10_000_000):
            raise SettingsError("generate-history: --years 0-20, --calls-per-day 1-1000000, "
                                "--appeals-per-year 0-10000000")
        if await database.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM calls WHERE asterisk_server = 'history')"):
            raise SettingsError("generate-history: this database already has generated "
                                "history (calls of server 'history')")
        await _stats_thresholds(database.pool, settings)
        started = datetime.now(UTC)

        def progress(done: int, total: int, calls: int) -> None:
            elapsed = (datetime.now(UTC) - started).total_seconds()
            eta = elapsed / done * (total - done) if done else 0
            bar = "#" * (30 * done // total) + "." * (30 - 30 * done // total)
            print(f"\r[{bar}] {done}/{total} months, {calls:,} calls, {elapsed:.0f} s, "
                  f"about {eta:.0f} s to go ", end="", file=sys.stderr, flush=True)

        calls = await generate_calls(database.pool, years=args.years, progress=progress,
                                     calls_per_day=args.calls_per_day)
        print(file=sys.stderr)
        print(f"generated {calls:,} calls")
        if args.appeals_per_year:
            def appeals_progress(done: int, total: int) -> None:
                elapsed = (datetime.now(UTC) - started).total_seconds()
                bar = "#" * (30 * done // max(total, 1))
                print(f"\r[{bar:.<30}] {done:,}/{total:,} appeals, {elapsed:.0f} s ",
                      end="", file=sys.stderr, flush=True)

            appeals = await generate_appeals(
                database.pool, years=max(1, round(args.years)), progress=appeals_progress,
                per_year=args.appeals_per_year, config_dir=settings.config_path)
            print(file=sys.stderr)
            print(f"generated {appeals:,} appeals")
    finally:
        await database.close()
    return 0


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _run(settings: Settings) -> int:
    from crm_sync.migrate import migrate
    from hotline.app import HotlineService, open_backends, run_until_stopped

    backends = await open_backends(settings)
    try:
        await migrate(backends.pool)
        service = HotlineService(settings, backends)
        await run_until_stopped(service, _stop_event())
    finally:
        await backends.close()
    return 0


#: How often `hotline demo` prints its one-line status.
DEMO_STATUS_SECONDS = 5.0


def _open_demo_log(settings: Settings) -> tuple[Path, TextIO]:
    """The demo's log file under the state directory (created 0640 in a 0750 folder:
    masked as they are, the logs still describe citizens' calls)."""
    folder = settings.state_path / "logs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = folder / "demo.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    return path, os.fdopen(fd, "a", encoding="utf-8", buffering=1)


async def _demo_status(pool: asyncpg.Pool, queue_summary: QueueSummary, since: datetime) -> str:
    """``12:00:05  calls 12  waiting 2  answered 8  abandoned 1``: finished calls
    from the case store, callers waiting now from Asterisk's queue summary."""
    import asyncpg

    from crm_sync.stats import figures_by_queue

    calls = answered = abandoned = waiting = "?"
    try:
        queues = await figures_by_queue(pool, since, 20)
        calls = str(sum(q["offered"] for q in queues))
        answered = str(sum(q["answered"] for q in queues))
        abandoned = str(sum(q["abandoned"] for q in queues))
    except (HotlineError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        get_logger("hotline.demo").warning("demo_status_unavailable", part="calls", error=str(exc))
    try:
        summary = await queue_summary()
        waiting = str(sum(q["callers"] for q in summary["queues"]))
    except (HotlineError, OSError) as exc:
        get_logger("hotline.demo").warning("demo_status_unavailable", part="queues", error=str(exc))
    return (f"{datetime.now():%H:%M:%S}  calls {calls}  waiting {waiting}  "
            f"answered {answered}  abandoned {abandoned}")


async def _print_demo_status(
    pool: asyncpg.Pool, queue_summary: QueueSummary, since: datetime, every: float
) -> None:
    while True:
        await asyncio.sleep(every)
        print(await _demo_status(pool, queue_summary, since), flush=True)


#: The demo's executor user: (login, organisation, display name).
DEMO_EXECUTOR = ("executor.pecherskyi", "rda_pecherskyi", "Печерська РДА, диспетчер")


#: (category, address, text) of the appeals the demo's executor finds in the portal.
DEMO_APPEALS = (
    ("no_cold_water", "вул. Хрещатик, 15", "Немає холодної води в будинку з ранку"),
    ("passenger_lift_out_of_order", "вул. Велика Васильківська, 72",
     "Не працює пасажирський ліфт у третьому під'їзді"),
    ("billing_subsidies", "бул. Лесі Українки, 21", "Прошу перерахувати субсидію за жовтень"),
    ("no_cold_water", "вул. Липська, 6", "Слабкий тиск холодної води на п'ятому поверсі"),
)


async def _seed_demo_executor(pool: asyncpg.Pool, settings: Settings, appeals_config: Any) -> str:
    """A user of a district administration for the executor portal, and a few appeals
    for them on a first run; the password is generated once into the secrets directory."""
    from crm_sync.appeals import AppealsService, NewAppeal
    from crm_sync.people import upsert_operator
    from hotline.core.appeals import Actor, ActorKind, Channel

    values = await asyncio.to_thread(
        read_or_create_secrets, settings.state_path / "secrets" / "demo-executor.toml",
        lambda: {"password": secrets.token_urlsafe(12)},
    )
    login, executor, name = DEMO_EXECUTOR
    await upsert_operator(pool, login, name, "executor", values["password"], executor=executor)
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM appeals a JOIN executors e "
                               "ON e.id = a.executor_id WHERE e.code = $1)", executor):
        service = AppealsService(pool, calendar=appeals_config.calendar,
                                 settings=appeals_config.settings)
        for n, (category, address, text) in enumerate(DEMO_APPEALS):
            await service.register(NewAppeal(
                channel=Channel.PHONE, category=category, district="pecherskyi",
                address=address, text=text, citizen_phone=f"+3805000000{n:02d}",
            ), Actor(ActorKind.OPERATOR, "demo"))
    return values["password"]


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    log_path: Path | None = None
    log_file: TextIO | None = None
    if not args.verbose:
        # The console is for the banner and the status line; the logs go to a file.
        log_path, log_file = _open_demo_log(settings)
        configure_logging(settings.service.log_format, settings.service.log_level, log_file)
    try:
        return await _run_demo(args, settings, log_path)
    finally:
        if log_file is not None:
            configure_logging(settings.service.log_format, settings.service.log_level)
            log_file.close()


async def _run_demo(args: argparse.Namespace, settings: Settings, log_path: Path | None) -> int:
    from crm_sync.appeals import load_appeals_config, load_routing_config
    from crm_sync.migrate import migrate
    from crm_sync.people import upsert_operator
    from crm_sync.taxonomy import load_taxonomy, seed_taxonomy
    from hotline.app import HotlineService, open_backends
    from hotline.core.aio import cancel_and_wait
    from hotline.devtools import asterisk_sandbox as sandbox
    from hotline.devtools import simulator
    from ivr.menu import load_catalogue

    log = get_logger("hotline.demo")
    values = instance_secrets(settings, settings.asterisk.instance)
    settings.ami.secret = settings.ami.secret or values["ami_secret"]
    spec = sandbox_spec(settings)
    taxonomy, queues = load_taxonomy(spec.config_dir), load_catalogue(spec.config_dir)
    appeals_config = load_appeals_config(spec.config_dir)
    stop = _stop_event()
    started_at = datetime.now(UTC)
    if log_path is not None:
        print(f"Starting the Hotline 1551 demo; logs in {log_path}", flush=True)
    async with contextlib.AsyncExitStack() as cleanup:
        # Undone in reverse order, whatever fails part-way.
        await asyncio.to_thread(sandbox.up, spec)
        cleanup.push_async_callback(asyncio.to_thread, sandbox.down, spec)
        backends = await open_backends(settings)
        cleanup.push_async_callback(backends.close)
        await migrate(backends.pool)
        await seed_taxonomy(backends.pool, taxonomy)
        await load_routing_config(backends.pool, appeals_config.routing, appeals_config.settings)
        await upsert_operator(
            backends.pool, "supervisor", "Черговий супервізор", "supervisor",
            values["supervisor_password"],
        )
        executor_password = await _seed_demo_executor(backends.pool, settings, appeals_config)
        from crm_sync.desk.knowledge import seed_demo_articles  # the in-call panel's KB

        await seed_demo_articles(backends.pool)
        service = HotlineService(settings, backends)
        cleanup.push_async_callback(service.stop)
        await service.start()
        if service.cti is None:
            raise SettingsError("service.roles: the demo needs the ami role")
        # The simulator's own AMI account: the service's has no right to originate.
        ami = sandbox.simulator_ami(spec)
        await ami.start()
        cleanup.push_async_callback(ami.close)
        for n in range(args.operators):
            await simulator.add_operator(ami, 101 + n, queues.names)
        choices = simulator.menu_choices(queues, taxonomy.spheres)
        traffic = asyncio.create_task(
            simulator.run_traffic(ami, args.calls_per_minute, stop, choices)
        )

        async def stop_traffic() -> None:
            stop.set()
            log.info("demo_traffic_stopped", calls=await traffic)

        cleanup.push_async_callback(stop_traffic)
        print(
            "\nHotline 1551 demo is running.\n"
            f"  wallboard:  {service.web_url}  (login: supervisor, password: "
            f"{values['supervisor_password']})\n"
            f"  executors:  {service.web_url}executor  (login: {DEMO_EXECUTOR[0]}, password: "
            f"{executor_password})\n"
            f"  Asterisk:   AMI 127.0.0.1:{spec.ami_port}, queue_log {spec.queue_log}\n"
            f"  FastAGI:    {settings.agi.host}:{settings.agi.port}\n"
            f"  traffic:    {args.calls_per_minute:g} calls/min, {args.operators} operators\n"
            f"  logs:       {log_path if log_path is not None else 'on this console'}\n"
            f"  A status line every {DEMO_STATUS_SECONDS:g} s; Ctrl-C stops it.\n",
            flush=True,
        )
        status = asyncio.create_task(
            _print_demo_status(
                backends.pool, service.cti.queue_summary, started_at, DEMO_STATUS_SECONDS
            ),
            name="demo-status",
        )
        cleanup.push_async_callback(cancel_and_wait, status)
        if args.duration > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.duration)
        else:
            await stop.wait()
        print("Stopping…", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
