"""What a local user without our credentials can do to a Redis server.

Run as another user (``setpriv --reuid=nobody …``) by :func:`probe_as`; the
script itself is standard library only (it is passed to ``python -I -c``, so the
unprivileged user needs no access to the repository or the virtualenv) and
prints one JSON object: whether it connected and each command's reply line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROBE_USER, PROBE_GROUP = "nobody", "nogroup"


def _resp(args: list[str]) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def main(url: str, commands_json: str) -> None:
    import socket

    commands: list[list[str]] = json.loads(commands_json)
    parts = urlsplit(url)
    result: dict[str, Any] = {"connected": False, "error": "", "replies": []}
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(3)
            sock.connect(parts.path)
        else:
            sock = socket.create_connection((parts.hostname, parts.port or 6379), timeout=3)
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(result))
        return
    result["connected"] = True
    with sock, sock.makefile("rb") as replies:
        for command in commands:
            sock.sendall(_resp(command))
            line = replies.readline().decode(errors="replace").rstrip("\r\n")
            if line.startswith("$") and line != "$-1":  # a bulk string: its body follows
                line += " " + replies.readline().decode(errors="replace").rstrip("\r\n")
            result["replies"].append(line)
    print(json.dumps(result))


def probe_as_nobody(url: str, commands: list[list[str]]) -> dict[str, Any]:
    """Run :func:`main` as ``nobody``/``nogroup`` with no supplementary groups.
    ``url`` must carry no credentials (the prober does not know them)."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to act as another user"
    source = Path(__file__).read_text(encoding="utf-8")
    script = source + "\nmain(sys.argv[1], sys.argv[2])\n"
    done = subprocess.run(
        [setpriv, f"--reuid={PROBE_USER}", f"--regid={PROBE_GROUP}", "--clear-groups", "--",
         sys.executable, "-I", "-c", script, url, json.dumps(commands)],
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def without_credentials(url: str) -> str:
    """The address an outsider sees (``ps``, ``ss``, the socket's path), no password."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc, query="").geturl()
