"""Tests that act as other users need root. Outside CI a developer without root
gets a skip; in CI (``CI=true``) such a test runs or fails, never skips."""

from __future__ import annotations

import os

import pytest


def needs_root(why: str) -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run as root")
    pytest.skip(why)
