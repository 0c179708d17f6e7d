"""Which event loop ``hotline run`` and ``hotline demo`` run on (service.event_loop)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from hotline.cli import _run_loop
from hotline.settings import SettingsError
from tests.support.root import needs_uvloop


async def _loop_module() -> int:
    return 1 if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else 0


def test_auto_and_uvloop_run_on_uvloop_when_installed() -> None:
    needs_uvloop()
    assert _run_loop(_loop_module(), "auto") == 1
    assert _run_loop(_loop_module(), "uvloop") == 1


def test_asyncio_keeps_the_stock_loop() -> None:
    assert _run_loop(_loop_module(), "asyncio") == 0


def test_auto_without_uvloop_falls_back_and_uvloop_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes the import fail
    assert _run_loop(_loop_module(), "auto") == 0
    with pytest.raises(SettingsError, match=r"service\.event_loop: uvloop is not installed"):
        _run_loop(_loop_module(), "uvloop")
