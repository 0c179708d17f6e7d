"""What a local process can do to a PostgreSQL server, speaking its protocol itself.

Run as another user (``setpriv --reuid=… ``) by :func:`probe_as`; the script is
standard library only (passed to ``python -I -c``, so that user needs no access to
the repository) and prints one JSON object: whether it reached the server, the
authentication the server asked for, whether it got in (with a password, through
SCRAM-SHA-256 as libpq does), the server's error, and ``SELECT current_user``'s
answer when it got in. The right password must get in: that keeps the probe honest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

AUTH_NAMES = {0: "ok", 3: "password", 5: "md5", 10: "sasl"}


def main(target: str, password: str) -> None:
    import base64
    import hashlib
    import hmac
    import secrets
    import socket
    import struct

    result: dict[str, Any] = {"connected": False, "error": "", "auth": "",
                              "authenticated": False, "server_error": "", "rows": []}

    def send(kind: bytes, body: bytes) -> None:
        sock.sendall(kind + struct.pack("!I", len(body) + 4) + body)

    def receive() -> tuple[bytes, bytes]:
        header = reader.read(5)
        if len(header) < 5:
            raise EOFError("the server closed the connection")
        return header[:1], reader.read(struct.unpack("!I", header[1:])[0] - 4)

    def error_of(body: bytes) -> str:
        fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
        return f"{fields.get(b'C', '')} {fields.get(b'M', '')}"

    try:
        if target.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(os.path.join(target, ".s.PGSQL.5432"))
        else:
            host, _, port = target.rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=5)
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(result))
        return
    result["connected"] = True
    reader = sock.makefile("rb")
    try:
        params = b"user\0postgres\0database\0postgres\0\0"
        sock.sendall(struct.pack("!II", len(params) + 8, 196608) + params)
        while True:
            kind, body = receive()
            if kind == b"E":
                result["server_error"] = error_of(body)
                break
            if kind == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code == 0:
                    result["authenticated"] = True
                    continue
                result["auth"] = result["auth"] or AUTH_NAMES.get(code, str(code))
                if code == 10:  # SASL: SCRAM-SHA-256, RFC 5802
                    if not password:
                        break  # what a client without the password can do: nothing
                    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
                    first_bare = f"n=,r={nonce}"
                    first = ("n,," + first_bare).encode()
                    send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
                elif code == 11:
                    server_first = body[4:].decode()
                    attrs = dict(item.split("=", 1) for item in server_first.split(","))
                    salted = hashlib.pbkdf2_hmac("sha256", password.encode(),
                                                 base64.b64decode(attrs["s"]), int(attrs["i"]))
                    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
                    stored_key = hashlib.sha256(client_key).digest()
                    final_bare = f"c=biws,r={attrs['r']}"
                    message = f"{first_bare},{server_first},{final_bare}".encode()
                    signature = hmac.new(stored_key, message, "sha256").digest()
                    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
                    send(b"p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode())
                elif code != 12:  # 12: SASL final; anything else is a method we refuse
                    break
            elif kind == b"Z":  # ready for a query: we are in
                send(b"Q", b"SELECT current_user\0")
                while True:
                    kind, body = receive()
                    if kind == b"D":
                        length = struct.unpack("!I", body[2:6])[0]
                        result["rows"].append(body[6:6 + length].decode())
                    elif kind == b"E":
                        result["server_error"] = error_of(body)
                    elif kind == b"Z":
                        break
                break
    except (OSError, EOFError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        reader.close()
        sock.close()
    print(json.dumps(result))


def probe_as(user: str, target: str, password: str = "") -> dict[str, Any]:
    """Run :func:`main` as ``user`` (its own group, no others). ``target`` is a socket
    directory or ``host:port``; ``password`` empty means the prober has none."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to act as another user"
    source = Path(__file__).read_text(encoding="utf-8")
    script = source + "\nmain(sys.argv[1], os.environ.get('PROBE_PASSWORD', ''))\n"
    done = subprocess.run(
        [setpriv, f"--reuid={user}", f"--regid={_group_of(user)}", "--clear-groups", "--",
         sys.executable, "-I", "-c", script, target],
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
        # In the environment, not argv: a password on a command line is what we test against.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PROBE_PASSWORD": password},
    )
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid
