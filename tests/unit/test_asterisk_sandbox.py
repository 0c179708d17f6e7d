"""The sandbox's pure parts: configuration rendering, mirror discovery, refusals."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hotline.checks import check_asterisk
from hotline.devtools import asterisk_sandbox as sandbox
from ivr.menu import load_ivr_config
from tests.support.paths import CONFIG_DIR


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
    assert "agi://127.0.0.1:24999/ivr" in rendered["extensions.conf"]
    assert "systemname = hotline-unit" in rendered["asterisk.conf"]
    assert "AGI(hotline-fallback.py,/etc/hotline-asterisk-unit)" in rendered["extensions.conf"]
    # secrets on disk readable by root only
    assert (s.etc_dir / "manager.conf").stat().st_mode & 0o077 == 0
    fallback = s.etc_dir / "agi-bin" / "hotline-fallback.py"
    assert fallback.stat().st_mode & 0o111
    assert (s.etc_dir / "ivr.toml").exists() and (s.etc_dir / "queues.toml").exists()
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
