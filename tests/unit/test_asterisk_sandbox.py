"""The sandbox's pure parts: configuration rendering, mirror discovery, refusals,
the user Asterisk runs as, and the first build's progress (a fake debootstrap)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from hotline.checks import check_asterisk
from hotline.devtools import asterisk_sandbox as sandbox
from ivr.menu import load_ivr_config
from tests.support.paths import CONFIG_DIR, REPO_ROOT
from tests.support.root import needs_root


def spec(root: Path) -> sandbox.SandboxSpec:
    return sandbox.SandboxSpec(
        instance="unit", root=root, server_id="hotline-unit", ami_port=25999,
        ami_user="hotline", ami_secret="s3cr3t-value", agi_host="127.0.0.1", agi_port=24999,
        sip_port=25998, sip_password="sip-pass", config_dir=CONFIG_DIR, queue_timeout=77,
    )


def test_render_fills_every_placeholder(tmp_path: Path) -> None:
    s = spec(tmp_path)
    digest = sandbox.render_config(s)
    rendered = {p.name: p.read_text() for p in s.etc_dir.glob("*.conf")}
    assert {"asterisk.conf", "extensions.conf", "manager.conf", "queues.conf"} <= rendered.keys()
    for name, text in rendered.items():
        assert not re.search(r"@@[A-Z_]+@@", text), name
    assert "port = 25999" in rendered["manager.conf"]
    assert "bindaddr = 127.0.0.1" in rendered["manager.conf"]
    assert "secret = s3cr3t-value" in rendered["manager.conf"]
    assert re.search(r"^runuser = asterisk$", rendered["asterisk.conf"], re.MULTILINE)
    assert re.search(r"^rungroup = asterisk$", rendered["asterisk.conf"], re.MULTILINE)
    assert "agi://127.0.0.1:24999/ivr" in rendered["extensions.conf"]
    assert "systemname = hotline-unit" in rendered["asterisk.conf"]
    assert "AGI(hotline-fallback.py,/etc/hotline-asterisk-unit)" in rendered["extensions.conf"]
    # secrets on disk: root's, read by Asterisk's group, nobody else
    for path in (*s.etc_dir.glob("*.conf"), s.etc_dir / "ivr.toml", s.etc_dir / "queues.toml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    assert stat.S_IMODE(s.etc_dir.stat().st_mode) == 0o750
    fallback = s.etc_dir / "agi-bin" / "hotline-fallback.py"
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o750
    # same inputs, same digest; a changed secret changes it (so `up` restarts)
    assert sandbox.render_config(s) == digest
    other = sandbox.SandboxSpec(**{**s.__dict__, "ami_secret": "another"})
    assert sandbox.render_config(other) != digest


def rendered(tmp_path: Path) -> dict[str, str]:
    s = spec(tmp_path)
    sandbox.render_config(s)
    return {p.name: p.read_text() for p in s.etc_dir.glob("*.conf")}


def test_queues_conf_is_generated_from_the_catalogue(tmp_path: Path) -> None:
    menu = load_ivr_config(CONFIG_DIR)
    text = rendered(tmp_path)["queues.conf"]
    queues = re.findall(r"^\[([a-z_]+)\]\(hotline-queue\)$", text, re.MULTILINE)
    assert queues == list(menu.queues.names)
    assert text.count("servicelevel = 20\n") == len(queues)


def test_a_queue_added_to_the_catalogue_reaches_asterisk(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    with (config / "queues.toml").open("a") as fh:
        fh.write('[queues.night]\nservice_level = 60\noverflow = "housing"\n')
    s = sandbox.SandboxSpec(**{**spec(tmp_path).__dict__, "config_dir": config})
    sandbox.render_config(s)
    queues_conf = (s.etc_dir / "queues.conf").read_text()
    assert "[night](hotline-queue)\n" in queues_conf and "servicelevel = 60\n" in queues_conf
    assert "HOTLINE_OVERFLOW_night = housing\n" in (s.etc_dir / "extensions.conf").read_text()


def test_dialplan_never_leaves_the_caller_in_silence(tmp_path: Path) -> None:
    text = rendered(tmp_path)["extensions.conf"]
    inbound = text.split("[hotline-inbound]")[1].split("\n[")[0]
    steps = [line.strip() for line in inbound.splitlines() if "same =>" in line]
    fastagi = next(i for i, s in enumerate(steps) if "AGI(${HOTLINE_AGI_URL})" in s)
    fallback = next(i for i, s in enumerate(steps) if "AGI(hotline-fallback.py" in s)
    queue = next(i for i, s in enumerate(steps) if "Queue(${QUEUE_NOW}" in s)
    assert fastagi < fallback < queue
    # preset before any AGI, to the menu's default queue (ivr.toml); overflow from queues.toml
    assert "Set(HOTLINE_QUEUE=${HOTLINE_DEFAULT_QUEUE})" in inbound.split("AGI(")[0]
    assert "\nHOTLINE_DEFAULT_QUEUE = main\n" in text
    assert "\nHOTLINE_CATCH_ALL = main\n" in text
    for queue_name in ("housing", "transport", "social"):
        assert f"\nHOTLINE_OVERFLOW_{queue_name} = main\n" in text
    assert "HOTLINE_OVERFLOW_main" not in text  # the catch-all is the last stop


def test_simulation_dialplan_is_the_sandboxs_alone(tmp_path: Path) -> None:
    production = (sandbox.ASTERISK_ETC / "extensions.conf").read_text()
    assert "hotline-sim-" not in production and "extensions_simulation" not in production
    conf = rendered(tmp_path)
    assert conf["extensions.conf"].rstrip().endswith('#include "extensions_simulation.conf"')
    assert "[hotline-sim-citizen]" in conf["extensions_simulation.conf"]
    assert "[hotline-sim-operator]" in conf["extensions_simulation.conf"]


def test_generated_configuration_passes_the_checks() -> None:
    menu = load_ivr_config(CONFIG_DIR)
    assert check_asterisk(sandbox.ASTERISK_ETC, menu.queues, menu.default_queue) == []


def test_mirror_from_apt_sources(tmp_path: Path) -> None:
    assert sandbox.debian_mirror("http://mirror.example/debian") == "http://mirror.example/debian"
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.example/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert sandbox.debian_mirror(apt_dir=tmp_path) == "http://mirror.example/debian"


def test_no_mirror_is_explained(tmp_path: Path) -> None:
    with pytest.raises(sandbox.SandboxError, match=r"asterisk\.mirror"):
        sandbox.debian_mirror(apt_dir=tmp_path)


def test_sandbox_refuses_without_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(sandbox.SandboxError, match="needs root"):
        sandbox.up(spec(tmp_path))


def test_missing_debootstrap_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(sandbox.SandboxError, match="debootstrap is not installed"):
        sandbox.ensure_tree(tmp_path / "tree")


def test_unreachable_mirror_is_explained(tmp_path: Path) -> None:
    # nothing listens on port 1: debootstrap fails at once, and we say why
    with pytest.raises(sandbox.SandboxError, match="is the Debian mirror reachable"):
        sandbox.ensure_tree(tmp_path / "tree", "http://127.0.0.1:1/debian")
    assert not (tmp_path / "tree").exists()


def test_port_taken_by_another_program_is_explained(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        s = sandbox.SandboxSpec(**{**spec(tmp_path).__dict__, "ami_port": busy.getsockname()[1]})
        (tmp_path / sandbox.READY_MARKER).write_text("")  # a built tree: no debootstrap
        with pytest.raises(sandbox.SandboxError, match="already in use"):
            sandbox.up(s)


def manager_sections(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


def classes(value: str) -> set[str]:
    return {c.strip() for c in value.split(",") if c.strip()}


def test_service_account_has_least_privilege(tmp_path: Path) -> None:
    s = spec(tmp_path)
    sandbox.render_config(s)
    sections = manager_sections((s.etc_dir / "manager.conf").read_text())
    bridge = sections["hotline"]
    # CoreStatus/CoreShowChannels (reporting); the desk's queue actions (agent), hang up
    # and transfers (call), call back (originate); events of calls, queues, VarSet.
    # Exactly what the actions sent need: tests/unit/test_manager_classes.py
    assert classes(bridge["write"]) == {"reporting", "agent", "call", "originate"}
    assert classes(bridge["read"]) == {"call", "agent", "dialplan"}
    assert (bridge["deny"], bridge["permit"]) == ("0.0.0.0/0.0.0.0", "127.0.0.1/255.255.255.255")
    assert sections["general"]["bindaddr"] == "127.0.0.1"


def test_simulator_has_its_own_account_in_the_sandbox_only(tmp_path: Path) -> None:
    s = spec(tmp_path)
    sandbox.render_config(s)
    sections = manager_sections((s.etc_dir / "manager.conf").read_text())
    sim = sections[sandbox.SIMULATOR_USER]
    assert classes(sim["write"]) == {"originate", "call", "agent"}  # no system
    assert classes(sim["read"]) == {"system"}  # FullyBooted at login, nothing else
    assert sim["secret"] == s.simulator_secret
    assert s.simulator_secret not in (s.ami_secret, "")
    assert sim["permit"] == "127.0.0.1/255.255.255.255"
    # derived from the instance's secret: stable, and rotated with it
    other = sandbox.SandboxSpec(**{**s.__dict__, "ami_secret": "another"})
    assert other.simulator_secret != s.simulator_secret
    assert sandbox.SandboxSpec(**s.__dict__).simulator_secret == s.simulator_secret
    # the template (what a deployment takes) has no simulator
    assert sandbox.SIMULATOR_USER not in (sandbox.ASTERISK_ETC / "manager.conf").read_text()


def test_simulator_name_cannot_be_the_service_account(tmp_path: Path) -> None:
    s = sandbox.SandboxSpec(**{**spec(tmp_path).__dict__, "ami_user": sandbox.SIMULATOR_USER})
    with pytest.raises(sandbox.SandboxError, match=r"ami\.username"):
        sandbox.render_config(s)


def test_rendered_files_belong_to_asterisks_group(tmp_path: Path) -> None:
    needs_root("chown to another group needs root")
    s = spec(tmp_path)
    sandbox.render_config(s, group=61999)
    script = s.etc_dir / "agi-bin" / "hotline-fallback.py"
    for path in (s.etc_dir, s.etc_dir / "manager.conf", script):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (0, 61999), path


def test_paths_resolve_inside_the_chroot(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var" / "log").mkdir(parents=True)
    (tmp_path / "var" / "run").symlink_to("/run")  # as in a Debian tree
    (tmp_path / "var" / "lock").symlink_to("../run/lock")
    assert sandbox.in_chroot(tmp_path, "/var/run/asterisk-x") == tmp_path / "run" / "asterisk-x"
    assert sandbox.in_chroot(tmp_path, "/var/lock/x") == tmp_path / "run" / "lock" / "x"
    assert sandbox.in_chroot(tmp_path, "/var/log/asterisk-x") == tmp_path / "var/log/asterisk-x"
    assert sandbox.in_chroot(tmp_path, "/../../etc") == tmp_path / "etc"  # never above root
    dirs = spec(tmp_path).asterisk_dirs()
    assert tmp_path / "run" / "asterisk-unit" in dirs
    assert all(str(d).startswith(str(tmp_path)) for d in dirs)


def fake_tree(root: Path, uid: int, gid: int) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        f"asterisk:x:{uid}:{gid}:Asterisk PBX daemon:/var/lib/asterisk:/usr/sbin/nologin\n"
    )
    (root / "etc" / "group").write_text(f"root:x:0:\naudio:x:29:asterisk\nasterisk:x:{gid}:\n")


def test_asterisk_user_gets_ids_no_host_account_has(tmp_path: Path) -> None:
    needs_root("renumbering chowns files")
    import pwd

    host = pwd.getpwuid(os.getuid())  # an id the host certainly uses
    fake_tree(tmp_path, host.pw_uid, host.pw_gid)
    owned = tmp_path / "var" / "lib" / "asterisk" / "astdb.sqlite3"
    owned.parent.mkdir(parents=True)
    owned.write_text("")
    os.chown(owned, host.pw_uid, host.pw_gid)
    os.chmod(owned.parent, 0o2750)  # setgid survives the chown
    os.chown(owned.parent, host.pw_uid, host.pw_gid)
    os.chmod(owned.parent, 0o2750)

    account = sandbox.prepare_account(tmp_path)
    assert account.uid >= sandbox._FREE_ID_BASE and account.gid == account.uid
    with pytest.raises(KeyError):
        pwd.getpwuid(account.uid)
    assert f"asterisk:x:{account.uid}:{account.gid}:" in (tmp_path / "etc/passwd").read_text()
    assert f"asterisk:x:{account.gid}:" in (tmp_path / "etc/group").read_text()
    assert "root:x:0:0:" in (tmp_path / "etc/passwd").read_text()
    assert (owned.stat().st_uid, owned.stat().st_gid) == (account.uid, account.gid)
    assert stat.S_IMODE(owned.parent.stat().st_mode) == 0o2750
    assert sandbox.prepare_account(tmp_path) == account  # once: then it is left alone


def test_a_tree_without_the_asterisk_user_is_explained(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(sandbox.SandboxError, match="no 'asterisk' user"):
        sandbox.prepare_account(tmp_path)


def test_debootstrap_lines_become_stages() -> None:
    stage = sandbox.debootstrap_stage
    assert stage("I: Retrieving InRelease ") == ("fetching the package index", False)
    assert stage("I: Retrieving libc6 2.41-12") == ("downloading packages", True)
    assert stage("I: Validating libc6 2.41-12") == ("downloading packages", True)
    assert stage("I: Extracting bash...") == ("extracting packages", True)
    assert stage("I: Configuring asterisk...") == ("configuring packages", True)
    assert stage("I: Configuring required packages...") == ("configuring packages", False)
    assert stage("I: Unpacking libc6...") == ("unpacking packages", True)
    assert stage("I: Unpacking the base system...") == ("unpacking packages", False)
    assert stage("I: Base system installed successfully.") == ("base system installed", False)
    assert stage("dpkg: warning: something") is None


FAKE_DEBOOTSTRAP = """#!/bin/sh
# a stand-in for debootstrap: a few stages, then silence until the test says go
target="$4"
echo "I: Retrieving InRelease "
echo "I: Retrieving libc6 2.41"
echo "I: Retrieving bash 5.2"
while [ ! -e "$GO" ]; do sleep 0.02; done
echo "I: Extracting libc6..."
echo "noise that is not a stage"
echo "I: Configuring asterisk..."
mkdir -p "$target/usr/sbin" && touch "$target/usr/sbin/asterisk"
echo "I: Base system installed successfully."
"""


def test_first_build_shows_progress_not_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "debootstrap"
    fake.parent.mkdir()
    fake.write_text(FAKE_DEBOOTSTRAP)
    fake.chmod(0o755)
    go = tmp_path / "go"
    monkeypatch.setenv("GO", str(go))
    monkeypatch.setattr(sandbox, "DEBOOTSTRAP", str(fake))
    monkeypatch.setattr(sandbox, "_PROGRESS_EVERY", 0.05)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    installed: list[Path] = []
    monkeypatch.setattr(sandbox, "_install_pyst2", installed.append)
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "still downloading packages" in line:
            go.touch()  # the silent stretch was reported: let debootstrap go on

    root = tmp_path / "tree"
    sandbox.ensure_tree(root, "http://mirror.example/debian", progress)

    stages = [re.sub(r"^\s*\[\s*\d+ s\] ", "", line) for line in lines]
    assert stages[0].startswith(f"building the Asterisk sandbox in {root}")
    assert stages[1:4] == [
        "debootstrap: fetching the package index",
        "debootstrap: downloading packages",
        "debootstrap: still downloading packages (2 so far)",
    ]
    assert stages[-5:] == [
        "debootstrap: extracting packages",
        "debootstrap: configuring packages",
        "debootstrap: base system installed",
        "installing pyst2 into the sandbox",
        "the Asterisk sandbox is built",
    ]
    assert all(re.match(r"^\s*\[\s*\d+ s\] ", line) for line in lines[1:])  # elapsed seconds
    assert (root / sandbox.READY_MARKER).exists() and installed == [root.with_name("tree.tmp")]
    sandbox.ensure_tree(root, "http://mirror.example/debian", progress)  # built: nothing to say
    assert len(lines) == len(stages)


def test_failed_build_says_what_debootstrap_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "debootstrap"
    fake.write_text("#!/bin/sh\necho 'I: Retrieving InRelease '\n"
                    "echo 'E: Failed getting release file'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "DEBOOTSTRAP", str(fake))
    monkeypatch.setattr("os.geteuid", lambda: 0)
    installed: list[Path] = []
    monkeypatch.setattr(sandbox, "_install_pyst2", installed.append)
    lines: list[str] = []
    with pytest.raises(sandbox.SandboxError, match=r"exit 1.*Failed getting release file"):
        sandbox.ensure_tree(tmp_path / "tree", "http://mirror.example/debian", lines.append)
    assert any("fetching the package index" in line for line in lines)
    assert installed == [] and not (tmp_path / "tree").exists()


# Which write class each AMI action needs (any one of them), as Asterisk 22
# registers them (main/manager.c, apps/app_queue.c). An action sent from the
# code but missing here fails the test below: add it, and its class to manager.conf.
ACTION_CLASSES: dict[str, set[str]] = {
    "Ping": set(), "Events": set(), "QueueSummary": set(), "QueueStatus": set(),
    "CoreStatus": {"system", "reporting"}, "CoreShowChannels": {"system", "reporting"},
    "CoreSettings": {"system", "reporting"}, "Status": {"system", "call", "reporting"},
    "QueueAdd": {"agent"}, "QueueRemove": {"agent"}, "QueuePause": {"agent"},
    "Originate": {"originate"}, "Setvar": {"call"}, "Getvar": {"call", "reporting"},
    "Redirect": {"call"}, "Hangup": {"system", "call"},
}
NEVER = {"system", "command", "config"}  # programs, CLI commands, configuration


def actions_sent(*files: Path) -> set[str]:
    pattern = re.compile(r"\.action(?:_list)?\(\s*\"([A-Za-z]+)\"")
    return {name for f in files for name in pattern.findall(f.read_text())}


def check_account(account: dict[str, str], actions: set[str]) -> None:
    unknown = actions - ACTION_CLASSES.keys()
    assert not unknown, f"add {unknown} to ACTION_CLASSES and their class to manager.conf"
    write = classes(account["write"])
    for action in actions:
        need = ACTION_CLASSES[action]
        assert not need or need & write, f"{action} needs one of {need}, has {write}"
    needed = set().union(*(ACTION_CLASSES[a] for a in actions))
    assert write <= needed, f"classes nothing uses: {write - needed}"
    assert not write & NEVER and not classes(account["read"]) & {"command", "config"}


def test_each_account_has_the_classes_its_code_sends_and_no_more(tmp_path: Path) -> None:
    s = spec(tmp_path)
    sandbox.render_config(s)
    sections = manager_sections((s.etc_dir / "manager.conf").read_text())
    repo = REPO_ROOT
    bridge = actions_sent(*(repo / "cti_bridge").glob("*.py"))
    assert {"CoreStatus", "CoreShowChannels", "QueueSummary"} <= bridge
    check_account(sections["hotline"], bridge)
    sim = actions_sent(repo / "hotline" / "devtools" / "simulator.py")
    assert {"Originate", "QueueAdd", "Setvar"} <= sim
    check_account(sections[sandbox.SIMULATOR_USER], sim)


def test_each_operator_gets_an_endpoint_with_its_own_password(tmp_path: Path) -> None:
    s = sandbox.SandboxSpec(**{**spec(tmp_path).__dict__, "operators": ("olena", "op.7")})
    sandbox.render_config(s)
    pjsip = (s.etc_dir / "pjsip.conf").read_text()
    olena, op7 = (sandbox.operator_sip_password(s, login) for login in ("olena", "op.7"))
    assert olena != op7 and len(olena) >= 20
    for login, password in (("olena", olena), ("op.7", op7)):
        assert f"[{login}](operator-template)\nauth = {login}\naors = {login}\n" in pjsip
        assert f"username = {login}\npassword = {password}\n" in pjsip
    assert stat.S_IMODE(s.operator_secrets.stat().st_mode) == 0o600
    assert "bind = 127.0.0.1:25998" in pjsip
    assert "permit = 127.0.0.1/255.255.255.255" in pjsip
    assert olena not in "".join(p.read_text() for p in (REPO_ROOT / "asterisk").rglob("*.conf"))
    # the same operators keep their passwords; one removed is forgotten
    sandbox.render_config(s)
    assert sandbox.operator_sip_password(s, "olena") == olena
    fewer = sandbox.SandboxSpec(**{**s.__dict__, "operators": ("olena",)})
    sandbox.render_config(fewer)
    assert "op.7" not in (s.etc_dir / "pjsip.conf").read_text()
    with pytest.raises(sandbox.SandboxError, match="no PJSIP endpoint"):
        sandbox.operator_sip_password(fewer, "op.7")


@pytest.mark.parametrize("login", ["Olena", "a b", "x]\n[evil", "citizens-trunk", ""])
def test_a_login_that_cannot_be_an_endpoint_is_refused(tmp_path: Path, login: str) -> None:
    s = sandbox.SandboxSpec(**{**spec(tmp_path).__dict__, "operators": (login,)})
    with pytest.raises(sandbox.SandboxError, match="cannot be a PJSIP endpoint"):
        sandbox.render_config(s)
