"""The ``hotline`` command run as a person runs it: a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys


async def run_hotline(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, str, str]:
    """Exit code, stdout, stderr; no HOTLINE_*, DATABASE_URL or REDIS_URL but ``env``'s."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    full_env.pop("DATABASE_URL", None)
    full_env.pop("REDIS_URL", None)
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", *args,
        env=full_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_error_line(stderr: str, *expected: str) -> str:
    """The command failed as a person can act on: one ``hotline: error:`` line
    naming each of ``expected``, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("hotline: error:")]
    assert len(lines) == 1, stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]
