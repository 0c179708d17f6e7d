"""Settings: defaults < ``config/hotline.toml`` < environment < command line.

Every value is validated at start; a bad one stops the service with one line
that names the key and the reason (:class:`SettingsError`). Secrets (the AMI
secret, database passwords inside URLs) are never read from the repository's
files: only from the environment or a secrets file outside the repository.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import secrets
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from hotline.core.errors import ConfigError
from hotline.core.logs import get_logger

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _shipped_config_dir() -> Path:
    """``config/`` of a source checkout (or an editable install); installed from a
    wheel, the same files are the package data ``hotline/shipped_config/``."""
    checkout = PROJECT_ROOT / "config"
    if (checkout / "hotline.toml").is_file():
        return checkout
    return Path(__file__).resolve().parent / "shipped_config"


#: The configuration shipped with the code; ``service.config_dir`` (or
#: ``HOTLINE_SERVICE_CONFIG_DIR``) points elsewhere, e.g. ``/etc/hotline``.
CONFIG_DIR = _shipped_config_dir()
DEFAULT_CONFIG_FILE = CONFIG_DIR / "hotline.toml"
#: The roles a process can run (people's roles are ``hotline.core.people.PROCESS_ROLES``).
PROCESS_ROLES = ("agi", "ami", "web", "relay")
SECRET_KEYS = frozenset(
    {"ami.secret", "database.url", "redis.url", "web.metrics_token", "web.session_secret",
     "relay.sms_api_key", "relay.smtp_password", "crm.api_key", "crm.webhook_secret"}
)
#: Settings that are URLs and may carry credentials (``user:password@`` or ``?password=``).
URL_KEYS = frozenset({"database.url", "redis.url", "asterisk.mirror"})
#: Numeric settings whose name ends so are durations in seconds: finite and above zero.
DURATION_SUFFIXES = ("_timeout", "_interval")


class SettingsError(ConfigError):
    """A setting is missing or malformed; the message names the key."""

    error_id = "setting_invalid"


@dataclass
class ServiceSettings:
    server_id: str = "hotline-1"
    roles: list[str] = field(default_factory=lambda: list(PROCESS_ROLES))
    state_dir: str = ""  # empty: /var/lib/hotline as root, ~/.local/state/hotline otherwise
    config_dir: str = ""  # empty: the config/ folder shipped with the code
    log_format: str = "console"
    log_level: str = "info"
    #: auto: uvloop when installed (the 'fast' extra), else asyncio's own loop.
    event_loop: str = "auto"


@dataclass
class AgiSettings:
    host: str = "127.0.0.1"
    port: int = 4574
    env_timeout: float = 5.0
    #: Sessions at once; the next peer is refused and the dialplan takes its fallback.
    max_sessions: int = 512
    #: Caps on the environment a peer sends before its session starts.
    max_env_lines: int = 256
    max_line_bytes: int = 8192
    max_env_bytes: int = 65536
    #: Addresses or networks of the Asterisk servers allowed to connect.
    allowed_peers: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])

    def problems(self) -> list[str]:
        """What is wrong with these values, one ``key: reason`` per problem."""
        found = [
            f"agi.{name}: must be a positive integer, got {getattr(self, name)}"
            for name in ("max_sessions", "max_env_lines", "max_line_bytes", "max_env_bytes")
            if getattr(self, name) < 1
        ]
        if not self.env_timeout > 0:
            found.append(f"agi.env_timeout: must be positive, got {self.env_timeout}")
        if not self.allowed_peers:
            found.append("agi.allowed_peers: at least one address (Asterisk's)")
        for peer in self.allowed_peers:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                found.append(f"agi.allowed_peers: not an IP address or network: {peer!r}")
        return found


@dataclass
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 15038
    username: str = "hotline"
    secret: str = ""
    action_timeout: float = 5.0
    ping_interval: float = 10.0


@dataclass
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8551
    #: Who may read /metrics without a session: these networks (CIDR), or the token.
    metrics_allow: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    metrics_token: str = ""  # a secret: environment or secrets file only
    # Signs sessions and CSRF tokens; the same in every web process. Empty: generated
    # once into <state dir>/secrets/web.toml (fine for one machine).
    session_secret: str = ""
    # Addresses/networks of the TLS proxies in front, whose X-Forwarded-For/-Proto count.
    trusted_proxies: list[str] = field(default_factory=list)
    # Origins the pages are served from besides the Host header's (behind a proxy).
    origins: list[str] = field(default_factory=list)
    ws_per_user: int = 5
    ws_per_process: int = 500


@dataclass
class DatabaseSettings:
    url: str = ""  # empty: embedded PostgreSQL in the state dir


@dataclass
class RedisSettings:
    url: str = ""  # empty: embedded Redis in the state dir


@dataclass
class AsteriskSettings:
    instance: str = "demo"
    root: str = "/var/cache/hotline/asterisk-sid"
    mirror: str = ""  # empty: the Debian mirror of this machine's apt sources
    sip_port: int = 15060
    queue_timeout: int = 300
    inbound_contexts: list[str] = field(default_factory=lambda: ["hotline-inbound"])
    # Operators' logins that get a PJSIP endpoint PJSIP/<login> in the sandbox (a
    # softphone registers there); each password is generated, never configured.
    sip_operators: list[str] = field(default_factory=list)
    # Where announcements' sounds are written (issue 9): empty = the sandbox tree's.
    sounds_dir: str = ""
    # Asterisk's queue_log, which call records are reconciled with: empty = the
    # sandbox instance's; "off" = no reconciliation.
    queue_log: str = ""


@dataclass
class RelaySettings:
    """The outbox relay (issue 10). A provider with no address is not started: its
    messages wait, queued."""

    workers: int = 4
    batch: int = 10
    lease_seconds: float = 60.0
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 3600.0
    poll_interval: float = 0.5
    sms_url: str = ""
    sms_api_key: str = ""  # a secret: environment or secrets file only
    sms_rate_per_second: float = 20.0
    sms_concurrency: int = 4
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""  # a secret
    smtp_starttls: bool = False
    email_from: str = "1551@kyiv.example"
    # DKIM: the selector and the PEM file of its private key (outside the repository,
    # readable by the service only); both empty = mail goes unsigned.
    dkim_selector: str = ""
    dkim_key_file: str = ""
    email_rate_per_second: float = 10.0
    email_concurrency: int = 4
    # Where citizens open the opt-out link (the web role's public address).
    public_url: str = "http://127.0.0.1:8551"


@dataclass
class CrmSettings:
    """The external CRM (issue 10): pushed to by the relay when ``url`` is set; its
    status webhook is accepted by the web role when ``webhook_secret`` is set."""

    url: str = ""
    api_key: str = ""  # a secret: environment or secrets file only
    webhook_secret: str = ""  # a secret: signs the CRM's webhook calls
    rate_per_second: float = 20.0
    concurrency: int = 4
    request_timeout: float = 10.0


@dataclass
class StatsSettings:
    """Reports (issue 11): a caller who hangs up within ``short_abandon_seconds``
    of waiting is a short abandon, left out of offered and abandoned. The SL
    threshold is each queue's ``service_level`` (config/queues.toml). A change
    takes effect at ``hotline migrate`` or ``hotline stats-refresh`` (rollups rebuilt)."""

    short_abandon_seconds: int = 5


@dataclass
class Settings:
    service: ServiceSettings = field(default_factory=ServiceSettings)
    agi: AgiSettings = field(default_factory=AgiSettings)
    ami: AmiSettings = field(default_factory=AmiSettings)
    web: WebSettings = field(default_factory=WebSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    asterisk: AsteriskSettings = field(default_factory=AsteriskSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    crm: CrmSettings = field(default_factory=CrmSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)

    @property
    def config_path(self) -> Path:
        """The folder of ``ivr.toml``, ``queues.toml``, ``prompts.toml``, ``seed/``."""
        return Path(self.service.config_dir) if self.service.config_dir else CONFIG_DIR

    @property
    def state_path(self) -> Path:
        if self.service.state_dir:
            return Path(self.service.state_dir)
        if os.geteuid() == 0:
            return Path("/var/lib/hotline")
        return Path.home() / ".local" / "state" / "hotline"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets replaced, for logs and `hotline config`."""
        out: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            values = dataclasses.asdict(getattr(self, section.name))
            for key in values:
                if f"{section.name}.{key}" in SECRET_KEYS and values[key]:
                    values[key] = "***"
                elif f"{section.name}.{key}" in URL_KEYS and values[key]:
                    values[key] = hide_credentials(values[key])
            out[section.name] = values
        return out


# Environment variables that people already know by these names.
WELL_KNOWN_ENV = {
    "DATABASE_URL": "database.url",
    "REDIS_URL": "redis.url",
    "HOTLINE_AMI_SECRET": "ami.secret",
}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Turn a TOML/env/CLI value into the type of the default, or fail naming the key."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # TOML and float() both accept nan and inf
                raise SettingsError(f"{key}: expected a finite number, got {value!r}")
            return number
        if isinstance(default, list):
            if isinstance(value, list):
                return [str(v) for v in value]
            return [part.strip() for part in str(value).split(",") if part.strip()]
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        kind = type(default).__name__
        kind = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(kind, kind)
        raise SettingsError(f"{key}: expected {kind}, got {value!r}") from None


def _apply(settings: Settings, key: str, value: Any, source: str) -> None:
    section_name, _, name = key.partition(".")
    section = getattr(settings, section_name, None)
    if section is None or not name or not dataclasses.is_dataclass(section):
        raise SettingsError(f"{key}: unknown setting (from {source})")
    if name not in {f.name for f in dataclasses.fields(section)}:
        raise SettingsError(f"{key}: unknown setting (from {source})")
    if source == "config file" and (
        key in {"ami.secret", "web.metrics_token", "web.session_secret", "relay.sms_api_key",
                "relay.smtp_password", "crm.api_key", "crm.webhook_secret"}
        or (key in URL_KEYS and _has_password(str(value)))
    ):
        raise SettingsError(
            f"{key}: secrets are not read from the config file; "
            f"set it in the environment ({_env_name(key)}) or a secrets file"
        )
    setattr(section, name, _coerce(key, value, getattr(section, name)))


def _has_password(url: str) -> bool:
    """``user:password@`` in the authority, or a ``password=`` query parameter
    (libpq, asyncpg and redis-py all take the password from either)."""
    netloc = url.partition("://")[2].partition("/")[0]
    if "@" in netloc and ":" in netloc.rpartition("@")[0]:
        return True
    query = url.partition("?")[2]
    return any(name.lower() == "password" for name, _ in parse_qsl(query))


def hide_credentials(url: str) -> str:
    """``url`` for showing: user information and query string replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else ""))


def _env_name(key: str) -> str:
    for env, mapped in WELL_KNOWN_ENV.items():
        if mapped == key:
            return env
    return "HOTLINE_" + key.replace(".", "_").upper()


def _validate(s: Settings) -> None:
    for key, port in (
        ("agi.port", s.agi.port),
        ("ami.port", s.ami.port),
        ("web.port", s.web.port),
        ("asterisk.sip_port", s.asterisk.sip_port),
    ):
        if not 0 <= port <= 65535:
            raise SettingsError(f"{key}: expected a port 0-65535, got {port}")
    unknown = [r for r in s.service.roles if r not in PROCESS_ROLES]
    if unknown or not s.service.roles:
        raise SettingsError(
            f"service.roles: expected some of {', '.join(PROCESS_ROLES)}, got {s.service.roles!r}"
        )
    if s.service.log_format not in {"console", "json"}:
        raise SettingsError(
            f"service.log_format: expected console or json, got {s.service.log_format!r}"
        )
    if s.service.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise SettingsError(
            f"service.log_level: expected debug, info, warning or error, "
            f"got {s.service.log_level!r}"
        )
    if s.service.event_loop not in {"auto", "asyncio", "uvloop"}:
        raise SettingsError(
            f"service.event_loop: expected auto, asyncio or uvloop, got {s.service.event_loop!r}"
        )
    for key, url, schemes in (
        ("database.url", s.database.url, ("postgres://", "postgresql://")),
        ("redis.url", s.redis.url, ("redis://", "rediss://", "unix://")),
    ):
        if url and not url.startswith(schemes):
            raise SettingsError(f"{key}: expected a URL starting with {' or '.join(schemes)}")
    for network in s.web.metrics_allow:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                f"web.metrics_allow: expected addresses or networks (CIDR), got {network!r}"
            ) from None
    if not 0 <= s.stats.short_abandon_seconds <= 600:
        raise SettingsError("stats.short_abandon_seconds: expected 0-600 seconds, "
                            f"got {s.stats.short_abandon_seconds}")
    if s.redis.url.startswith("unix://") and not urlsplit(s.redis.url).path.startswith("/"):
        raise SettingsError("redis.url: expected unix:///absolute/path/to/redis.sock")
    for section in dataclasses.fields(s):
        values = getattr(s, section.name)
        for item in dataclasses.fields(values):
            value = getattr(values, item.name)
            if (
                item.name.endswith(DURATION_SUFFIXES)
                and isinstance(value, (int, float))
                and not value > 0  # NaN compares false too
            ):
                raise SettingsError(
                    f"{section.name}.{item.name}: expected a positive number of seconds, "
                    f"got {value!r}"
                )
    if agi_problems := s.agi.problems():
        raise SettingsError("; ".join(agi_problems))
    _validate_web(s.web)
    if not s.service.server_id.replace("-", "").replace("_", "").isalnum():
        raise SettingsError(
            f"service.server_id: letters, digits, - and _ only, got {s.service.server_id!r}"
        )


def _validate_web(web: WebSettings) -> None:
    if web.session_secret and len(web.session_secret) < 32:
        raise SettingsError("web.session_secret: at least 32 characters")
    for proxy in web.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                f"web.trusted_proxies: expected addresses or networks, got {proxy!r}"
            ) from None
    for origin in web.origins:
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc \
                or parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise SettingsError(f"web.origins: expected scheme://host[:port], got {origin!r}")
    for key, value in (("web.ws_per_user", web.ws_per_user),
                       ("web.ws_per_process", web.ws_per_process)):
        if value < 1:
            raise SettingsError(f"{key}: must be at least 1")


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings from the layered sources."""
    settings = Settings()
    env = os.environ if env is None else env
    # HOTLINE_SERVICE_CONFIG_DIR names where hotline.toml is too (--config, HOTLINE_CONFIG win).
    config_dir = env.get("HOTLINE_SERVICE_CONFIG_DIR")
    default_file = Path(config_dir) / "hotline.toml" if config_dir else DEFAULT_CONFIG_FILE
    path = config_file or Path(env.get("HOTLINE_CONFIG", default_file))
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: not valid TOML ({exc})") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise SettingsError(f"{section}: expected a table in {path.name}")
            for name, value in values.items():
                _apply(settings, f"{section}.{name}", value, "config file")
    elif config_file is not None:
        raise SettingsError(f"{config_file}: config file not found")

    secrets_file = env.get("HOTLINE_SECRETS_FILE")
    if secrets_file:
        _load_secrets_file(settings, Path(secrets_file))

    for env_name, key in WELL_KNOWN_ENV.items():
        if env.get(env_name):
            _apply(settings, key, env[env_name], f"environment {env_name}")
    for env_name, value in env.items():
        if env_name.startswith("HOTLINE_") and env_name not in WELL_KNOWN_ENV:
            rest = env_name[len("HOTLINE_") :].lower()
            section, _, name = rest.partition("_")
            if section in {f.name for f in dataclasses.fields(Settings)} and name:
                _apply(settings, f"{section}.{name}", value, f"environment {env_name}")

    for key, value in (overrides or {}).items():
        _apply(settings, key, value, "command line")
    _validate(settings)
    return settings


def _load_secrets_file(settings: Settings, path: Path) -> None:
    """A TOML file outside the repository with the same sections, e.g. [ami] secret=…

    Someone else's file: a mode that lets others read it (or the group write it),
    or an owner other than us or root, is refused rather than repaired."""
    if path.resolve().is_relative_to(PROJECT_ROOT):
        raise SettingsError("HOTLINE_SECRETS_FILE: must live outside the repository")
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            raw = handle.read()
    except FileNotFoundError:
        raise SettingsError(f"HOTLINE_SECRETS_FILE: {path} not found") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o027:
        raise SettingsError(
            f"HOTLINE_SECRETS_FILE: {path} is open to others (mode {mode:04o}); "
            f"chmod 600 {path}"
        )
    if info.st_uid not in {os.geteuid(), 0}:
        raise SettingsError(
            f"HOTLINE_SECRETS_FILE: {path} belongs to uid {info.st_uid}, "
            f"not to this user (uid {os.geteuid()}) or root"
        )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"HOTLINE_SECRETS_FILE: {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"HOTLINE_SECRETS_FILE: {path} is not valid TOML ({exc})") from None
    for section, values in data.items():
        if isinstance(values, dict):
            for name, value in values.items():
                _apply(settings, f"{section}.{name}", value, "secrets file")


# --- secret files we generate ourselves (state directory) -------------------

SECRET_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600


class SecretFileError(ConfigError):
    """A secrets file or directory is unsafe (owned by someone else) or unreadable."""

    error_id = "secret_file_unsafe"


def ensure_private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter: created 0700; an existing
    one open to others is tightened (and logged); one owned by another user is refused."""
    path.mkdir(parents=True, exist_ok=True, mode=SECRET_DIR_MODE)
    info = os.stat(path)
    if info.st_uid != os.geteuid():
        raise SecretFileError(
            f"{path}: owned by uid {info.st_uid}, not by this user (uid {os.geteuid()}); "
            "refusing to keep secrets there"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        os.chmod(path, mode & ~0o077)
        get_logger("hotline.settings").warning(
            "secrets_mode_repaired", path=str(path), was=f"{mode:04o}",
            now=f"{mode & ~0o077:04o}",
        )
    return path


def _read_private_toml(path: Path) -> dict[str, str]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        # Checked on the open file, not the name: nothing can swap it in between.
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise SecretFileError(
                f"{path}: owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            os.fchmod(fd, SECRET_FILE_MODE)
            get_logger("hotline.settings").warning(
                "secrets_mode_repaired", path=str(path), was=f"{mode:04o}",
                now=f"{SECRET_FILE_MODE:04o}",
            )
        raw = handle.read()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SecretFileError(f"{path}: not a valid secrets file ({exc})") from None
    return {str(k): str(v) for k, v in data.items()}


def read_or_create_secrets(
    path: Path, generate: Callable[[], Mapping[str, str]]
) -> dict[str, str]:
    """The ``key = "value"`` pairs in ``path``, generating the file on first use.

    The file is born 0600 (``os.open`` with the mode, in a 0700 directory) and
    appears whole or not at all; when two processes generate it at once the first
    one wins and both return its values. Blocking (small file I/O)."""
    ensure_private_dir(path.parent)
    try:
        return _read_private_toml(path)
    except FileNotFoundError:
        pass
    values = {str(k): str(v) for k, v in generate().items()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        SECRET_FILE_MODE,
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # unlike rename, never replaces a file already there
        except FileExistsError:
            return _read_private_toml(path)
    finally:
        temporary.unlink(missing_ok=True)
    return values
