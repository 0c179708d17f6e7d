"""The sandbox's pure parts: configuration rendering, mirror discovery, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline.devtools import asterisk_sandbox as sandbox


def spec(root: Path) -> sandbox.SandboxSpec:
    return sandbox.SandboxSpec(
        instance="unit", root=root, server_id="hotline-unit", ami_port=25999,
        ami_user="hotline", ami_secret="s3cr3t-value", agi_host="127.0.0.1", agi_port=24999,
        sip_port=25998, sip_password="sip-pass", queue_timeout=77,
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
    assert "/etc/hotline-asterisk-unit/ivr.toml" in rendered["extensions.conf"]
    # secrets on disk readable by root only
    assert (s.etc_dir / "manager.conf").stat().st_mode & 0o077 == 0
    fallback = s.etc_dir / "agi-bin" / "hotline-fallback.py"
    assert fallback.stat().st_mode & 0o111
    assert (s.etc_dir / "ivr.toml").exists()
    # same inputs, same digest; a changed secret changes it (so `up` restarts)
    assert sandbox.render_config(s) == digest
    other = sandbox.SandboxSpec(**{**s.__dict__, "ami_secret": "another"})
    assert sandbox.render_config(other) != digest


def test_every_queue_has_a_service_level() -> None:
    text = (sandbox.ASTERISK_ETC / "queues.conf").read_text()
    queues = re.findall(r"^\[([a-z]+)\]\(hotline-queue\)", text, re.MULTILINE)
    assert set(queues) >= {"housing", "transport", "social", "main"}
    assert re.search(r"^servicelevel = 20$", text, re.MULTILINE)


def test_dialplan_never_leaves_the_caller_in_silence() -> None:
    text = (sandbox.ASTERISK_ETC / "extensions.conf").read_text()
    inbound = text.split("[hotline-inbound]")[1].split("\n[")[0]
    steps = [line.strip() for line in inbound.splitlines() if "same =>" in line]
    fastagi = next(i for i, s in enumerate(steps) if "AGI(${HOTLINE_AGI_URL})" in s)
    fallback = next(i for i, s in enumerate(steps) if "AGI(hotline-fallback.py" in s)
    queue = next(i for i, s in enumerate(steps) if "Queue(${HOTLINE_QUEUE}" in s)
    assert fastagi < fallback < queue
    assert "Set(HOTLINE_QUEUE=main)" in inbound.split("AGI(")[0]  # preset before any AGI


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
