"""`hotline check-config` as a person runs it, on a copy of config/: one line per
problem naming the file and the key, non-zero exit; `run` and `demo` refuse to
start with the same lines. Real subprocesses of the real command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.cli import run_hotline
from tests.support.paths import CONFIG_DIR

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


def env_for(config: Path) -> dict[str, str]:
    # No sandbox tree: the sounds check is tested on its own (tests/unit/test_checks.py).
    return {"HOTLINE_SERVICE_CONFIG_DIR": str(config),
            "HOTLINE_ASTERISK_ROOT": str(config / "no-asterisk-tree")}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


async def check(config: Path) -> tuple[int, list[str]]:
    code, out, err = await run_hotline("check-config", env=env_for(config))
    assert "Traceback" not in err, err
    return code, out.splitlines()


async def test_shipped_config_passes(config: Path) -> None:
    code, lines = await check(config)
    assert (code, lines) == (0, [f"{config}: no problems"])


async def test_queue_removed_from_the_catalogue(config: Path) -> None:
    queues = config / "queues.toml"
    text = queues.read_text(encoding="utf-8")
    queues.write_text(text[: text.index("[queues.main]")], encoding="utf-8")
    code, lines = await check(config)
    assert code == 1
    assert [line.split(": ")[:2] for line in lines] == [
        [f"{queues}", "catch_all"],
        [f"{queues}", "queues.housing.overflow"],
        [f"{queues}", "queues.transport.overflow"],
        [f"{queues}", "queues.social.overflow"],
        [f"{config / 'ivr.toml'}", "menu.default_queue"],
    ]
    assert all("'main'" in line for line in lines)


async def test_duplicate_digit(config: Path) -> None:
    edit(config / "queues.toml", 'digit = "3"', 'digit = "1"')
    code, lines = await check(config)
    assert code == 1
    assert lines == [f"{config / 'queues.toml'}: queues.social.digit: duplicate digit '1': "
                     "queue 'housing' has it already"]


async def test_unknown_prompt(config: Path) -> None:
    edit(config / "ivr.toml", '"hotline/greeting"]', '"hotline/welcome"]')
    code, lines = await check(config)
    assert code == 1
    assert lines == [f"{config / 'ivr.toml'}: menu.greeting[1]: unknown prompt "
                     "'hotline/welcome': prompts.toml has no words for it, so it never gets "
                     "a sound file"]


async def test_desk_wrapup_reason_not_a_pause_reason(config: Path) -> None:
    edit(config / "presence.toml", 'wrapup_reason = "after_call_work"', 'wrapup_reason = "nap"')
    code, lines = await check(config)
    assert code == 1
    assert lines == [f"{config / 'presence.toml'}: wrapup_reason: must be one of pause_reasons, "
                     "got 'nap'"]


@pytest.mark.parametrize("command", ["run", "demo"])
async def test_run_and_demo_refuse_a_broken_config(config: Path, command: str) -> None:
    edit(config / "queues.toml", 'digit = "3"', 'digit = "1"')
    code, _, err = await run_hotline(command, env=env_for(config))
    assert code == 2
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"{config / 'queues.toml'}: queues.social.digit: duplicate digit '1': "
        "queue 'housing' has it already",
        "hotline: error: the configuration has problems (listed above); "
        "`hotline check-config` lists them too",
    ]
