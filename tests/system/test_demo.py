"""`hotline demo` as a person runs it: it comes up, calls flow through the real
Asterisk into the case store, the wallboard's API shows them, the console shows
the banner and a status line (the logs go to a file), Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from hotline.devtools import asterisk_sandbox as sandbox
from tests.support.ports import asterisk_root, instance, port
from tests.support.web import sign_in_session

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

PORTS = {"HOTLINE_AMI_PORT": str(port(26038)), "HOTLINE_AGI_PORT": str(port(26574)),
         "HOTLINE_WEB_PORT": str(port(26551)), "HOTLINE_ASTERISK_SIP_PORT": str(port(26060))}


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its 0700 parents would lock out the embedded
    # PostgreSQL, which runs as an unprivileged user when we are root.
    path = Path(tempfile.mkdtemp(prefix="hotline-demo-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_demo_brings_everything_up_and_calls_flow(state_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOTLINE_") and k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(PORTS, HOTLINE_SERVICE_STATE_DIR=str(state_dir),
               HOTLINE_ASTERISK_INSTANCE=instance("demotest"), HOTLINE_SERVICE_LOG_FORMAT="json",
               HOTLINE_ASTERISK_ROOT=str(asterisk_root()))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "demo", "--calls-per-minute", "40",
        "--operators", "3", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    banner = ""
    status_lines: list[str] = []
    try:
        async with asyncio.timeout(180):
            while "Ctrl-C stops it" not in banner:
                line = await proc.stdout.readline()
                assert line, f"demo exited early: {banner}"
                banner += line.decode()
        answered_shown = asyncio.Event()
        stdout_task = asyncio.create_task(
            _collect_lines(proc.stdout, status_lines, answered_shown)
        )
        match = re.search(r"password: (\S+)\)", banner)
        assert match, banner
        web = f"http://127.0.0.1:{PORTS['HOTLINE_WEB_PORT']}"
        assert f"{web}/" in banner
        logs = re.search(r"logs: +(\S+)", banner)
        assert logs, banner
        log_file = Path(logs.group(1))
        assert log_file.is_relative_to(state_dir), log_file

        # unsafe: keep cookies for an IP-address host
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{web}/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"database": "ok", "redis": "ok"}
            async with http.get(f"{web}/api/calls/recent", allow_redirects=False) as resp:
                assert resp.status == 401  # not signed in yet
            executor = re.search(r"executors: +\S+ +\(login: (\S+), password: (\S+)\)", banner)
            assert executor, banner
            async with await sign_in_session(http, web, *executor.groups()) as resp:
                assert resp.status == 200 and resp.url.path == "/executor"
            async with http.get(f"{web}/api/executor/appeals") as resp:
                assert resp.status == 200 and (await resp.json())["appeals"], "nothing to do"
            async with await sign_in_session(http, web, "supervisor", match.group(1)) as resp:
                assert resp.status == 200 and "wallboard" in str(resp.url)
            # the in-call panel's knowledge base (demo articles) and directory are served
            async with http.get(f"{web}/api/desk/kb", params={"q": "субсидії"}) as resp:
                assert resp.status == 200 and (await resp.json())["articles"], "no articles"
            async with http.get(f"{web}/api/desk/directory", params={"q": "газ"}) as resp:
                assert resp.status == 200 and (await resp.json())["services"]
            calls: list[dict[str, object]] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                async with http.get(f"{web}/api/calls/recent?limit=100") as resp:
                    calls = (await resp.json())["calls"]
                if any(c["outcome"] == "answered" for c in calls):
                    break
                await asyncio.sleep(1)
            assert any(c["outcome"] == "answered" for c in calls), calls
            answered = next(c for c in calls if c["outcome"] == "answered")
            assert answered["queue"] in {"housing", "transport", "social", "main"}
            assert answered["operator_name"] and str(answered["operator_name"]).startswith(
                "Operator 10"
            )
        # the console's status line comes from the case store: it sees the answered call
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered_shown.wait(), 30)
        assert answered_shown.is_set(), status_lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        errors = (await stderr_task).decode()
    await stdout_task
    assert code == 0, errors[-2000:]
    assert "Traceback" not in errors
    assert '"event"' not in errors, errors[-2000:]  # no log line on the console
    written = await asyncio.to_thread(log_file.read_text)
    assert '"event": "call_recorded"' in written
    assert '"event": "demo_traffic_stopped"' in written  # logged to the end of the shutdown
    assert "Traceback" not in written
    assert (await asyncio.to_thread(log_file.stat)).st_mode & 0o777 == 0o640
    # Ctrl-C took the sandbox down too (other instances may legitimately run)
    root = asterisk_root()
    assert sandbox.sandbox_pids(root, instance("demotest")) == []
    assert not (root / "var/lib/hotline-sandbox" / instance("demotest") / "sandbox.pid").exists()


STATUS = re.compile(r"calls (\d+)  waiting (\d+)  answered (\d+)  abandoned (\d+)$")


async def _collect_lines(
    stream: asyncio.StreamReader, into: list[str], answered_shown: asyncio.Event
) -> None:
    """The console after the banner; ``answered_shown`` once a status line counts
    an answered call."""
    while line := await stream.readline():
        into.append(line.decode().rstrip("\n"))
        if (match := STATUS.search(into[-1])) and int(match.group(3)) >= 1:
            answered_shown.set()
