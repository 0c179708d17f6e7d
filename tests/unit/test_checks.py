"""check-config's checks on copies of the shipped config/ and asterisk/etc: one
problem per fault, each naming the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hotline.checks import ASTERISK_ETC, check_config
from tests.support.paths import CONFIG_DIR


@pytest.fixture
def config(tmp_path: Path) -> Path:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def found(config: Path, **kwargs: Path | None) -> list[tuple[str, str]]:
    """(file relative to its folder, key) of each problem."""
    out = []
    for problem in check_config(config, **kwargs):
        assert problem.line().startswith(problem.file)
        path = Path(problem.file)
        base = config if path.is_relative_to(config) else path.parent
        out.append((str(path.relative_to(base)), problem.key))
    return out


def test_shipped_config_has_no_problems() -> None:
    assert check_config(CONFIG_DIR) == []


def test_queue_removed_from_the_catalogue(config: Path) -> None:
    queues = config / "queues.toml"
    text = queues.read_text(encoding="utf-8")
    queues.write_text(text[: text.index("[queues.main]")], encoding="utf-8")
    assert found(config) == [
        ("queues.toml", "catch_all"),
        ("queues.toml", "queues.housing.overflow"),
        ("queues.toml", "queues.transport.overflow"),
        ("queues.toml", "queues.social.overflow"),
        ("ivr.toml", "menu.default_queue"),
    ]


def test_duplicate_digit(config: Path) -> None:
    edit(config / "queues.toml", 'digit = "3"', 'digit = "1"')
    assert found(config) == [("queues.toml", "queues.social.digit")]


def test_unknown_prompt(config: Path) -> None:
    edit(config / "ivr.toml", 'invalid_prompt = "hotline/invalid"',
         'invalid_prompt = "hotline/sorry"')
    problems = check_config(config)
    assert [(Path(p.file).name, p.key) for p in problems] == [("ivr.toml", "menu.invalid_prompt")]
    assert "unknown prompt 'hotline/sorry'" in problems[0].reason


def test_bad_setting_in_hotline_toml(config: Path) -> None:
    edit(config / "hotline.toml", "port = 15038", 'port = "ami"')
    problems = check_config(config)
    assert [(Path(p.file).name, p.key) for p in problems] == [("hotline.toml", "ami.port")]


def test_taxonomy_sphere_and_seed_files(config: Path) -> None:
    edit(config / "queues.toml", 'sphere = "transport"', 'sphere = "roads"')
    (config / "seed" / "district_admin_rating_2017.csv").unlink()
    assert found(config) == [
        ("queues.toml", "queues.transport.sphere"),
        ("seed/district_admin_rating_2017.csv", ""),
    ]


def test_missing_files_are_named(config: Path) -> None:
    (config / "queues.toml").unlink()
    (config / "prompts.toml").unlink()
    assert found(config) == [("queues.toml", ""), ("prompts.toml", "")]


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    copy = tmp_path / "etc"
    shutil.copytree(ASTERISK_ETC, copy)
    return copy


def test_generated_asterisk_configuration(etc: Path) -> None:
    assert check_config(CONFIG_DIR, asterisk_etc=etc) == []
    with (etc / "queues.conf").open("a") as fh:
        fh.write("[night](hotline-queue)\n")
    edit(etc / "extensions.conf", "same => n(bye),Hangup()",
         "same => n,Queue(nowhere)\n same => n,Dial(Local/1@hotline-sim-operator)\n"
         " same => n,Set(X=${HOTLINE_NOWHERE})\n same => n(bye),Hangup()")
    lines = (etc / "extensions.conf").read_text().splitlines()
    at = {name: lines.index(next(x for x in lines if name in x)) + 1
          for name in ("Queue(nowhere)", "hotline-sim-operator", "HOTLINE_NOWHERE")}
    problems = check_config(CONFIG_DIR, asterisk_etc=etc)
    assert [(Path(p.file).name, p.key) for p in problems] == [
        ("queues.conf", f"line {len((etc / 'queues.conf').read_text().splitlines())}"),
        ("extensions.conf", f"line {at['Queue(nowhere)']}"),
        ("extensions.conf", f"line {at['hotline-sim-operator']}"),
        ("extensions.conf", f"line {at['HOTLINE_NOWHERE']}"),
    ]
    assert all(Path(p.file).parent == etc for p in problems)


def test_generated_globals_are_checked(etc: Path) -> None:
    edit(etc / "extensions.conf", "@@QUEUE_GLOBALS@@", "")
    problems = check_config(CONFIG_DIR, asterisk_etc=etc)
    assert {p.reason for p in problems} == {
        "${HOTLINE_DEFAULT_QUEUE} is read but never defined",
        "${HOTLINE_CATCH_ALL} is read but never defined",
    }


def test_asterisk_sounds_the_menu_plays(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "tree"
    sounds = root / "usr" / "share" / "asterisk" / "sounds"
    (root / "etc" / "alternatives" / "prompt-en" / "silence").mkdir(parents=True)
    sounds.mkdir(parents=True)
    # as in Debian's tree: an absolute link, meant for inside the chroot
    (sounds / "en").symlink_to("/etc/alternatives/prompt-en")
    assert found(config, asterisk_root=root) == [("ivr.toml", "menu.greeting[0]")]
    (root / "etc" / "alternatives" / "prompt-en" / "silence" / "1.gsm").write_bytes(b"x")
    assert found(config, asterisk_root=root) == []
    assert found(config, asterisk_root=tmp_path / "no-tree") == []  # no sandbox: not checked


def test_callflow_problems_are_named(config: Path) -> None:
    edit(config / "callflow.toml", "threshold_seconds = 180", "threshold_seconds = -5")
    edit(config / "callflow.toml", 'closed_prompt = "hotline/closed"',
         'closed_prompt = "hotline/we_are_closed"')
    assert found(config) == [("callflow.toml", "callback.threshold_seconds")]
    edit(config / "callflow.toml", "threshold_seconds = -5", "threshold_seconds = 60")
    # a prompt without words would never get a sound file (in either language)
    assert found(config) == [("callflow.toml", "hours.closed_prompt")] * 2
    (config / "callflow.toml").unlink()
    assert found(config) == [("callflow.toml", "")]
