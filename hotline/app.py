"""The composition root: the one place that wires adapters to services.

``Backends`` are PostgreSQL and Redis (embedded unless URLs are given);
``HotlineService`` starts the roles asked for (agi, ami, web) on top of them
and stops them in reverse order, awaiting every task it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from crm_sync.appeals import AppealsService, load_appeals_config
from crm_sync.call_store import (
    PostgresCallStore,
    PostgresIvrJournal,
    RetryingCallSink,
    RetryingIvrJournal,
)
from crm_sync.callflow import (
    PostgresCallbacks,
    PostgresHoursOverrides,
    PostgresNotices,
    RedisQueueLoad,
)
from crm_sync.campaigns import load_campaigns_config
from crm_sync.db import DatabaseUnavailable, create_pool, describe_dsn
from crm_sync.desk.config import load_desk_config
from crm_sync.ivr_store import (
    PhoneAppealLookup,
    PostgresCallerLanguages,
    PostgresSurveySink,
    spoken_names,
)
from crm_sync.leadership.config import load_leadership_config
from crm_sync.leadership.rollups import refresh_rollups
from crm_sync.live_bus import RedisLiveBus
from crm_sync.operator_states import PostgresOperatorStates, RetryingOperatorStates
from crm_sync.outbox.providers import DkimKey
from crm_sync.reconciler import QueueLogReconciler
from crm_sync.spool import Spool
from cti_bridge.ami_client import AmiClient
from cti_bridge.call_tracker import CallTracker
from cti_bridge.callback_dialer import CallbackDialer
from cti_bridge.service import CtiService
from hotline.core import health, metrics
from hotline.core.aio import cancel_and_wait
from hotline.core.errors import ConfigError, HotlineError, UnavailableError
from hotline.core.logs import get_logger
from hotline.devtools.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    start_embedded_postgres,
    start_embedded_redis,
)
from hotline.settings import (
    PROCESS_ROLES,
    RelaySettings,
    Settings,
    SettingsError,
    hide_credentials,
    read_or_create_secrets,
)
from hotline.web.announcements import ANNOUNCEMENT_AUDIO
from hotline.web.app import build_web_app
from hotline.web.call_panel import DESK_CONFIG
from hotline.web.campaigns import CAMPAIGNS_CONFIG
from hotline.web.common import APPEALS, REDIS
from hotline.web.crm_webhook import CRM_WEBHOOK, CrmWebhook
from hotline.web.dashboard import LEADERSHIP_CONFIG
from hotline.web.delivery_reports import NOTIFICATIONS, Notifications
from hotline.web.ops import MetricsAccess
from hotline.web.options import WebOptions
from ivr.flows import build_routes
from ivr.flows.callflow import Callflow, load_callflow
from ivr.menu import load_ivr_config
from ivr.server import EnvLimits, FastAgiServer

log = get_logger("hotline.app")
STOP_TIMEOUT_SECONDS = 15.0


class RedisUnavailable(UnavailableError):
    """Redis cannot be reached; the message names where we looked."""

    error_id = "redis_unavailable"


async def close_pool(pool: asyncpg.Pool, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Close gracefully, but not forever: ``Pool.close`` waits for every borrowed
    connection, and one stuck query must not keep the process from exiting."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        log.error("database_pool_close_timed_out", seconds=timeout)
        pool.terminate()


@dataclass
class Backends:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    database_url: str
    redis_url: str
    embedded: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    async def close(self) -> None:
        await close_pool(self.pool)
        await self.redis.aclose()
        for server in reversed(self.embedded):
            await asyncio.to_thread(server.release)


@dataclass
class Database:
    """The case store's pool, and the embedded server behind it if we started one."""

    pool: asyncpg.Pool
    url: str
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        await close_pool(self.pool)
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.release)


async def open_database(settings: Settings, *, keep_embedded: bool = False) -> Database:
    """Connect to PostgreSQL, starting the embedded one when ``database.url`` is empty.

    With ``keep_embedded`` an embedded server outlives this process (``hotline
    migrate`` uses that so that a following ``hotline run`` finds its data).
    """
    url = settings.database.url
    embedded: EmbeddedPostgres | None = None
    if not url:
        # Not in the data directory: every process sharing the server reads it, the
        # server's own user must not.
        embedded = await asyncio.to_thread(
            start_embedded_postgres, settings.state_path / "postgres",
            secrets_file=settings.state_path / "secrets" / "postgres.toml",
        )
        url = embedded.url
    try:
        pool = await create_pool(url)
    except DatabaseUnavailable:
        if embedded is not None and not keep_embedded:
            await asyncio.to_thread(embedded.release)
        raise
    return Database(pool, url, None if keep_embedded else embedded)


def _start_embedded_redis(settings: Settings) -> EmbeddedRedis:
    """The embedded Redis with the password kept in the secrets directory (so a
    person can reach it with ``redis-cli``); blocking."""
    values = read_or_create_secrets(
        settings.state_path / "secrets" / "redis.toml",
        lambda: {"password": secrets.token_urlsafe(32)},
    )
    return start_embedded_redis(settings.state_path / "redis", password=values["password"])


async def open_backends(settings: Settings) -> Backends:
    """The case store and Redis (embedded ones unless URLs are set)."""
    database = await open_database(settings)
    embedded: list[EmbeddedPostgres | EmbeddedRedis] = []
    if database.embedded is not None:
        embedded.append(database.embedded)
    redis_url = settings.redis.url
    opened = False
    try:
        if not redis_url:
            server = await asyncio.to_thread(_start_embedded_redis, settings)
            redis_url = server.url
            embedded.append(server)
        redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=3)
        try:
            await redis.ping()
        except (OSError, aioredis.RedisError) as exc:
            await redis.aclose()
            where = hide_credentials(redis_url)
            raise RedisUnavailable(f"Redis at {where} is not reachable: {exc}") from None
        opened = True
    finally:
        if not opened:
            await close_pool(database.pool)
            for server_ in reversed(embedded):
                await asyncio.to_thread(server_.release)
    return Backends(database.pool, redis, database.url, redis_url, embedded)


#: Stops registered while starting, run in reverse order.
StopStep = tuple[str, Callable[[], Awaitable[Any]]]


class HotlineService:
    """The roles of one process, started over shared backends.

    Each role is one entry of :data:`PARTS`: a function that starts it and
    registers how to stop each thing it started. Stopping runs those in reverse
    order, each within :data:`STOP_TIMEOUT_SECONDS`, whatever the others do.
    """

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends
        self.agi_server: FastAgiServer | None = None
        self.cti: CtiService | None = None
        self.web_runner: web.AppRunner | None = None
        self.bus = RedisLiveBus(backends.redis_url)
        self._stops: list[StopStep] = [("bus", self.bus.close)]
        #: Filled by each part as it starts; ``/readyz`` reports it.
        self.readiness = health.Readiness(running=False)

    def needs_backends(self, *names: str) -> None:
        """Readiness checks of the backends a part uses (``database``, ``redis``)."""
        checks: dict[str, health.Check] = {
            health.DATABASE: lambda: self.backends.pool.fetchval("SELECT 1"),
            health.REDIS: lambda: self.backends.redis.ping(),
        }
        for name in names:
            self.readiness.add(name, checks[name])

    def on_stop(self, name: str, step: Callable[[], Awaitable[Any]]) -> None:
        self._stops.append((name, step))

    async def start(self) -> None:
        started = False
        try:
            for role in self.settings.service.roles:
                await PARTS[role](self)
            started = True
            self.readiness.running = True
        finally:
            if not started:
                await self.stop()

    @property
    def web_url(self) -> str:
        return f"http://{self.settings.web.host}:{self.settings.web.port}/"

    async def stop(self) -> None:
        """Reverse order of start; each part is stopped even if another fails."""
        self.readiness.running = False  # drain: load balancers stop sending first
        while self._stops:
            name, step = self._stops.pop()
            try:
                # A part that does not stop in time must not keep the others running.
                await asyncio.wait_for(step(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.error("stop_timed_out", part=name, seconds=STOP_TIMEOUT_SECONDS)
            except Exception as exc:
                log.warning("stop_failed", part=name, error=str(exc))
        self.web_runner = self.cti = self.agi_server = None


async def _start_agi(service: HotlineService) -> None:
    s = service.settings
    journal = RetryingIvrJournal(PostgresIvrJournal(service.backends.pool))
    journal.start()
    service.on_stop("journal", journal.stop)
    # The IVR's reads and writes in the case store (issue 9: language, status, survey).
    pool = service.backends.pool
    appeals_config = await asyncio.to_thread(load_appeals_config, s.config_path)
    appeal_lookup = PhoneAppealLookup(AppealsService(pool, calendar=appeals_config.calendar,
                                                     settings=appeals_config.settings))
    speakable = frozenset(await asyncio.to_thread(spoken_names, s.config_path))
    menu = load_ivr_config(s.config_path)
    routes = build_routes(menu, journal, s.service.server_id,
                          languages=PostgresCallerLanguages(pool), appeals=appeal_lookup,
                          surveys=PostgresSurveySink(pool), speakable=speakable,
                          callflow=await _callflow(service, menu.queues.names))
    service.agi_server = FastAgiServer(
        routes, s.agi.host, s.agi.port, env_timeout=s.agi.env_timeout,
        max_sessions=s.agi.max_sessions, allowed_peers=s.agi.allowed_peers,
        env_limits=EnvLimits(s.agi.max_env_lines, s.agi.max_line_bytes, s.agi.max_env_bytes),
    )
    await service.agi_server.start()
    service.on_stop("agi", service.agi_server.stop)
    service.needs_backends(health.DATABASE)
    # Read when asked: a test (or a future hot reload) may replace the server.
    service.readiness.add(health.FASTAGI_LISTENER,
                          lambda: service.agi_server is not None and service.agi_server.listening)


async def _callflow(service: HotlineService, queues: tuple[str, ...]) -> Callflow:
    """District notices, hours and the callback offer (issue 9), over the case store
    and the queue summary the ami role keeps in Redis."""
    s, pool = service.settings, service.backends.pool
    config, calendar = await asyncio.to_thread(load_callflow, s.config_path, queues)
    return Callflow(config, calendar, PostgresNotices(pool),
                    RedisQueueLoad(service.backends.redis), PostgresHoursOverrides(pool),
                    PostgresCallbacks(pool), s.service.server_id)


def _sounds_dir(settings: Settings) -> Path:
    """Where Asterisk's sounds are: the sandbox tree's unless set."""
    if settings.asterisk.sounds_dir:
        return Path(settings.asterisk.sounds_dir)
    return Path(settings.asterisk.root) / "usr" / "share" / "asterisk" / "sounds"


def announcement_audio(
    settings: Settings,
) -> Callable[[int, str, bytes | None], Awaitable[None]]:
    """Writes an announcement's sound where Asterisk plays it from: the uploaded
    recording, else the text spoken like the IVR's prompts."""
    from crm_sync.callflow import notice_sound
    from hotline.devtools.prompts import PromptSet, in_tree, render_prompts

    sounds = _sounds_dir(settings)
    # The sandbox tree's language folders may be links meant for inside the chroot.
    root = None if settings.asterisk.sounds_dir else Path(settings.asterisk.root)

    def folder(language: str) -> Path:
        return in_tree(root, sounds / language) if root is not None else sounds / language

    def place(target: Path, wav: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(wav)
        tmp.chmod(0o644)
        tmp.replace(target)
        target.with_suffix(".sha256").unlink(missing_ok=True)

    def write(announcement_id: int, text: str, wav: bytes | None) -> None:
        name = notice_sound(announcement_id)
        if wav is None:
            render_prompts(PromptSet("uk", "uk", 150, {name: text}), sounds, root)
            wav = (folder("uk") / f"{name}.wav").read_bytes()
        else:
            place(folder("uk") / f"{name}.wav", wav)
        # Notices are in Ukrainian; a caller who chose English hears them too
        # (Asterisk looks in the channel language's folder only).
        place(folder("en") / f"{name}.wav", wav)

    async def render(announcement_id: int, text: str, wav: bytes | None) -> None:
        await asyncio.to_thread(write, announcement_id, text, wav)

    return render


def _call_spool_dir(settings: Settings, database_url: str) -> Path:
    """One spool per server id and database (never the password): records spooled
    for one case store are never replayed into another."""
    database = hashlib.sha256(describe_dsn(database_url).encode()).hexdigest()[:12]
    return settings.state_path / "spool" / f"calls-{settings.service.server_id}-{database}"


def _queue_log_path(settings: Settings) -> Path | None:
    configured = settings.asterisk.queue_log
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    from hotline.devtools.asterisk_sandbox import SandboxSpec

    return SandboxSpec(
        instance=settings.asterisk.instance, root=Path(settings.asterisk.root), server_id="",
        ami_port=0, ami_user="", ami_secret="", agi_host="", agi_port=0, sip_port=0,
        sip_password="", config_dir=settings.config_path,
    ).queue_log


async def _start_ami(service: HotlineService) -> None:
    s = service.settings
    pool = service.backends.pool
    store = PostgresCallStore(pool)
    call_sink = RetryingCallSink(
        store, spool=Spool(_call_spool_dir(s, service.backends.database_url))
    )
    await call_sink.open_spool()  # records a killed process left: written first
    call_sink.start()
    service.on_stop("call_sink", call_sink.stop)
    queue_log = _queue_log_path(s)
    if queue_log is not None:
        reconciler = QueueLogReconciler(store, s.service.server_id, queue_log)
        reconciler.start()
        service.on_stop("queue_log", reconciler.stop)
    operator_states = RetryingOperatorStates(PostgresOperatorStates(pool))
    operator_states.start()
    service.on_stop("operator_states", operator_states.stop)
    ami = AmiClient(
        s.ami.host, s.ami.port, s.ami.username, s.ami.secret,
        action_timeout=s.ami.action_timeout, ping_interval=s.ami.ping_interval,
    )
    tracker = CallTracker(s.service.server_id, s.asterisk.inbound_contexts)
    service.cti = CtiService(
        ami, tracker, call_sink, service.bus, service.backends.redis, operator_states
    )
    await service.cti.start()
    service.on_stop("ami", service.cti.stop)
    # The callback dialer shares the role's AMI link (issue 9): see cti_bridge.callback_dialer.
    callflow, _ = await asyncio.to_thread(
        load_callflow, s.config_path, load_ivr_config(s.config_path).queues.names)
    if callflow.callback.enabled:
        dialer = CallbackDialer(ami, PostgresCallbacks(pool), callflow.callback,
                                f"{s.service.server_id}-{secrets.token_hex(3)}",
                                s.service.server_id)
        dialer.start()
        service.on_stop("callback_dialer", dialer.stop)
    service.needs_backends(health.DATABASE, health.REDIS)

    def ami_up() -> bool:
        return service.cti is not None and service.cti.ami.connected

    service.readiness.add(health.AMI_LINK, ami_up)
    metrics.watch_ami_link(ami_up)
    await _start_desk_commands(service, ami, tracker)


async def _start_desk_commands(service: HotlineService, ami: AmiClient,
                               tracker: CallTracker) -> None:
    """The operator desk on the AMI side (issue 8): screen-pops on each operator's
    own channel, and the web's desk commands executed over AMI."""
    from crm_sync.command_bus import DeskCommandServer
    from crm_sync.desk.operators import (
        PostgresCallerContext,
        PostgresOperatorDirectory,
        load_presence_config,
    )
    from cti_bridge.desk import DeskController
    from ivr.menu import load_catalogue

    s = service.settings
    pool = service.backends.pool
    config = await asyncio.to_thread(load_presence_config, s.config_path)
    catalogue = await asyncio.to_thread(load_catalogue, s.config_path)
    appeals_config = await asyncio.to_thread(load_appeals_config, s.config_path)
    appeals = AppealsService(pool, calendar=appeals_config.calendar,
                             settings=appeals_config.settings)
    controller = DeskController(
        ami, tracker, service.backends.redis, PostgresOperatorDirectory(pool),
        PostgresCallerContext(pool, appeals), config,
        queues={q.name: {"label": q.label_uk, "sphere": q.sphere}
                for q in catalogue.queues.values()},
    )
    service.on_stop("desk_controller", controller.stop)
    server = DeskCommandServer(service.backends.redis, controller.execute)
    server.start()
    service.on_stop("desk_commands", server.stop)


def web_session_key(settings: Settings) -> bytes:
    """``web.session_secret``, or one generated once into the secrets directory (every
    web process of a deployment must use the same); blocking."""
    if settings.web.session_secret:
        return settings.web.session_secret.encode()
    values = read_or_create_secrets(
        settings.state_path / "secrets" / "web.toml",
        lambda: {"session_secret": secrets.token_urlsafe(48)},
    )
    secret = values.get("session_secret", "")
    if len(secret) < 32:
        raise SettingsError(f"{settings.state_path / 'secrets' / 'web.toml'}: session_secret "
                            "must be at least 32 characters")
    return secret.encode()


async def _start_web(service: HotlineService) -> None:
    s = service.settings
    service.needs_backends(health.DATABASE, health.REDIS)
    key = await asyncio.to_thread(web_session_key, s)
    options = WebOptions(
        trusted_proxies=tuple(s.web.trusted_proxies), origins=tuple(s.web.origins),
        ws_per_user=s.web.ws_per_user, ws_per_process=s.web.ws_per_process,
    )
    app = build_web_app(
        service.backends.pool, service.backends.redis, key, options,
        readiness=service.readiness,
        metrics_access=MetricsAccess.parse(s.web.metrics_allow, s.web.metrics_token),
    )
    appeals_config = await asyncio.to_thread(load_appeals_config, s.config_path)
    appeals = AppealsService(service.backends.pool, calendar=appeals_config.calendar,
                             settings=appeals_config.settings)
    app[APPEALS] = appeals
    app[NOTIFICATIONS] = await _notifications(s)
    app[CRM_WEBHOOK] = CrmWebhook(s.crm.webhook_secret.encode())
    app[CAMPAIGNS_CONFIG] = await asyncio.to_thread(load_campaigns_config, s.config_path)
    app[LEADERSHIP_CONFIG] = await asyncio.to_thread(load_leadership_config, s.config_path)
    app[ANNOUNCEMENT_AUDIO] = announcement_audio(s)
    app[DESK_CONFIG] = await asyncio.to_thread(load_desk_config, s.config_path)
    await _configure_desk(app, s)
    service.web_runner = web.AppRunner(app, access_log=None)
    await service.web_runner.setup()
    service.on_stop("web", service.web_runner.cleanup)
    await web.TCPSite(service.web_runner, s.web.host, s.web.port).start()
    log.info("web_listening", url=service.web_url)
    closer = asyncio.create_task(_close_settled_appeals(appeals), name="appeals-close-settled")
    service.on_stop("appeals_close_settled", lambda: cancel_and_wait(closer))
    rollups = asyncio.create_task(_refresh_leadership_rollups(service.backends.pool),
                                  name="leadership-rollups")
    service.on_stop("leadership_rollups", lambda: cancel_and_wait(rollups))


async def _configure_desk(app: web.Application, settings: Settings) -> None:
    """The desk's pause reasons and queues, and its command link to the ami role."""
    from crm_sync.command_bus import RedisDeskCommands
    from crm_sync.desk.operators import load_presence_config
    from hotline.web import desk
    from ivr.menu import load_catalogue

    config = await asyncio.to_thread(load_presence_config, settings.config_path)
    catalogue = await asyncio.to_thread(load_catalogue, settings.config_path)
    desk.configure(app, desk.DeskSettings(config, {q.name: q.label_uk
                                                   for q in catalogue.queues.values()}),
                   RedisDeskCommands(app[REDIS], timeout=config.command_timeout))


#: How often the web role closes settled appeals whose reopening period is over.
CLOSE_SETTLED_EVERY_SECONDS = 3600.0


async def _close_settled_appeals(
    appeals: AppealsService, every: float = CLOSE_SETTLED_EVERY_SECONDS
) -> None:
    """Every web process runs it: each appeal is closed under its row lock, so two
    processes at once close nothing twice. A failure waits for the next round."""
    while True:
        try:
            closed = await appeals.close_settled()
        except (HotlineError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("appeals_close_settled_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if closed:
                log.info("appeals_closed_settled", closed=closed)
        await asyncio.sleep(every)


#: How often the web role brings the dashboard's roll-ups up to date (a no-op
#: within the same hour and day; the queries read what is newer live anyway).
LEADERSHIP_ROLLUPS_EVERY_SECONDS = 600.0


async def _refresh_leadership_rollups(
    pool: asyncpg.Pool, every: float = LEADERSHIP_ROLLUPS_EVERY_SECONDS
) -> None:
    while True:
        try:
            await refresh_rollups(pool)
        except (HotlineError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("leadership_rollups_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(every)


def relay_secret(settings: Settings) -> bytes:
    """Signs opt-out links and checks the SMS gateway's webhooks: generated once into
    the secrets directory, shared by the relay and web processes; blocking."""
    values = read_or_create_secrets(
        settings.state_path / "secrets" / "relay.toml",
        lambda: {"webhook_secret": secrets.token_urlsafe(48)},
    )
    return str(values["webhook_secret"]).encode()


def dkim_key(relay: RelaySettings) -> DkimKey | None:
    """The relay's DKIM key, or None when mail goes unsigned; blocking."""
    if not (relay.dkim_selector or relay.dkim_key_file):
        return None
    if not (relay.dkim_selector and relay.dkim_key_file):
        raise ConfigError("relay.dkim_selector and relay.dkim_key_file: set both or neither")
    path = Path(relay.dkim_key_file)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"relay.dkim_key_file: cannot read {path}: {exc.strerror}") from None
    if b"PRIVATE KEY-----" not in pem:
        raise ConfigError(f"relay.dkim_key_file: {path} is not a PEM private key")
    return DkimKey(relay.dkim_selector, relay.email_from.rpartition("@")[2], pem)


async def _notifications(settings: Settings) -> Notifications:
    """What the web's gateway webhooks and opt-out link need (shared with the relay)."""
    from crm_sync.notifications.optout import OptOutLinks
    from crm_sync.notifications.templates import load_notifications_config

    secret = await asyncio.to_thread(relay_secret, settings)
    config = await asyncio.to_thread(load_notifications_config, settings.config_path)
    return Notifications(secret, OptOutLinks(secret, settings.relay.public_url),
                         config.opt_out_keywords)


async def _start_relay(service: HotlineService) -> None:
    from crm_sync.campaigns import ConfirmLinks, campaign_routers
    from crm_sync.notifications.appeals import TOPICS, appeal_router
    from crm_sync.notifications.optout import OptOutLinks
    from crm_sync.notifications.templates import load_notifications_config
    from crm_sync.outbox import Provider, ProviderLimits, Relay, RelayOptions, Router, crm
    from crm_sync.outbox.providers import HttpSmsProvider, SmtpProvider

    r = service.settings.relay
    config = await asyncio.to_thread(load_notifications_config, service.settings.config_path)
    secret = await asyncio.to_thread(relay_secret, service.settings)
    links = OptOutLinks(secret, r.public_url)
    providers: dict[str, Provider] = {}
    if r.sms_url:
        providers["sms"] = HttpSmsProvider(r.sms_url, r.sms_api_key)
    if r.smtp_host:
        providers["email"] = SmtpProvider(r.smtp_host, r.smtp_port, r.email_from,
                                          username=r.smtp_username, password=r.smtp_password,
                                          starttls=r.smtp_starttls,
                                          dkim_key=await asyncio.to_thread(dkim_key, r))
    routers: dict[str, list[Router]] = {t: [appeal_router(config, links)] for t in TOPICS}
    limits = {"sms": ProviderLimits(r.sms_rate_per_second, r.sms_concurrency),
              "email": ProviderLimits(r.email_rate_per_second, r.email_concurrency)}
    if service.settings.crm.url:  # the CRM: one more router and provider (issue 10)
        c = service.settings.crm
        providers[crm.PROVIDER] = crm.CrmClient(c.url, c.api_key, timeout=c.request_timeout)
        limits[crm.PROVIDER] = ProviderLimits(c.rate_per_second, c.concurrency)
        for topic in crm.TOPICS:
            routers.setdefault(topic, []).append(crm.crm_router())
        # Before the first fan-out: the events it never saw become CRM messages first.
        log.info("crm_backfilled", messages=await crm.backfill(service.backends.pool))
    routers.update(campaign_routers(
        await asyncio.to_thread(load_campaigns_config, service.settings.config_path),
        config.quiet, links, ConfirmLinks(secret, r.public_url)))
    relay = Relay(
        service.backends.pool, providers, routers,
        RelayOptions(workers=r.workers, batch=r.batch, lease_seconds=r.lease_seconds,
                     max_attempts=r.max_attempts, backoff_base=r.backoff_base,
                     backoff_max=r.backoff_max, poll_interval=r.poll_interval),
        limits=limits, name=f"relay-{service.settings.service.server_id}", quiet=config.quiet,
    )
    relay.start()
    service.on_stop("relay", relay.stop)
    service.needs_backends(health.DATABASE)


#: Every role a process can run: adding one is one entry here and its name in
#: ``hotline.settings.PROCESS_ROLES`` (checked when this module is imported).
PARTS: dict[str, Callable[[HotlineService], Awaitable[None]]] = {
    "agi": _start_agi,
    "ami": _start_ami,
    "web": _start_web,
    "relay": _start_relay,
}
assert tuple(PARTS) == PROCESS_ROLES, "hotline.settings.PROCESS_ROLES and PARTS differ"


async def run_until_stopped(service: HotlineService, stop: asyncio.Event) -> None:
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
