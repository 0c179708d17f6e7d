"""The real-Asterisk sandbox as the system tests start it, and the service's
settings pointed at it: one place, so every module's instance differs only in
what it is named and where it listens."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from hotline.devtools import asterisk_sandbox as sandbox
from hotline.settings import Settings
from tests.support.paths import CONFIG_DIR
from tests.support.ports import asterisk_root, instance


def make_sandbox(
    name: str, server_id: str, *, ami_port: int, agi_port: int, sip_port: int, **extra: Any
) -> sandbox.SandboxSpec:
    """A sandbox instance of its own (``name`` + the test slot), fresh secrets."""
    return sandbox.SandboxSpec(
        instance=instance(name), root=asterisk_root(), server_id=server_id,
        ami_port=ami_port, ami_user="hotline", ami_secret=secrets.token_urlsafe(18),
        agi_host="127.0.0.1", agi_port=agi_port, sip_port=sip_port,
        sip_password=secrets.token_urlsafe(12), config_dir=CONFIG_DIR, **extra,
    )


def service_settings(
    spec: sandbox.SandboxSpec, *, database_url: str, redis_url: str,
    roles: Sequence[str] | None = None, web_port: int | None = None, state_dir: str = "",
) -> Settings:
    """The service's settings for this sandbox (its queue_log is the one reconciled)."""
    settings = Settings()
    settings.service.server_id = spec.server_id
    if roles is not None:
        settings.service.roles = list(roles)
    if state_dir:
        settings.service.state_dir = state_dir
    settings.agi.port = spec.agi_port
    settings.ami.port = spec.ami_port
    settings.ami.secret = spec.ami_secret
    settings.asterisk.instance = spec.instance
    if web_port is not None:
        settings.web.port = web_port
    settings.database.url = database_url
    settings.redis.url = redis_url
    return settings
