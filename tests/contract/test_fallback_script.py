"""The classic-AGI fallback, run as Asterisk runs it: a process speaking AGI on stdin/stdout.

Running it as a subprocess also makes sure ``import asterisk.agi`` finds
pyst2 and not this repository's ``asterisk/`` folder (a namespace package
when the repo root is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agi_scripts.fallback import NO_MENU, load_menu
from ivr.menu import load_ivr_config
from tests.support.fake_agi_client import GUARD, environment
from tests.support.paths import CONFIG_DIR as CONFIG
from tests.support.paths import REPO_ROOT as REPO

SCRIPT = REPO / "agi_scripts" / "fallback.py"


@dataclass
class Script:
    proc: asyncio.subprocess.Process
    commands: list[str]

    async def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.proc.stdin.drain()

    async def expect(self, command: str) -> None:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), GUARD)
        self.commands.append(raw.decode())
        assert raw.decode() == command + "\n"

    async def finish(self) -> tuple[int, bytes, str]:
        """Exit code, anything more written to stdout, stderr."""
        out, err = await asyncio.wait_for(self.proc.communicate(), GUARD)
        assert self.proc.returncode is not None
        return self.proc.returncode, out, err.decode()


async def start(config: Path | str = CONFIG) -> Script:
    # cwd is the repo root on purpose: the worst case for the `asterisk` name clash.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        str(config),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    script = Script(proc, [])
    await script.send(*environment("hotline-fallback.py"), "")
    return script


@pytest.fixture
async def script() -> AsyncIterator[Script]:
    s = await start()
    yield s
    if s.proc.returncode is None:
        s.proc.kill()
        await s.proc.wait()


async def test_digit_sets_queue_and_source(script: Script) -> None:
    await script.expect("ANSWER")
    await script.send("200 result=0")
    await script.expect("GET DATA hotline/menu 5000 1")
    await script.send("200 result=1")
    await script.expect('SET VARIABLE "HOTLINE_QUEUE" "housing"')
    await script.send("200 result=1")
    await script.expect('SET VARIABLE "IVR_CHOICE" "1"')
    await script.send("200 result=1")
    await script.expect('SET VARIABLE "IVR_SOURCE" "fallback"')
    await script.send("200 result=1")
    code, rest, err = await script.finish()
    assert (code, rest) == (0, b"")
    assert "Traceback" not in err
    assert "380441234567" not in err  # pyst2's environment dump is muted


async def test_invalid_then_timeout_takes_default_queue(script: Script) -> None:
    await script.expect("ANSWER")
    await script.send("200 result=0")
    await script.expect("GET DATA hotline/menu 5000 1")
    await script.send("200 result=8")
    await script.expect('STREAM FILE hotline/invalid "" 0')
    await script.send("200 result=0 endpos=9000")
    await script.expect("GET DATA hotline/menu 5000 1")
    await script.send("200 result= (timeout)")  # only twice: the fallback keeps it short
    await script.expect('SET VARIABLE "HOTLINE_QUEUE" "main"')
    await script.send("200 result=1")
    await script.expect('SET VARIABLE "IVR_CHOICE" ""')
    await script.send("200 result=1")
    await script.expect('SET VARIABLE "IVR_SOURCE" "fallback"')
    await script.send("200 result=1")
    code, rest, _ = await script.finish()
    assert (code, rest) == (0, b"")


@pytest.mark.parametrize(
    "dead_reply",
    [
        ["HANGUP"],  # pyst2 raises ValueError on this line
        ["511 Command Not Permitted on a dead channel or intercept routine"],  # AGIUnknownError
        ["200 result=-1"],  # AGIAppError
    ],
)
async def test_hangup_mid_menu_exits_quietly_without_choosing(
    script: Script, dead_reply: list[str]
) -> None:
    await script.expect("ANSWER")
    await script.send("200 result=0")
    await script.expect("GET DATA hotline/menu 5000 1")
    await script.send(*dead_reply)
    code, rest, err = await script.finish()
    assert code == 0
    assert b"SET VARIABLE" not in rest  # HOTLINE_QUEUE stays as the dialplan set it
    assert "Traceback" not in err
    assert "ended early" in err


async def test_stdin_closed_during_environment_exits_quietly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        str(CONFIG),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"agi_network: yes\nagi_chan"), GUARD)
    assert proc.returncode == 0
    assert b"SET VARIABLE" not in out
    assert b"Traceback" not in err


@pytest.mark.parametrize("broken", ["ivr.toml", "queues.toml"])
async def test_broken_config_skips_the_menu(tmp_path: Path, broken: str) -> None:
    shutil.copytree(CONFIG, tmp_path, dirs_exist_ok=True)
    (tmp_path / broken).write_text("[menu\nprompt = ")
    script = await start(tmp_path)
    await script.expect("ANSWER")
    await script.send("200 result=0")
    # no menu and no HOTLINE_QUEUE: the dialplan's preset queue takes the call
    await script.expect('SET VARIABLE "IVR_CHOICE" ""')
    await script.send("200 result=1", "200 result=1")
    code, rest, err = await script.finish()
    assert code == 0
    assert rest.decode().splitlines() == ['SET VARIABLE "IVR_SOURCE" "fallback"']
    assert "no menu" in err and "Traceback" not in err


def test_load_menu_reads_the_shipped_config() -> None:
    menu = load_menu(str(CONFIG))
    assert menu.options == {"1": "housing", "2": "transport", "3": "social", "0": "main"}
    assert menu.attempts == 2  # capped even though the FastAGI menu allows more
    assert menu.default_queue == "main"


def test_load_menu_missing_files_give_no_menu(tmp_path: Path) -> None:
    assert load_menu(str(tmp_path)) == NO_MENU
    assert NO_MENU.options == {} and NO_MENU.default_queue == ""


def test_fallback_menu_is_the_fastagi_menu() -> None:
    """Both read the same two files: the same digits, queues, prompt and default."""
    fallback, fastagi = load_menu(str(CONFIG)), load_ivr_config(CONFIG)
    assert fallback.options == {d: o.queue for d, o in fastagi.options.items()}
    assert (fallback.prompt, fallback.invalid_prompt, fallback.timeout_ms,
            fallback.default_queue) == (fastagi.menu_prompt, fastagi.invalid_prompt,
                                        fastagi.timeout_ms, fastagi.default_queue)


def test_a_queue_added_to_the_catalogue_is_offered(tmp_path: Path) -> None:
    shutil.copytree(CONFIG, tmp_path, dirs_exist_ok=True)
    with (tmp_path / "queues.toml").open("a") as fh:
        fh.write('[queues.health]\ndigit = "4"\nsphere = "healthcare"\n'
                 'label_uk = "Охорона здоров\'я"\nlabel_en = "Healthcare"\n')
    assert load_menu(str(tmp_path)).options["4"] == "health"


def test_script_imports_nothing_from_the_project() -> None:
    source = SCRIPT.read_text()
    for package in ("hotline", "ivr", "cti_bridge", "crm_sync", "agi_scripts"):
        assert f"import {package}" not in source and f"from {package}" not in source
    assert source.startswith("#!/usr/bin/env -S PYTHONPATH=/opt/hotline-pyst2 python3\n")
