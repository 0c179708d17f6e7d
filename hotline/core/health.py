"""Readiness: named checks that the composition root registers as each part starts.

A check is a callable returning a truth value, or an awaitable of one: the AMI
link's ``connected`` flag, a ``SELECT 1``, a Redis ``PING``. A check that
raises, answers falsy or does not answer within the timeout names its part as
not ready. The web package only sees this registry, never the parts behind it
(``hotline.web`` must not import ``cti_bridge`` or ``ivr``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hotline.core.logs import get_logger

#: The parts' names as ``/readyz`` shows them.
DATABASE = "database"
REDIS = "redis"
AMI_LINK = "ami_link"
FASTAGI_LISTENER = "fastagi_listener"
#: Not a part: named while the process starts or stops, so that a load
#: balancer neither sends work too early nor keeps sending it while it drains.
SERVICE = "service"

Check = Callable[[], object]

log = get_logger("hotline.core.health")


@dataclass(frozen=True)
class ReadinessReport:
    #: Every part checked, ready or not (``SERVICE`` only while not running).
    parts: Mapping[str, bool]
    #: Why a part is not ready: for the logs, not for the public answer.
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(self.parts.values())

    @property
    def failing(self) -> list[str]:
        return sorted(name for name, ok in self.parts.items() if not ok)


class Readiness:
    """The readiness checks of one process.

    ``running`` is False from construction until the service has started every
    part, and again from the moment it begins to stop, unless created ready
    (``running=True``, for a web application built on its own).
    """

    def __init__(self, *, timeout: float = 2.0, running: bool = True) -> None:
        self.timeout = timeout
        self.running = running
        self._checks: dict[str, Check] = {}
        self._last_failing: list[str] | None = None

    def add(self, name: str, check: Check) -> None:
        """Register (or replace: parts share the database) the check of a part."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    @property
    def names(self) -> list[str]:
        return sorted(self._checks)

    async def check(self) -> ReadinessReport:
        """Run every check at once; a hung one costs at most ``timeout`` seconds."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        parts: dict[str, bool] = {}
        reasons: dict[str, str] = {}
        for name, reason in zip(names, results, strict=True):
            parts[name] = reason is None
            if reason is not None:
                reasons[name] = reason
        if not self.running:
            parts[SERVICE] = False
            reasons[SERVICE] = "starting or stopping"
        report = ReadinessReport(parts, reasons)
        self._log_change(report)
        return report

    async def _run(self, check: Check) -> str | None:
        """None when ready, else why not."""
        try:
            async with asyncio.timeout(self.timeout):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:  # any failure of a check means "not ready", never a 500
            return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
        return None if result else "not ready"

    def _log_change(self, report: ReadinessReport) -> None:
        """One event when the answer changes, not one per probe."""
        failing = report.failing
        if failing == self._last_failing:
            return
        self._last_failing = failing
        if failing:
            log.warning("readiness_lost", failing=failing,
                        reasons={name: report.reasons[name] for name in failing})
        else:
            log.info("readiness_ok", parts=sorted(report.parts))
