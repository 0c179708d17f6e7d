"""Ports, sandbox instance names and the sandbox tree of the system tests.

``HOTLINE_TEST_SLOT=N`` (0 by default) shifts every port by ``100·N`` and suffixes
the Asterisk instance names, so that several checkouts can run the real-Asterisk
tests on one machine at once. ``HOTLINE_ASTERISK_ROOT`` points them at another
sandbox tree than the default one (say, one being rebuilt differently).
"""

from __future__ import annotations

import os
from pathlib import Path

from hotline.settings import Settings

SLOT = int(os.environ.get("HOTLINE_TEST_SLOT", "0"))


def port(base: int) -> int:
    return base + 100 * SLOT


def instance(name: str) -> str:
    return f"{name}{SLOT}" if SLOT else name


def asterisk_root() -> Path:
    return Path(os.environ.get("HOTLINE_ASTERISK_ROOT") or Settings().asterisk.root)
