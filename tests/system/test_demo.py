"""`hotline demo` as a person runs it: it comes up, calls flow through the real
Asterisk into the case store, the wallboard's API shows them, Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
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
from hotline.settings import Settings
from tests.support.ports import instance, port

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
               HOTLINE_ASTERISK_INSTANCE=instance("demotest"), HOTLINE_SERVICE_LOG_FORMAT="json")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "demo", "--calls-per-minute", "40",
        "--operators", "3", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    banner = ""
    try:
        async with asyncio.timeout(180):
            while "Ctrl-C stops it" not in banner:
                line = await proc.stdout.readline()
                assert line, f"demo exited early: {banner}"
                banner += line.decode()
        match = re.search(r"password: (\S+)\)", banner)
        assert match, banner
        web = f"http://127.0.0.1:{PORTS['HOTLINE_WEB_PORT']}"
        assert f"{web}/" in banner

        # unsafe: keep cookies for an IP-address host
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{web}/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"database": "ok", "redis": "ok"}
            async with http.get(f"{web}/api/calls/recent", allow_redirects=False) as resp:
                assert resp.status == 401  # not signed in yet
            async with http.post(
                f"{web}/login", data={"login": "supervisor", "password": match.group(1)}
            ) as resp:
                assert resp.status == 200 and "wallboard" in str(resp.url)
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
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        errors = (await stderr_task).decode()
    assert code == 0, errors[-2000:]
    assert '"event": "call_recorded"' in errors
    assert "Traceback" not in errors
    # Ctrl-C took the sandbox down too
    spec_root = Path(Settings().asterisk.root)
    pid_file = spec_root / "var" / "run" / f"asterisk-{instance('demotest')}" / "sandbox.pid"
    assert not pid_file.exists()
    assert not sandbox.any_instance_running(spec_root) or _other_instances(spec_root)


def _other_instances(root: Path) -> bool:
    """Another instance (the module-scoped test one) may legitimately be running."""
    return any(p.parent.name != f"asterisk-{instance('demotest')}"
               for p in (root / "var" / "run").glob("asterisk-*/sandbox.pid"))
