"""Settings precedence and validation (pure: no I/O beyond temporary files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.core.privacy import mask_phone
from hotline.settings import PROJECT_ROOT, SettingsError, load_settings


def write(tmp_path: Path, text: str, name: str = "hotline.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_defaults_file_env_cli(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[ami]\nport = 1111\nhost = \"10.0.0.5\"\n[web]\nport = 2222\n")
    s = load_settings(cfg, env={}, overrides={})
    assert (s.ami.port, s.ami.host, s.web.port, s.agi.port) == (1111, "10.0.0.5", 2222, 4574)
    s = load_settings(cfg, env={"HOTLINE_AMI_PORT": "3333"}, overrides={})
    assert s.ami.port == 3333 and s.ami.host == "10.0.0.5"
    s = load_settings(cfg, env={"HOTLINE_AMI_PORT": "3333"}, overrides={"ami.port": "4444"})
    assert s.ami.port == 4444


def test_well_known_environment_names(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, ""),
        env={"DATABASE_URL": "postgresql://a@b/c", "REDIS_URL": "redis://r:6379/0",
             "HOTLINE_AMI_SECRET": "s"},
    )
    assert s.database.url == "postgresql://a@b/c"
    assert s.redis.url == "redis://r:6379/0"
    assert s.ami.secret == "s"
    assert s.redacted()["ami"]["secret"] == "***"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ami.port": "x"}, "ami.port: expected an integer"),
        ({"agi.port": "99999"}, "agi.port: expected a port"),
        ({"service.roles": "agi,telepathy"}, "service.roles"),
        ({"service.log_format": "xml"}, "service.log_format"),
        ({"service.event_loop": "trio"}, "service.event_loop: expected auto, asyncio or uvloop"),
        ({"database.url": "mysql://x"}, "database.url"),
        ({"nope.key": "1"}, "nope.key: unknown setting"),
        ({"ami.colour": "1"}, "ami.colour: unknown setting"),
        ({"ami.action_timeout": "0"}, "ami.action_timeout"),
        ({"service.server_id": "a b"}, "service.server_id"),
        ({"agi.max_sessions": "0"}, "agi.max_sessions: must be a positive integer"),
        ({"agi.max_env_bytes": "-1"}, "agi.max_env_bytes"),
        ({"agi.allowed_peers": "127.0.0.1,asterisk.local"}, "agi.allowed_peers: not an IP"),
        ({"agi.allowed_peers": ""}, "agi.allowed_peers: at least one"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        load_settings(write(tmp_path, ""), env={}, overrides=overrides)


def test_agi_bounds_defaults_and_environment(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), env={})
    assert s.agi.allowed_peers == ["127.0.0.1", "::1"]
    assert s.agi.max_sessions > 0 and s.agi.max_env_bytes >= s.agi.max_line_bytes
    s = load_settings(
        write(tmp_path, ""),
        env={"HOTLINE_AGI_ALLOWED_PEERS": "10.0.0.5, 10.0.1.0/24",
             "HOTLINE_AGI_MAX_SESSIONS": "40"},
    )
    assert s.agi.allowed_peers == ["10.0.0.5", "10.0.1.0/24"] and s.agi.max_sessions == 40


def test_roles_from_command_line_list(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), env={}, overrides={"service.roles": "agi, web"})
    assert s.service.roles == ["agi", "web"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("agi.env_timeout", "nan"),
        ("agi.env_timeout", "-1"),
        ("ami.action_timeout", "inf"),
        ("ami.action_timeout", "-0.5"),
        ("ami.ping_interval", "0"),
        ("ami.ping_interval", "NaN"),
        ("ami.ping_interval", "-10"),
        ("asterisk.queue_timeout", "0"),
        ("asterisk.queue_timeout", "-300"),
    ],
)
def test_durations_must_be_finite_and_positive(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{key.replace('.', '[.]')}: expected a"):
        load_settings(write(tmp_path, ""), env={}, overrides={key: value})
    env_name = "HOTLINE_" + key.replace(".", "_").upper()
    with pytest.raises(SettingsError, match=rf"^{key.replace('.', '[.]')}: "):
        load_settings(write(tmp_path, ""), env={env_name: value})


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "-2.0", "0.0"])
def test_durations_from_toml_literals(tmp_path: Path, literal: str) -> None:
    """TOML has nan and inf literals of its own: they reach the float unconverted."""
    with pytest.raises(SettingsError, match=r"^ami\.ping_interval: "):
        load_settings(write(tmp_path, f"[ami]\nping_interval = {literal}\n"), env={})


def test_positive_durations_are_kept(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, ""), env={},
        overrides={"ami.ping_interval": "0.5", "agi.env_timeout": "2", "ami.action_timeout": "3"},
    )
    assert (s.ami.ping_interval, s.agi.env_timeout, s.ami.action_timeout) == (0.5, 2.0, 3.0)


def test_mirror_credentials_hidden_in_redacted_settings(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, ""),
        env={"HOTLINE_ASTERISK_MIRROR": "https://deb:hunter2@mirror.example/debian?token=t0k"},
    )
    shown = s.redacted()["asterisk"]["mirror"]
    assert "hunter2" not in shown and "deb:" not in shown and "t0k" not in shown
    assert shown == "https://***@mirror.example/debian?***"
    plain = load_settings(
        write(tmp_path, ""), env={"HOTLINE_ASTERISK_MIRROR": "http://deb.debian.org/debian"}
    )
    assert plain.redacted()["asterisk"]["mirror"] == "http://deb.debian.org/debian"


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("database.url", "postgresql://db.example/hotline?password=pw1"),
        ("database.url", "postgresql://hotline:p%40ss@db.example/hotline"),
        ("redis.url", "unix://:pw2@/run/redis/redis.sock?db=0"),
        ("redis.url", "redis://cache:6379/0?password=pw3"),
        ("redis.url", "rediss://user:pw4@cache:6380/0"),
        ("asterisk.mirror", "https://deb:pw5@mirror.example/debian"),
    ],
)
def test_url_passwords_never_from_the_config_file(tmp_path: Path, key: str, url: str) -> None:
    section, name = key.split(".")
    cfg = write(tmp_path, f'[{section}]\n{name} = "{url}"\n')
    with pytest.raises(SettingsError, match=rf"^{key.replace('.', '[.]')}: secrets are not read"):
        load_settings(cfg, env={})
    # the same URL from the environment is fine
    env_name = {"database.url": "DATABASE_URL", "redis.url": "REDIS_URL"}.get(
        key, "HOTLINE_ASTERISK_MIRROR"
    )
    s = load_settings(write(tmp_path, ""), env={env_name: url})
    assert getattr(getattr(s, section), name) == url


def test_redis_unix_url_needs_an_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"redis\.url: expected unix:///"):
        load_settings(write(tmp_path, ""), env={"REDIS_URL": "unix://:pw@relative.sock"})
    s = load_settings(write(tmp_path, ""), env={"REDIS_URL": "unix://:pw@/run/x/redis.sock?db=0"})
    assert s.redis.url.endswith("redis.sock?db=0")


def test_passwords_never_from_the_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"ami\.secret"):
        load_settings(write(tmp_path, '[ami]\nsecret = "x"\n'), env={})
    with pytest.raises(SettingsError, match=r"database\.url"):
        load_settings(write(tmp_path, '[database]\nurl = "postgresql://u:pw@h/d"\n'), env={})
    # a URL without a password is fine in the file
    s = load_settings(write(tmp_path, '[redis]\nurl = "redis://cache:6379/0"\n'), env={})
    assert s.redis.url == "redis://cache:6379/0"


def test_secrets_file_outside_repo(tmp_path: Path) -> None:
    secrets_file = write(tmp_path, '[ami]\nsecret = "from-file"\n', "secrets.toml")
    secrets_file.chmod(0o600)
    s = load_settings(write(tmp_path, ""), env={"HOTLINE_SECRETS_FILE": str(secrets_file)})
    assert s.ami.secret == "from-file"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666], ids=lambda m: f"{m:04o}")
def test_secrets_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    secrets_file = write(tmp_path, '[ami]\nsecret = "from-file"\n', "secrets.toml")
    secrets_file.chmod(mode)
    with pytest.raises(SettingsError, match=f"mode {mode:04o}.*chmod 600") as caught:
        load_settings(write(tmp_path, ""), env={"HOTLINE_SECRETS_FILE": str(secrets_file)})
    assert "from-file" not in str(caught.value)


def test_secrets_file_readable_by_its_group_only_is_accepted(tmp_path: Path) -> None:
    """0640 with a group of its own (e.g. root:hotline) is a usual deployment."""
    secrets_file = write(tmp_path, '[ami]\nsecret = "from-file"\n', "secrets.toml")
    secrets_file.chmod(0o640)
    s = load_settings(write(tmp_path, ""), env={"HOTLINE_SECRETS_FILE": str(secrets_file)})
    assert s.ami.secret == "from-file"


def test_secrets_file_inside_repo_is_refused(tmp_path: Path) -> None:
    inside = PROJECT_ROOT / "config" / "hotline.toml"
    with pytest.raises(SettingsError, match="outside the repository"):
        load_settings(write(tmp_path, ""), env={"HOTLINE_SECRETS_FILE": str(inside)})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "absent.toml", env={})


def test_shipped_config_is_valid() -> None:
    s = load_settings(env={})
    assert s.asterisk.inbound_contexts == ["hotline-inbound"]
    assert s.ami.port != 5038  # AMI never on its well-known port


@pytest.mark.parametrize(
    ("number", "masked"),
    [("380501234567", "38050*****67"), ("+380 50 123 45 67", "+38050*****67"),
     ("1551", "1551"), ("", ""), ("044-123-45", "0*****45")],
)
def test_phone_masking(number: str, masked: str) -> None:
    assert mask_phone(number) == masked
