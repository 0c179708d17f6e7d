"""Secret files the service generates for itself (issue 6, item 11): born 0600 in
a 0700 folder, a looser existing one tightened and logged, a foreign one refused,
one set of values when several processes create the file at once."""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hotline.cli import instance_secrets
from hotline.settings import SecretFileError, Settings, read_or_create_secrets
from tests.support.root import needs_root


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings()
    s.service.state_dir = str(tmp_path / "state")
    return s


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: the modes we get are the modes we ask for."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_created_private_even_with_an_open_umask(settings: Settings) -> None:
    values = instance_secrets(settings, "demo")
    path = settings.state_path / "secrets" / "asterisk-demo.toml"
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert set(values) == {"ami_secret", "sip_password", "supervisor_password"}
    assert instance_secrets(settings, "demo") == values  # generated once
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_loose_existing_file_is_tightened_and_logged(settings: Settings) -> None:
    folder = settings.state_path / "secrets"
    folder.mkdir(parents=True, mode=0o700)
    path = folder / "asterisk-demo.toml"
    path.write_text('ami_secret = "old"\nsip_password = "p"\nsupervisor_password = "s"\n')
    path.chmod(0o644)
    with capture_logs() as logs:
        values = instance_secrets(settings, "demo")
    assert values["ami_secret"] == "old"
    assert mode_of(path) == 0o600
    assert {"event": "secrets_mode_repaired", "path": str(path), "was": "0644",
            "now": "0600", "log_level": "warning"} in [
        {k: v for k, v in e.items() if k != "component"} for e in logs
    ]


def test_loose_existing_folder_is_tightened_and_logged(settings: Settings) -> None:
    folder = settings.state_path / "secrets"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    with capture_logs() as logs:
        instance_secrets(settings, "demo")
    assert mode_of(folder) == 0o700
    assert any(e["event"] == "secrets_mode_repaired" and e["path"] == str(folder) for e in logs)


def test_file_owned_by_another_user_is_refused(settings: Settings) -> None:
    needs_root("giving a file to another user")
    folder = settings.state_path / "secrets"
    folder.mkdir(parents=True, mode=0o700)
    path = folder / "asterisk-demo.toml"
    path.write_text('ami_secret = "planted"\n')
    path.chmod(0o600)
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(SecretFileError, match="owned by uid 65534"):
        instance_secrets(settings, "demo")


def test_folder_owned_by_another_user_is_refused(settings: Settings) -> None:
    needs_root("giving a folder to another user")
    folder = settings.state_path / "secrets"
    folder.mkdir(parents=True, mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(SecretFileError, match="owned by uid 65534"):
        instance_secrets(settings, "demo")


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "x.toml"
    first = read_or_create_secrets(path, lambda: {"password": "first"})
    second = read_or_create_secrets(path, lambda: {"password": "second"})
    assert first == second == {"password": "first"}


def _create(state_dir: str, start: Event, out: multiprocessing.Queue[str]) -> None:
    settings = Settings()
    settings.service.state_dir = state_dir
    start.wait()
    out.put(instance_secrets(settings, "demo")["ami_secret"])


def test_processes_creating_at_once_agree_on_one_value(settings: Settings) -> None:
    """``hotline asterisk up`` and ``hotline run`` started together must not end up
    with two different AMI secrets (the first file written wins, whole)."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    out: multiprocessing.Queue[str] = context.Queue()
    workers = [
        context.Process(target=_create, args=(settings.service.state_dir, start, out))
        for _ in range(8)
    ]
    for worker in workers:
        worker.start()
    start.set()
    seen = {out.get(timeout=30) for _ in workers}
    for worker in workers:
        worker.join(30)
    assert len(seen) == 1, seen
    assert instance_secrets(settings, "demo")["ami_secret"] in seen
