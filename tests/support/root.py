"""What some tests cannot run without: root (they act as other users) or uvloop
(the 'fast' extra). Outside CI a developer without it gets a skip; in CI
(``CI=true``) such a test runs or fails, never skips."""

from __future__ import annotations

import os
from types import ModuleType
from typing import NoReturn

import pytest


def unavailable(why: str, in_ci: str) -> NoReturn:
    """Skip here, fail in CI with ``in_ci`` saying what CI lacks."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}: {in_ci}")
    pytest.skip(why)


def needs_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(why, "CI must run as root")


def needs_uvloop() -> ModuleType:
    try:
        import uvloop
    except ImportError:
        unavailable("uvloop is not installed (the 'fast' extra)",
                    "run.sh installs the 'fast' extra")
    return uvloop
