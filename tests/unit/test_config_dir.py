"""Where the configuration is found: Settings.config_path, HOTLINE_SERVICE_CONFIG_DIR,
and the defaults shipped inside the package for installs that are not a checkout."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from hotline import settings as settings_module
from hotline.settings import load_settings
from tests.support.paths import CONFIG_DIR, REPO_ROOT


def test_config_dir_from_the_environment_holds_hotline_toml_too(tmp_path: Path) -> None:
    (tmp_path / "hotline.toml").write_text("[web]\nport = 9551\n")
    s = load_settings(env={"HOTLINE_SERVICE_CONFIG_DIR": str(tmp_path)})
    assert s.config_path == tmp_path
    assert s.web.port == 9551


def test_hotline_config_still_names_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "hotline.toml").write_text("[web]\nport = 9551\n")
    other = tmp_path / "other.toml"
    other.write_text("[web]\nport = 9552\n")
    s = load_settings(env={"HOTLINE_SERVICE_CONFIG_DIR": str(tmp_path),
                           "HOTLINE_CONFIG": str(other)})
    assert (s.config_path, s.web.port) == (tmp_path, 9552)


def test_default_is_the_shipped_config() -> None:
    assert load_settings(env={}).config_path == CONFIG_DIR
    assert (CONFIG_DIR / "queues.toml").is_file()


def test_installed_without_a_checkout_the_package_data_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(settings_module, "PROJECT_ROOT", tmp_path)  # site-packages, say
    found = settings_module._shipped_config_dir()
    assert found == Path(settings_module.__file__).resolve().parent / "shipped_config"


def test_every_config_file_ships_in_the_package() -> None:
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "hotline.shipped_config" in tool["packages"]
    assert tool["package-dir"]["hotline.shipped_config"] == "config"
    patterns = tool["package-data"]["hotline.shipped_config"]
    files = [p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), files
