"""The web's settings: the session secret is a secret, proxies and origins are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.settings import SettingsError, load_settings
from hotline.web.options import WebOptions


def config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "hotline.toml"
    path.write_text(text)
    return path


def test_session_secret_from_the_environment_and_hidden(tmp_path: Path) -> None:
    secret = "x" * 40
    s = load_settings(config(tmp_path), env={"HOTLINE_WEB_SESSION_SECRET": secret,
                                              "HOTLINE_WEB_TRUSTED_PROXIES": "10.0.0.1, ::1/128",
                                              "HOTLINE_WEB_WS_PER_USER": "3"})
    assert s.web.session_secret == secret
    assert s.web.trusted_proxies == ["10.0.0.1", "::1/128"]
    assert s.web.ws_per_user == 3
    assert s.redacted()["web"]["session_secret"] == "***"


def test_session_secret_is_not_read_from_the_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"web\.session_secret: secrets are not read"):
        load_settings(config(tmp_path, '[web]\nsession_secret = "' + "y" * 40 + '"\n'), env={})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("web.session_secret", "short", "at least 32"),
     ("web.trusted_proxies", "10.0.0.1,not-an-address", "web.trusted_proxies"),
     ("web.origins", "hotline.example", "web.origins"),
     ("web.origins", "https://hotline.example/path", "web.origins"),
     ("web.ws_per_user", "0", "web.ws_per_user"),
     ("web.ws_per_process", "-1", "web.ws_per_process")],
)
def test_bad_web_settings_name_the_key(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(config(tmp_path), env={}, overrides={key: value})


def test_options_parse_networks_and_refuse_nonsense() -> None:
    options = WebOptions(trusted_proxies=("10.0.0.0/8", "127.0.0.1"),
                         origins=("HTTPS://Hotline.example/",))
    assert [str(n) for n in options.proxy_networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert options.origins == ("https://hotline.example",)
    with pytest.raises(ValueError, match="ws_per_user"):
        WebOptions(ws_per_user=0)
