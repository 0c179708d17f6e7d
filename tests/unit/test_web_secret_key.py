"""The key that signs sessions: configured, or generated once into a 0600 file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from hotline.core.errors import ConfigError
from hotline.web.secret_key import session_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_into_a_private_file(tmp_path: Path) -> None:
    key = session_key("", tmp_path)
    path = tmp_path / "secrets" / "web.toml"
    assert len(key) >= 32
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert key.decode() in path.read_text()
    assert session_key("", tmp_path) == key  # the same on every start


def test_created_0600_from_the_first_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not written then chmod-ed: the file is never readable by others, even briefly."""
    import os

    opened: list[int] = []
    real_open = os.open

    def spy(path: str, flags: int, mode_: int = 0o777, *args: object) -> int:
        opened.append(mode_)
        return real_open(path, flags, mode_)

    monkeypatch.setattr(os, "open", spy)
    session_key("", tmp_path)
    assert opened == [0o600]


def test_loose_modes_are_repaired(tmp_path: Path) -> None:
    key = session_key("", tmp_path)
    path = tmp_path / "secrets" / "web.toml"
    path.chmod(0o644)
    path.parent.chmod(0o755)
    assert session_key("", tmp_path) == key
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_processes_starting_at_once_agree(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(session_key("", tmp_path)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys) == 8
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["web.toml"]


def test_configured_secret_wins_and_must_be_long(tmp_path: Path) -> None:
    assert session_key("s" * 40, tmp_path) == b"s" * 40
    assert not (tmp_path / "secrets").exists()
    with pytest.raises(ConfigError, match="at least 32"):
        session_key("short", tmp_path)


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "web.toml"
    path.parent.mkdir(mode=0o700)
    path.write_text('session_secret = "too short"\n')
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="session_secret"):
        session_key("", tmp_path)
