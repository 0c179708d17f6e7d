"""Who may read /metrics (addresses, bearer token) and its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.settings import SettingsError, load_settings
from hotline.web.ops import MetricsAccess


def test_default_is_this_host_only() -> None:
    access = MetricsAccess.parse()
    assert access.allows_address("127.0.0.1")
    assert access.allows_address("::1")
    assert access.allows_address("::ffff:127.0.0.1")  # IPv4 client of a dual-stack socket
    assert not access.allows_address("127.0.0.2")
    assert not access.allows_address("10.1.2.3")
    assert not access.allows_address("::ffff:10.1.2.3")
    assert not access.allows_address(None)
    assert not access.allows_address("not-an-address")


def test_networks_and_single_hosts() -> None:
    access = MetricsAccess.parse(["10.20.0.0/16", "192.0.2.7", "fd00::/8"])
    assert access.allows_address("10.20.255.1")
    assert not access.allows_address("10.21.0.1")
    assert access.allows_address("192.0.2.7")
    assert not access.allows_address("192.0.2.8")
    assert access.allows_address("fd12::1")
    assert not access.allows_address("127.0.0.1")  # loopback only when listed
    with pytest.raises(ValueError):
        MetricsAccess.parse(["10.0.0.0/33"])


def test_bearer_token() -> None:
    access = MetricsAccess.parse([], "tok-123456")
    assert access.allows_token("Bearer tok-123456")
    assert access.allows_token("bearer tok-123456")
    assert not access.allows_token("Bearer tok-12345")
    assert not access.allows_token("Basic tok-123456")
    assert not access.allows_token("tok-123456")
    assert not access.allows_token("")


def test_no_token_configured_accepts_no_token() -> None:
    access = MetricsAccess.parse([], "")
    assert not access.allows_token("Bearer ")
    assert not access.allows_token("Bearer")


def test_settings_defaults_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text("")
    s = load_settings(cfg, env={})
    assert s.web.metrics_allow == ["127.0.0.1/32", "::1/128"]
    assert s.web.metrics_token == ""
    s = load_settings(cfg, env={"HOTLINE_WEB_METRICS_TOKEN": "from-env",
                                "HOTLINE_WEB_METRICS_ALLOW": "10.0.0.0/8, ::1"})
    assert s.web.metrics_token == "from-env"
    assert s.web.metrics_allow == ["10.0.0.0/8", "::1"]
    assert s.redacted()["web"]["metrics_token"] == "***"


def test_token_is_never_read_from_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[web]\nmetrics_token = "oops"\n')
    with pytest.raises(SettingsError, match=r"web\.metrics_token: secrets are not read"):
        load_settings(cfg, env={})


def test_a_malformed_network_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text('[web]\nmetrics_allow = ["10.0.0.0/8", "intranet"]\n')
    with pytest.raises(SettingsError, match=r"web\.metrics_allow: .*'intranet'"):
        load_settings(cfg, env={})


def test_secrets_file_may_hold_the_token(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.toml"
    cfg.write_text("")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[web]\nmetrics_token = "from-file"\n')
    secrets.chmod(0o600)  # a secrets file open to others is refused
    s = load_settings(cfg, env={"HOTLINE_SECRETS_FILE": str(secrets)})
    assert s.web.metrics_token == "from-file"
