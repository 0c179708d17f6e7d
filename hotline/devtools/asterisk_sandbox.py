"""A real Asterisk 22 from Debian's ``sid`` suite, run in a chroot.

Debian 12 has no Asterisk package, so the first ``up`` builds a minimal sid tree
with debootstrap (cached: later runs reuse it), installs pyst2 for the classic
AGI fallback script into it, renders ``asterisk/etc/*.conf`` for one named
instance (``demo``, ``test``, …: each has its own directories, ports and
secret) and starts ``asterisk -f`` in the chroot. Readiness is checked over AMI
(login accepted, ``FullyBooted``). Everything here is idempotent.

Asterisk runs as the tree's own ``asterisk`` user (``runuser``), never root: it
owns only its instance's lib/log/spool/run/cache directories (0750, files 0640)
and reads its configuration (root-owned, 0640) through its group. That user's
uid and gid are made unique on the host (Debian gives it 101, which on a host
is likely someone else's: a shared uid could signal or read that account's
processes). No ``/proc`` is mounted in the chroot: nothing needs it.

Operators' phones: one PJSIP endpoint ``PJSIP/<login>`` per login in
``SandboxSpec.operators``, each with its own password, generated once per
instance and login into ``operator-sip.json`` in the instance's root-only state
directory (0600; never in the repository; :func:`operator_sip_password` reads it).
They register only over the loopback transport, from loopback contacts.

The AMI has two accounts: the service's (least privilege, see manager.conf) and,
only in the sandbox, the simulator's (``hotline-simulator``: Originate, Setvar,
QueueAdd/QueueRemove; its secret derived from the instance's AMI secret).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import grp
import hashlib
import hmac
import json
import os
import pwd
import queue
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cti_bridge.ami_client import AmiClient, AmiError, AmiLoginError
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
DEBOOTSTRAP = "debootstrap"
RUN_USER = "asterisk"  # Debian's, created by the asterisk package in the tree
SIMULATOR_USER = "hotline-simulator"
# Where a renumbered asterisk user's ids start: Debian leaves 60000-64999 to
# ids it allocates on demand, so a host is unlikely to use these.
_FREE_ID_BASE = 61551
_PROGRESS_EVERY = 10.0  # seconds of silence before a "still …" line

Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    operators: tuple[str, ...] = ()  # logins that get a PJSIP endpoint (their phone)

    @property
    def etc_dir(self) -> Path:
        return self.root / "etc" / f"hotline-asterisk-{self.instance}"

    @property
    def log_dir(self) -> Path:
        return in_chroot(self.root, f"/var/log/asterisk-{self.instance}")

    @property
    def state_dir(self) -> Path:
        """The sandbox's own bookkeeping (pid, config digest): root only."""
        return self.root / "var" / "lib" / "hotline-sandbox" / self.instance

    @property
    def queue_log(self) -> Path:
        return self.log_dir / "queue_log"

    @property
    def operator_secrets(self) -> Path:
        """The operators' generated SIP passwords (root only, 0600)."""
        return self.state_dir / "operator-sip.json"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "sandbox.pid"

    @property
    def simulator_secret(self) -> str:
        """The simulator account's secret, derived from the instance's AMI secret:
        nothing more to keep, and it changes when that one is rotated."""
        mac = hmac.new(self.ami_secret.encode(), f"{SIMULATOR_USER}:{self.instance}".encode(),
                       hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).decode()

    def dirs(self) -> list[Path]:
        """Root's directories: the configuration and the bookkeeping."""
        return [self.etc_dir, self.etc_dir / "agi-bin", self.state_dir]

    def asterisk_dirs(self) -> list[Path]:
        """The directories Asterisk writes (asterisk.conf), as seen from the host."""
        return [
            in_chroot(self.root, f"/var/{kind}/asterisk-{self.instance}")
            for kind in ("lib", "log", "spool", "run", "cache")
        ]


def in_chroot(root: Path, path: str) -> Path:
    """``path`` as the chroot sees it, from the host: symlinks resolved against
    ``root`` (in a Debian tree ``/var/run`` is a link to ``/run``, which from the
    host would be the host's own ``/run``)."""
    current = root
    parts = [p for p in path.split("/") if p]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise SandboxError(f"too many symbolic links resolving {path} in {root}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                current = root
            continue
        current = candidate
    return current


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


def ensure_tree(root: Path, mirror: str = "", progress: Progress = print_progress) -> None:
    """Build the sid tree once; a half-built tree (no marker) is rebuilt.

    The first build takes about a minute: ``progress`` gets a line per stage of
    debootstrap and a "still …" line after every 10 s of silence, with the
    seconds elapsed.
    """
    _require_root()
    if (root / READY_MARKER).exists():
        return
    if shutil.which(DEBOOTSTRAP) is None:
        raise SandboxError("debootstrap is not installed (apt-get install debootstrap)")
    url = debian_mirror(mirror)
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists() and not (tmp / "usr" / "sbin" / "asterisk").exists():
        _unmount_proc(tmp)
        shutil.rmtree(tmp)
    started = time.monotonic()
    if not tmp.exists():
        tmp.parent.mkdir(parents=True, exist_ok=True)
        progress(f"building the Asterisk sandbox in {root} (one time, about a minute)")
        try:
            _debootstrap(
                [DEBOOTSTRAP, "--variant=minbase", f"--include={PACKAGES}", "sid", str(tmp), url],
                f"debootstrap from {url} (is the Debian mirror reachable?)",
                progress, started,
            )
        except SandboxError:
            _unmount_proc(tmp)
            raise
    progress(f"  [{time.monotonic() - started:4.0f} s] installing pyst2 into the sandbox")
    _install_pyst2(tmp)
    (tmp / READY_MARKER).write_text(time.strftime("%F %T\n"))
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    progress(f"  [{time.monotonic() - started:4.0f} s] the Asterisk sandbox is built")


def _install_pyst2(tree: Path) -> None:
    _run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--target", str(tree / PYST2_DIR), "--upgrade", "pyst2==0.5.1",
        ],
        "installing pyst2 into the sandbox",
    )


# debootstrap's "I: …" lines (its functions' info calls, Debian 12's 1.0.128) → the
# stage a person is told about (first match wins).
_STAGES: tuple[tuple[str, str, bool], ...] = (
    # (prefix of the message, stage, whether its lines count packages)
    ("Retrieving InRelease", "fetching the package index", False),
    ("Retrieving Release", "fetching the package index", False),
    ("Retrieving Packages", "fetching the package index", False),
    ("Validating Packages", "fetching the package index", False),
    ("Checking Release", "fetching the package index", False),
    ("Resolving dependencies", "resolving dependencies", False),
    ("Found ", "resolving dependencies", False),
    ("Checking component", "resolving dependencies", False),
    ("Retrieving ", "downloading packages", True),
    ("Validating ", "downloading packages", True),
    ("Extracting ", "extracting packages", True),
    ("Installing ", "installing the base system", False),
    ("Unpacking the base system", "unpacking packages", False),
    ("Unpacking required packages", "unpacking packages", False),
    ("Unpacking ", "unpacking packages", True),
    ("Configuring the base system", "configuring packages", False),
    ("Configuring required packages", "configuring packages", False),
    ("Configuring ", "configuring packages", True),
    ("Base system installed", "base system installed", False),
)


def debootstrap_stage(line: str) -> tuple[str, bool] | None:
    """The stage of one line of debootstrap's output, and whether it is one package."""
    message = line.strip()
    if not message.startswith("I: "):
        return None
    message = message[3:]
    for prefix, stage, counts in _STAGES:
        if message.startswith(prefix):
            return stage, counts
    return None


def _debootstrap(cmd: list[str], what: str, progress: Progress, started: float,
                 timeout: float = 900) -> None:
    """Run debootstrap, turning its output into a few progress lines."""
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )
    except FileNotFoundError:
        raise SandboxError(f"{what}: {cmd[0]} is not installed") from None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    reader = threading.Thread(target=pump, name="debootstrap-output", daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=5)
    stage, count, last_said = "starting", 0, time.monotonic()

    def say(text: str) -> None:
        nonlocal last_said
        last_said = time.monotonic()
        progress(f"  [{last_said - started:4.0f} s] debootstrap: {text}")

    try:
        while True:
            now = time.monotonic()
            if now - started > timeout:
                raise SandboxError(f"{what}: timed out after {timeout:.0f} s")
            try:
                line = lines.get(timeout=max(0.05, last_said + _PROGRESS_EVERY - now))
            except queue.Empty:
                say(f"still {stage}" + (f" ({count} so far)" if count else ""))
                continue
            if line is None:
                break
            tail.append(line.rstrip())
            found = debootstrap_stage(line)
            if found is None:
                continue
            new_stage, counts = found
            if new_stage != stage:
                stage, count = new_stage, 0
                say(stage)
            if counts:
                count += 1
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    if code != 0:
        raise SandboxError(f"{what} failed (exit {code}): " + " | ".join(tail))


# --- the user Asterisk runs as ---------------------------------------------------


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int


def _read_ids(path: Path, name: str) -> tuple[int, int] | None:
    """(field 3, field 4) of ``name``'s line in a passwd or group file."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name and len(fields) >= 3:
                return int(fields[2]), int(fields[3]) if len(fields) > 3 and fields[3] else -1
    return None


def _ids_in(path: Path) -> set[int]:
    ids: set[int] = set()
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                ids.add(int(fields[2]))
    return ids


def _host_has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _host_has_gid(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def _tree_lock(root: Path) -> Iterator[None]:
    """Several ``up`` of one tree at once (parallel test runs) take turns here."""
    with open(root / ".hotline-sandbox.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_account(root: Path) -> Account:
    """The tree's ``asterisk`` user, with a uid and gid no host account has.

    Renumbers it in the tree (passwd, group, the files it owns) when the host
    uses its ids; once per tree, cheap afterwards.
    """
    with _tree_lock(root):
        user = _read_ids(root / "etc" / "passwd", RUN_USER)
        group = _read_ids(root / "etc" / "group", RUN_USER)
        if user is None or group is None:
            raise SandboxError(
                f"no '{RUN_USER}' user or group in the sandbox tree {root} (the asterisk "
                f"package creates them); remove {root} to have it rebuilt"
            )
        uid, gid = user[0], group[0]
        if not _host_has_uid(uid) and not _host_has_gid(gid):
            return Account(uid, gid)
        taken = (_ids_in(root / "etc" / "passwd") | _ids_in(root / "etc" / "group")) - {uid, gid}
        new = next(i for i in range(_FREE_ID_BASE, _FREE_ID_BASE + 3000)
                   if i not in taken and not _host_has_uid(i) and not _host_has_gid(i))
        _renumber(root, uid, gid, new)
        return Account(new, new)


def _renumber(root: Path, old_uid: int, old_gid: int, new: int) -> None:
    def rewrite(path: Path, edit: Callable[[list[str]], None]) -> None:
        out = []
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if fields[0] == RUN_USER:
                edit(fields)
            out.append(":".join(fields))
        tmp = path.with_name(path.name + ".hotline-tmp")
        tmp.write_text("\n".join(out) + "\n")
        tmp.chmod(0o644)
        tmp.replace(path)

    def user(fields: list[str]) -> None:
        fields[2], fields[3] = str(new), str(new)

    def group(fields: list[str]) -> None:
        fields[2] = str(new)

    rewrite(root / "etc" / "passwd", user)
    rewrite(root / "etc" / "group", group)
    device = root.stat().st_dev
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == device]
        for name in (*dirs, *files):
            path = os.path.join(top, name)
            info = os.lstat(path)
            if info.st_uid == old_uid or info.st_gid == old_gid:
                os.lchown(path, new if info.st_uid == old_uid else -1,
                          new if info.st_gid == old_gid else -1)
                if not stat.S_ISLNK(info.st_mode):  # chown clears setgid bits: put them back
                    os.chmod(path, stat.S_IMODE(info.st_mode))


def _prepare_instance_dirs(spec: SandboxSpec, account: Account) -> None:
    """Asterisk's own directories: its user's, 0750; what is in them loses any
    access for others (a queue_log left 0644 by an older sandbox included)."""
    for path in spec.asterisk_dirs():
        path.mkdir(parents=True, exist_ok=True)
        for top, dirs, files in os.walk(path):
            for name in (".", *dirs, *files):
                item = os.path.join(top, name)
                info = os.lstat(item)
                if stat.S_ISLNK(info.st_mode):
                    continue
                os.chown(item, account.uid, account.gid)
                if stat.S_ISDIR(info.st_mode):
                    os.chmod(item, 0o750)
                else:
                    os.chmod(item, 0o640 | (info.st_mode & 0o100))


def render_config(spec: SandboxSpec, group: int | None = None) -> str:
    """Write the instance's configuration; returns a digest to tell if it changed.

    Files are root's, readable by ``group`` (Asterisk's, when given) and nobody
    else: they hold the AMI and SIP secrets.
    """
    for d in spec.dirs():
        d.mkdir(parents=True, exist_ok=True)
    _own(spec.etc_dir, 0o750, group)
    _own(spec.etc_dir / "agi-bin", 0o750, group)
    spec.state_dir.chmod(0o700)
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
        "OPERATOR_ENDPOINTS": operator_endpoints(operator_passwords(spec)),
    }
    sandbox_only = {"manager.conf": simulator_account(spec)}
    digest = hashlib.sha256()
    for template in sorted(ASTERISK_ETC.glob("*.conf")):
        text = re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], template.read_text())
        if template.name == "extensions.conf":  # simulated calls: the sandbox's alone
            text += '\n#include "extensions_simulation.conf"\n'
        text += sandbox_only.get(template.name, "")
        target = spec.etc_dir / template.name
        _write_private(target, text.encode(), group)
        digest.update(text.encode())
    for name in (IVR_FILE, CATALOGUE_FILE):  # the fallback script reads them
        _write_private(spec.etc_dir / name, (spec.config_dir / name).read_bytes(), group)
    script = spec.etc_dir / "agi-bin" / "hotline-fallback.py"
    _write_private(script, FALLBACK_SCRIPT.read_bytes(), group, mode=0o750)
    digest.update(FALLBACK_SCRIPT.read_bytes())
    return digest.hexdigest()


# A login becomes a pjsip.conf section name and a dial string: nothing else fits.
_LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_RESERVED_SECTIONS = frozenset({"transport-udp", "operator-template", "citizens-trunk",
                                "citizens-trunk-auth", "loopback-only", "global", "system"})


def operator_passwords(spec: SandboxSpec) -> dict[str, str]:
    """Each operator's SIP password: made once per login, kept 0600 in the
    instance's root-only state directory; logins no longer listed are dropped."""
    for login in spec.operators:
        if not _LOGIN.fullmatch(login) or login in _RESERVED_SECTIONS:
            raise SandboxError(
                f"operator login {login!r} cannot be a PJSIP endpoint: use 1-32 of "
                "a-z 0-9 . _ - (starting with a letter or digit)"
            )
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(spec.operator_secrets.read_text())
        if isinstance(loaded, dict):
            known = {str(k): str(v) for k, v in loaded.items()}
    passwords = {login: known.get(login) or secrets.token_urlsafe(18) for login in spec.operators}
    if passwords != known:
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        _write_private(spec.operator_secrets, json.dumps(passwords).encode(), None, mode=0o600)
    elif spec.operator_secrets.exists():
        spec.operator_secrets.chmod(0o600)
    return passwords


def operator_sip_password(spec: SandboxSpec, login: str) -> str:
    """The generated SIP password of one operator's endpoint (after render_config)."""
    passwords = operator_passwords(spec)
    if login not in passwords:
        raise SandboxError(f"operator {login!r} has no PJSIP endpoint in sandbox {spec.instance}")
    return passwords[login]


def operator_endpoints(passwords: dict[str, str]) -> str:
    """pjsip.conf's sections for the operators' phones: endpoint, auth and aor
    under the login (so the queue member and the state interface are PJSIP/<login>)."""
    out = []
    for login, password in sorted(passwords.items()):
        out.append(
            f"[{login}](operator-template)\n"
            f"auth = {login}\n"
            f"aors = {login}\n"
            f"callerid = {login} <{login}>\n\n"
            f"[{login}]\n"
            "type = auth\n"
            "auth_type = userpass\n"
            f"username = {login}\n"
            f"password = {password}\n\n"
            f"[{login}]\n"
            "type = aor\n"
            "max_contacts = 1\n"
            "remove_existing = yes\n"
        )
    return "\n".join(out)


def simulator_account(spec: SandboxSpec) -> str:
    """manager.conf's section for the simulator, in the sandbox only.

    Its own account, so that the service's keeps its least privilege: write
    originate (Originate), call (Setvar), agent (QueueAdd/QueueRemove); read
    system only for FullyBooted at login (the sandbox's readiness check). Still
    no system WRITE: Asterisk refuses it an Originate of System/Exec.
    """
    if spec.ami_user == SIMULATOR_USER:
        raise SandboxError(f"ami.username: {SIMULATOR_USER!r} is the sandbox simulator's")
    return (
        "\n; The call simulator (demo and tests); written by the sandbox only.\n"
        f"[{SIMULATOR_USER}]\n"
        f"secret = {spec.simulator_secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\n"
        "read = system\n"
        "write = originate,call,agent\n"
        "writetimeout = 2000\n"
    )


def _own(path: Path, mode: int, group: int | None) -> None:
    if group is not None:
        os.chown(path, 0, group)
    path.chmod(mode)


def _write_private(path: Path, data: bytes, group: int | None, mode: int = 0o640) -> None:
    """Write ``data`` never readable by others, not even for a moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    _own(tmp, mode, group)
    tmp.replace(path)


def _render_prompts(spec: SandboxSpec) -> None:
    from hotline.devtools.prompts import PromptError, load_prompts, render_prompts

    try:
        render_prompts(
            load_prompts(spec.config_dir), spec.root / "usr" / "share" / "asterisk" / "sounds",
            root=spec.root,
        )
    except PromptError as exc:
        raise SandboxError(str(exc)) from None


def _proc_mounted(root: Path) -> bool:
    target = str((root / "proc").resolve())
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


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


def up(spec: SandboxSpec, ready_timeout: float = 60.0, progress: Progress = print_progress) -> int:
    """Start (or keep) the instance; restarts it when its configuration changed."""
    _require_root()
    ensure_tree(spec.root, spec.mirror, progress)
    pid = running_pid(spec)
    if pid is None:
        _refuse_busy_port(spec)
    account = prepare_account(spec.root)
    digest = render_config(spec, account.gid)
    _prepare_instance_dirs(spec, account)
    _render_prompts(spec)
    digest_file = spec.state_dir / "config.sha256"
    if pid is not None:
        same = digest_file.exists() and digest_file.read_text() == digest
        if same and check_ready(spec, timeout=5.0):
            return pid
        down(spec)
        _refuse_busy_port(spec)
    # umask 027: the logs and queue_log (callers' numbers) are 0640, group asterisk.
    fd = os.open(spec.log_dir / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        proc = subprocess.Popen(
            [
                "chroot", str(spec.root), *_as_user(account), "/usr/sbin/asterisk",
                "-C", f"/etc/hotline-asterisk-{spec.instance}/asterisk.conf", "-f", "-n",
            ],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True, umask=0o027,
        )
    finally:
        os.close(fd)
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


def _as_user(account: Account) -> list[str]:
    """Asterisk starts as its user already, not root that drops to it: left to
    itself (runuser), 22.10 keeps CAP_NET_ADMIN, on the host's network, for good.
    No capabilities, none to regain, no new privileges: the tree's setuid
    programs (su, mount…) cannot give root back to Asterisk or its AGI scripts.
    setpriv is util-linux's, in every Debian tree."""
    return [
        "/usr/bin/setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
        "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]


def _refuse_busy_port(spec: SandboxSpec) -> None:
    if _port_in_use(spec.ami_port):
        raise SandboxError(
            f"AMI port 127.0.0.1:{spec.ami_port} is already in use by another program; "
            "stop it or choose another ami.port"
        )


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
        _unmount_proc(spec.root)  # mounted by sandboxes of older versions
    return bool(pids)


def any_instance_running(root: Path) -> bool:
    return bool(sandbox_pids(root))


def check_ready(spec: SandboxSpec, timeout: float) -> bool:
    """True once Asterisk reports FullyBooted and accepts the service's login."""
    return asyncio.run(_ami_ready(spec, timeout))


async def _ami_ready(spec: SandboxSpec, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(max(0.5, deadline - time.monotonic())):
                await _ami_login_once(spec)
                return True
        except AmiLoginError as exc:
            raise SandboxError(f"the sandbox Asterisk refused our AMI login: {exc}") from None
        except (AmiError, OSError, TimeoutError):
            pass
        await asyncio.sleep(0.3)
    return False


async def _ami_login_once(spec: SandboxSpec) -> None:
    """FullyBooted comes at login to an account that reads ``system``: the simulator's."""
    booted = asyncio.Event()
    simulator = simulator_ami(spec, action_timeout=2.0, ping_interval=0, events="system")
    simulator.on_event("FullyBooted", lambda _msg: booted.set())
    try:
        await simulator.connect()
        await booted.wait()
    finally:
        await simulator.close()
    service = AmiClient("127.0.0.1", spec.ami_port, spec.ami_user, spec.ami_secret,
                        action_timeout=2.0, ping_interval=0, events="off")
    try:
        await service.connect()
    finally:
        await service.close()


def simulator_ami(
    spec: SandboxSpec, *, action_timeout: float = 5.0, ping_interval: float = 10.0,
    events: str = "off",
) -> AmiClient:
    """An AMI client on the sandbox's simulator account (Originate, Setvar,
    QueueAdd/QueueRemove): what the demo and the tests drive calls with."""
    return AmiClient("127.0.0.1", spec.ami_port, SIMULATOR_USER, spec.simulator_secret,
                     action_timeout=action_timeout, ping_interval=ping_interval, events=events)


def status(spec: SandboxSpec) -> dict[str, object]:
    pid = running_pid(spec)
    return {
        "instance": spec.instance,
        "root": str(spec.root),
        "tree_ready": (spec.root / READY_MARKER).exists(),
        "running": pid is not None,
        "pid": pid,
        "user": RUN_USER,
        "ami": f"127.0.0.1:{spec.ami_port}",
        "queue_log": str(spec.queue_log),
    }
