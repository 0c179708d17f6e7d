"""The key that signs sessions: configured, or generated once into a 0600 file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from hotline.app import web_session_key
from hotline.settings import Settings, SettingsError


def settings_in(state: Path, secret: str = "") -> Settings:
    settings = Settings()
    settings.service.state_dir = str(state)
    settings.web.session_secret = secret
    return settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_into_a_private_file(tmp_path: Path) -> None:
    key = web_session_key(settings_in(tmp_path))
    path = tmp_path / "secrets" / "web.toml"
    assert len(key) >= 32
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert key.decode() in path.read_text()
    assert web_session_key(settings_in(tmp_path)) == key  # the same on every start


def test_processes_starting_at_once_agree(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(web_session_key(settings_in(tmp_path))))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys) == 8
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["web.toml"]


def test_configured_secret_wins(tmp_path: Path) -> None:
    assert web_session_key(settings_in(tmp_path, "s" * 40)) == b"s" * 40
    assert not (tmp_path / "secrets").exists()


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "web.toml"
    path.parent.mkdir(mode=0o700)
    path.write_text('session_secret = "too short"\n')
    path.chmod(0o600)
    with pytest.raises(SettingsError, match="session_secret"):
        web_session_key(settings_in(tmp_path))
