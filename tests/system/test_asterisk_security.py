"""The real Asterisk, attacked with what a local process could try: the service's
AMI account cannot run programs or commands, the simulator's cannot either,
other addresses are refused, Asterisk runs as its own unprivileged user, and
its logs (callers' numbers) are not readable by others.

Needs root (the sandbox). It never skips.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from cti_bridge.ami_client import AmiActionError, AmiClient, AmiLoginError
from cti_bridge.ami_protocol import AmiMessage, AmiParser, challenge_key, encode_action
from hotline.devtools import asterisk_sandbox as sandbox
from tests.support.ports import port
from tests.support.sandbox import make_sandbox

pytestmark = [pytest.mark.asterisk, pytest.mark.asyncio(loop_scope="session")]

AMI_PORT, AGI_PORT, SIP_PORT = port(29038), port(29574), port(29060)


@pytest.fixture(scope="module")
def asterisk() -> Iterator[sandbox.SandboxSpec]:
    spec = make_sandbox("security", "hotline-security", ami_port=AMI_PORT, agi_port=AGI_PORT,
                        sip_port=SIP_PORT)
    sandbox.down(spec)
    # a log an older sandbox left world-readable: `up` must close it
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    stale = spec.log_dir / "old-messages.log"
    stale.write_text("[2026-01-01] 380671112233 called\n")
    stale.chmod(0o644)
    spec.log_dir.chmod(0o755)
    sandbox.up(spec)
    yield spec
    sandbox.down(spec)


@pytest_asyncio.fixture(loop_scope="session")
async def service_ami(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    """Logged in exactly as the service logs in (its account, MD5 challenge)."""
    client = AmiClient("127.0.0.1", AMI_PORT, asterisk.ami_user, asterisk.ami_secret,
                       ping_interval=0)
    await client.connect()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def simulator_ami(asterisk: sandbox.SandboxSpec) -> AsyncIterator[AmiClient]:
    client = sandbox.simulator_ami(asterisk, ping_interval=0)
    await client.connect()
    yield client
    await client.close()


def markers(spec: sandbox.SandboxSpec) -> tuple[str, list[Path]]:
    """A file name a successful attack would create, and where it could appear."""
    name = f"hotline-pwned-{secrets.token_hex(6)}"
    return f"/tmp/{name}", [Path("/tmp") / name, spec.root / "tmp" / name]


async def refused(client: AmiClient, action: str, **headers: str | list[str]) -> str:
    with pytest.raises(AmiActionError) as info:
        await client.action(action, **headers)
    return info.value.reply.get("Message") or ""


async def test_service_account_cannot_run_programs_or_commands(
    asterisk: sandbox.SandboxSpec, service_ami: AmiClient
) -> None:
    target, places = markers(asterisk)
    originate = {"Channel": "Local/1551@hotline-inbound", "Application": "System",
                 "Data": f"touch {target}"}
    # The service may originate (the callback dialer), but never System/Exec: that
    # needs the system class, which it does not have.
    forbidden = "Originate Access Forbidden: app or data blacklisted"
    assert await refused(service_ami, "Originate", **originate) == forbidden
    assert await refused(service_ami, "Originate", **{**originate, "Async": "true"}) == forbidden
    for app in ("Exec", "TrySystem", "ExecIf"):
        assert await refused(service_ami, "Originate", **{**originate, "Application": app,
                                                           "Data": "System(touch /tmp/x)"}) == (
            forbidden)
    assert await refused(service_ami, "Command", Command=f"!touch {target}") == (
        "Permission denied")
    assert await refused(service_ami, "Command", Command="core show version") == (
        "Permission denied")
    # nor read the secrets in the configuration, change it, or load modules
    assert await refused(service_ami, "GetConfig", Filename="manager.conf") == (
        "Permission denied")
    assert await refused(service_ami, "UpdateConfig", SrcFilename="manager.conf",
                         DstFilename="manager.conf", **{"Action-000000": "Append"}) == (
        "Permission denied")
    assert await refused(service_ami, "ModuleLoad", Module="app_system.so",
                         LoadType="load") == "Permission denied"
    await asyncio.sleep(1.0)  # an Async originate would have run by now
    assert not any(p.exists() for p in places)
    # what the service does use still works
    assert (await service_ami.action("CoreStatus")).get("CoreStartupDate")
    summary = await service_ami.action_list("QueueSummary")
    assert {m.get("Queue") for m in summary} >= {"housing", "main"}
    await service_ami.action_list("CoreShowChannels")


async def test_simulator_account_cannot_run_programs_either(
    asterisk: sandbox.SandboxSpec, simulator_ami: AmiClient
) -> None:
    target, places = markers(asterisk)
    for application, data in (("System", f"touch {target}"), ("TrySystem", f"touch {target}"),
                              ("Exec", f"System(touch {target})")):
        message = await refused(simulator_ami, "Originate", Channel="Local/1551@hotline-inbound",
                                Application=application, Data=data)
        assert "Forbidden" in message or "System privilege" in message, message
    assert await refused(simulator_ami, "Command", Command="core show version") == (
        "Permission denied")
    assert await refused(simulator_ami, "GetConfig", Filename="manager.conf") == (
        "Permission denied")
    await asyncio.sleep(1.0)
    assert not any(p.exists() for p in places)


async def login_from(address: str, spec: sandbox.SandboxSpec) -> AmiMessage:
    """An MD5 login with the RIGHT secret, from another loopback address."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", AMI_PORT, local_addr=(address, 0))
    parser = AmiParser()

    async def reply() -> AmiMessage:
        while True:
            for msg in parser.feed(await reader.read(4096)):
                if msg.is_response:
                    return msg

    try:
        writer.write(encode_action("Challenge", {"AuthType": "MD5"}, "1"))
        challenge = (await reply()).get("Challenge") or ""
        writer.write(encode_action("Login", {
            "AuthType": "MD5", "Username": spec.ami_user,
            "Key": challenge_key(challenge, spec.ami_secret)}, "2"))
        return await reply()
    finally:
        writer.close()


async def test_acl_refuses_other_addresses(asterisk: sandbox.SandboxSpec) -> None:
    async with asyncio.timeout(10):
        assert (await login_from("127.0.0.1", asterisk)).response == "Success"
        refused_login = await login_from("127.0.0.2", asterisk)
    assert refused_login.response == "Error"
    assert refused_login.get("Message") == "Authentication failed"


async def test_md5_login_against_the_real_asterisk(asterisk: sandbox.SandboxSpec) -> None:
    client = AmiClient("127.0.0.1", AMI_PORT, asterisk.ami_user, "not-the-secret",
                       ping_interval=0)
    with pytest.raises(AmiLoginError, match="Authentication failed"):
        await client.connect()
    await client.close()


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def test_asterisk_runs_as_its_own_unprivileged_user(
    asterisk: sandbox.SandboxSpec,
) -> None:
    pid = sandbox.running_pid(asterisk)
    assert pid is not None
    status = proc_status(pid)
    uids = {int(u) for u in status["Uid"].split()}
    gids = {int(g) for g in status["Gid"].split()}
    account = sandbox.prepare_account(asterisk.root)
    assert uids == {account.uid} and gids == {account.gid} and 0 not in uids
    with pytest.raises(KeyError):  # no host account shares its uid
        pwd.getpwuid(account.uid)
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, caps
    assert status["NoNewPrivs"] == "1"
    assert status["Groups"] == ""
    assert not sandbox._proc_mounted(asterisk.root)  # nothing of the host's /proc inside
    for directory in asterisk.asterisk_dirs():
        info = directory.stat()
        assert (info.st_uid, info.st_gid) == (account.uid, account.gid), directory
        assert stat.S_IMODE(info.st_mode) == 0o750, directory
    etc = asterisk.etc_dir.stat()
    assert (etc.st_uid, etc.st_gid, stat.S_IMODE(etc.st_mode)) == (0, account.gid, 0o750)
    manager = (asterisk.etc_dir / "manager.conf").stat()
    assert (manager.st_uid, stat.S_IMODE(manager.st_mode)) == (0, 0o640)


async def test_logs_and_queue_log_are_not_world_readable(
    asterisk: sandbox.SandboxSpec,
) -> None:
    assert stat.S_IMODE(asterisk.log_dir.stat().st_mode) == 0o750
    files = [asterisk.queue_log, asterisk.log_dir / "messages.log",
             asterisk.log_dir / "console.log", asterisk.log_dir / "old-messages.log"]
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o027 == 0, f"{path}: {oct(mode)}"
    assert os.access(asterisk.queue_log, os.R_OK)  # root (the service here) still reads it
