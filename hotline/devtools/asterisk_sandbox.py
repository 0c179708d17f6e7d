"""A real Asterisk 22 from Debian's ``sid`` suite, run in a chroot.

Debian 12 has no Asterisk package, so the first ``up`` builds a minimal sid tree
with debootstrap (cached: later runs reuse it), installs pyst2 for the classic
AGI fallback script into it, renders ``asterisk/etc/*.conf`` for one named
instance (``demo``, ``test``, …: each has its own directories, ports and
secret) and starts ``asterisk -f`` in the chroot. Readiness is checked over AMI
(login accepted, ``FullyBooted``). Everything here is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hotline.core.errors import HotlineError
from hotline.core.queues import CATALOGUE_FILE, dialplan_globals, queues_conf
from hotline.devtools.processes import pid_alive
from hotline.settings import PROJECT_ROOT
from ivr.menu import IVR_FILE, load_ivr_config

ASTERISK_ETC = PROJECT_ROOT / "asterisk" / "etc"
FALLBACK_SCRIPT = PROJECT_ROOT / "agi_scripts" / "fallback.py"
PACKAGES = "asterisk,asterisk-modules,asterisk-core-sounds-en-gsm,python3"
READY_MARKER = ".hotline-ready"
PYST2_DIR = "opt/hotline-pyst2"


class SandboxError(HotlineError):
    """The sandbox cannot be built or started; the message says why and what to do."""

    error_id = "sandbox_failed"


@dataclass(frozen=True)
class SandboxSpec:
    instance: str
    root: Path
    server_id: str
    ami_port: int
    ami_user: str
    ami_secret: str
    agi_host: str
    agi_port: int
    sip_port: int
    sip_password: str
    config_dir: Path  # ivr.toml, queues.toml, prompts.toml (Settings.config_path)
    queue_timeout: int = 300
    mirror: str = ""

    @property
    def etc_dir(self) -> Path:
        return self.root / "etc" / f"hotline-asterisk-{self.instance}"

    @property
    def log_dir(self) -> Path:
        return self.root / "var" / "log" / f"asterisk-{self.instance}"

    @property
    def run_dir(self) -> Path:
        return self.root / "var" / "run" / f"asterisk-{self.instance}"

    @property
    def queue_log(self) -> Path:
        return self.log_dir / "queue_log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "sandbox.pid"

    def dirs(self) -> list[Path]:
        return [
            self.etc_dir,
            self.etc_dir / "agi-bin",
            self.log_dir,
            self.run_dir,
            self.root / "var" / "lib" / f"asterisk-{self.instance}",
            self.root / "var" / "spool" / f"asterisk-{self.instance}",
            self.root / "var" / "cache" / f"asterisk-{self.instance}",
        ]


def generate_secret() -> str:
    return secrets.token_urlsafe(24)


def debian_mirror(explicit: str = "", apt_dir: Path = Path("/etc/apt")) -> str:
    """The mirror this machine's apt already uses (sid is served from the same place)."""
    if explicit:
        return explicit
    candidates: list[Path] = [apt_dir / "sources.list"]
    sources_d = apt_dir / "sources.list.d"
    if sources_d.is_dir():
        candidates += sorted(sources_d.glob("*.sources")) + sorted(sources_d.glob("*.list"))
    for path in candidates:
        with contextlib.suppress(OSError):
            text = path.read_text()
            for match in re.finditer(r"(?:URIs:|deb)\s+(https?://\S+)", text):
                uri = match.group(1).rstrip("/")
                if uri.endswith("/debian") and "snapshot" not in uri:
                    return uri
    raise SandboxError(
        "no Debian mirror found in the apt sources; set asterisk.mirror "
        "(HOTLINE_ASTERISK_MIRROR) to a Debian mirror URL"
    )


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "the Asterisk sandbox needs root (debootstrap, chroot, mount); run as root"
        )


def _run(cmd: list[str], what: str, timeout: float = 900) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SandboxError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SandboxError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))


def ensure_tree(root: Path, mirror: str = "") -> None:
    """Build the sid tree once; a half-built tree (no marker) is rebuilt."""
    _require_root()
    if (root / READY_MARKER).exists():
        return
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed (apt-get install debootstrap)")
    url = debian_mirror(mirror)
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists() and not (tmp / "usr" / "sbin" / "asterisk").exists():
        _unmount_proc(tmp)
        shutil.rmtree(tmp)
    if not tmp.exists():
        tmp.parent.mkdir(parents=True, exist_ok=True)
        print(f"building the Asterisk sandbox in {root} (one time, about a minute)", flush=True)
        try:
            _run(
                ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "sid", str(tmp), url],
                f"debootstrap from {url} (is the Debian mirror reachable?)",
            )
        except SandboxError:
            _unmount_proc(tmp)
            raise
    _run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--target", str(tmp / PYST2_DIR), "--upgrade", "pyst2==0.5.1",
        ],
        "installing pyst2 into the sandbox",
    )
    (tmp / READY_MARKER).write_text(time.strftime("%F %T\n"))
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)


def render_config(spec: SandboxSpec) -> str:
    """Write the instance's configuration; returns a digest to tell if it changed."""
    for d in spec.dirs():
        d.mkdir(parents=True, exist_ok=True)
    menu = load_ivr_config(spec.config_dir)
    values = {
        "INSTANCE": spec.instance,
        "SERVER_ID": spec.server_id,
        "AMI_PORT": str(spec.ami_port),
        "AMI_USER": spec.ami_user,
        "AMI_SECRET": spec.ami_secret,
        "AGI_HOST": spec.agi_host,
        "AGI_PORT": str(spec.agi_port),
        "SIP_PORT": str(spec.sip_port),
        "SIP_PASSWORD": spec.sip_password,
        "QUEUE_TIMEOUT": str(spec.queue_timeout),
        "QUEUES": queues_conf(menu.queues),
        "QUEUE_GLOBALS": dialplan_globals(menu.queues, menu.default_queue),
    }
    digest = hashlib.sha256()
    for template in sorted(ASTERISK_ETC.glob("*.conf")):
        text = re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], template.read_text())
        if template.name == "extensions.conf":  # simulated calls: the sandbox's alone
            text += '\n#include "extensions_simulation.conf"\n'
        target = spec.etc_dir / template.name
        target.write_text(text)
        target.chmod(0o600)
        digest.update(text.encode())
    for name in (IVR_FILE, CATALOGUE_FILE):  # the fallback script reads them
        shutil.copyfile(spec.config_dir / name, spec.etc_dir / name)
    script = spec.etc_dir / "agi-bin" / "hotline-fallback.py"
    shutil.copyfile(FALLBACK_SCRIPT, script)
    script.chmod(0o755)
    digest.update(FALLBACK_SCRIPT.read_bytes())
    return digest.hexdigest()


def _render_prompts(spec: SandboxSpec) -> None:
    from hotline.devtools.prompts import PromptError, load_prompts, render_prompts

    try:
        render_prompts(
            load_prompts(spec.config_dir), spec.root / "usr" / "share" / "asterisk" / "sounds"
        )
    except PromptError as exc:
        raise SandboxError(str(exc)) from None


def _proc_mounted(root: Path) -> bool:
    target = str((root / "proc").resolve())
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def _mount_proc(root: Path) -> None:
    if not _proc_mounted(root):
        (root / "proc").mkdir(exist_ok=True)
        _run(["mount", "-t", "proc", "proc", str(root / "proc")], "mounting /proc in the sandbox")


def _unmount_proc(root: Path) -> None:
    if (root / "proc").exists() and _proc_mounted(root):
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def sandbox_pids(root: Path, instance: str | None = None) -> list[int]:
    """Asterisk processes running in this chroot (of one instance, if given).

    Found from /proc rather than a pid file, so that an Asterisk left behind by
    a killed run is found and stopped too, instead of holding the AMI port.
    """
    target = str(root.resolve())
    marker = f"/etc/hotline-asterisk-{instance}/asterisk.conf".encode() if instance else None
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") != target:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"asterisk") and (marker is None or marker in argv):
            if pid_alive(int(entry.name)):
                pids.append(int(entry.name))
    return sorted(pids)


def running_pid(spec: SandboxSpec) -> int | None:
    pids = sandbox_pids(spec.root, spec.instance)
    return pids[0] if pids else None


def up(spec: SandboxSpec, ready_timeout: float = 60.0) -> int:
    """Start (or keep) the instance; restarts it when its configuration changed."""
    _require_root()
    ensure_tree(spec.root, spec.mirror)
    digest = render_config(spec)
    _render_prompts(spec)
    digest_file = spec.run_dir / "config.sha256"
    pid = running_pid(spec)
    if pid is not None:
        same = digest_file.exists() and digest_file.read_text() == digest
        if same and check_ready(spec, timeout=5.0):
            return pid
        down(spec)
    if _port_in_use(spec.ami_port):
        raise SandboxError(
            f"AMI port 127.0.0.1:{spec.ami_port} is already in use by another program; "
            "stop it or choose another ami.port"
        )
    _mount_proc(spec.root)
    console = open(spec.log_dir / "console.log", "ab")
    try:
        proc = subprocess.Popen(
            [
                "chroot", str(spec.root), "/usr/sbin/asterisk",
                "-C", f"/etc/hotline-asterisk-{spec.instance}/asterisk.conf", "-f", "-n",
            ],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        console.close()
    spec.pid_file.write_text(str(proc.pid))
    digest_file.write_text(digest)
    if not check_ready(spec, timeout=ready_timeout):
        code = proc.poll()
        down(spec)
        log_tail = _tail(spec.log_dir / "console.log") + _tail(spec.log_dir / "messages.log")
        raise SandboxError(
            f"Asterisk did not become ready on AMI 127.0.0.1:{spec.ami_port} within "
            f"{ready_timeout:.0f} s (exit code {code}); last log lines: {log_tail}"
        )
    return proc.pid


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


def down(spec: SandboxSpec, timeout: float = 15.0) -> bool:
    """Stop the instance (every process of it); True when something was running."""
    pids = sandbox_pids(spec.root, spec.instance)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap our own child
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    spec.pid_file.unlink(missing_ok=True)
    if not any_instance_running(spec.root):
        _unmount_proc(spec.root)
    return bool(pids)


def any_instance_running(root: Path) -> bool:
    return bool(sandbox_pids(root))


def check_ready(spec: SandboxSpec, timeout: float) -> bool:
    """True once AMI accepts our login and Asterisk reports FullyBooted."""
    return asyncio.run(_ami_ready(spec, timeout))


async def _ami_ready(spec: SandboxSpec, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(max(0.5, deadline - time.monotonic())):
                if await _ami_login_once(spec):
                    return True
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.3)
    return False


async def _ami_login_once(spec: SandboxSpec) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", spec.ami_port)
    try:
        banner = await reader.readline()
        if not banner.startswith(b"Asterisk Call Manager/"):
            return False
        writer.write(
            f"Action: Login\r\nUsername: {spec.ami_user}\r\nSecret: {spec.ami_secret}\r\n"
            "ActionID: ready-1\r\n\r\n".encode()
        )
        await writer.drain()
        text = ""
        while "FullyBooted" not in text:
            chunk = await reader.read(4096)
            if not chunk:
                return False
            text += chunk.decode(errors="replace")
            if "Authentication failed" in text:
                raise SandboxError("the sandbox Asterisk refused our AMI login")
        return True
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def status(spec: SandboxSpec) -> dict[str, object]:
    pid = running_pid(spec)
    return {
        "instance": spec.instance,
        "root": str(spec.root),
        "tree_ready": (spec.root / READY_MARKER).exists(),
        "running": pid is not None,
        "pid": pid,
        "ami": f"127.0.0.1:{spec.ami_port}",
        "queue_log": str(spec.queue_log),
    }
