"""Queue figures computed straight from Asterisk's queue_log file, apart from the
code under test (not crm_sync/queue_log.py, not the rollups): the reference the
reports must agree with.

Each ENTERQUEUE opens a stay of a call in a queue; the stay's closing line says
how it ended (app_queue's events, data fields as app_queue writes them):
CONNECT holdtime|bridged|ringtime, COMPLETECALLER/COMPLETEAGENT
holdtime|calltime|origpos, ABANDON / EXITWITHTIMEOUT / EXITWITHKEY pos|origpos|waittime
(EXITWITHKEY: key|pos|origpos|waittime), EXITEMPTY pos|origpos|waittime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stay:
    callid: str
    queue: str
    entered: int
    ending: str = ""
    wait: int = 0
    talk: int | None = None


@dataclass
class QueueLog:
    stays: list[Stay] = field(default_factory=list)

    def closed(self) -> bool:
        return all(s.ending and (s.ending != "CONNECT") for s in self.stays)


def read_queue_log(path: Path, callid_prefix: str = "") -> QueueLog:
    log = QueueLog()
    open_stays: dict[tuple[str, str], Stay] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) < 5 or not parts[1].startswith(callid_prefix) or parts[1] == "NONE":
            continue
        epoch, callid, queue, _agent, event, data = (
            int(parts[0]), parts[1], parts[2], parts[3], parts[4], parts[5:])
        key = (callid, queue)
        if event == "ENTERQUEUE":
            stay = Stay(callid, queue, epoch)
            open_stays[key] = stay
            log.stays.append(stay)
            continue
        stay_or_none = open_stays.get(key)
        if stay_or_none is None:
            continue
        stay = stay_or_none
        if event == "CONNECT":
            stay.ending, stay.wait = "CONNECT", int(data[0])
        elif event in ("COMPLETECALLER", "COMPLETEAGENT"):
            stay.ending, stay.wait, stay.talk = "COMPLETE", int(data[0]), int(data[1])
            del open_stays[key]
        elif event in ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY"):
            stay.ending, stay.wait = event, int(data[2])
            del open_stays[key]
        elif event == "EXITWITHKEY":
            stay.ending, stay.wait = event, int(data[3])
            del open_stays[key]
    return log


def figures(stays: list[Stay], service_level: int, short_abandon: int) -> dict[str, Any]:
    """The report's figures for these stays (definitions: crm_sync/stats/metrics.py)."""
    answered = [s for s in stays if s.ending == "COMPLETE"]
    abandons = [s for s in stays if s.ending == "ABANDON"]
    short = [s for s in abandons if s.wait < short_abandon]
    long = [s for s in abandons if s.wait >= short_abandon]
    offered = len(stays) - len(short)

    def pct(a: int, b: int) -> float | None:
        return round(100 * a / b, 1) if b else None

    within = sum(1 for s in answered if s.wait <= service_level)
    abandoned_within = sum(1 for s in abandons if s.wait <= service_level)
    shorts = {id(s) for s in short}
    waits = [s.wait for s in stays if id(s) not in shorts]
    return {
        "offered": offered,
        "answered": len(answered),
        "abandoned": len(long),
        "short_abandoned": len(short),
        "timed_out": sum(1 for s in stays if s.ending == "EXITWITHTIMEOUT"),
        "callbacks": 0,
        "service_level": pct(within, len(answered)),
        "service_level2": pct(within + abandoned_within, len(answered) + len(abandons)),
        "asa": round(sum(s.wait for s in answered) / len(answered), 1) if answered else None,
        "longest_wait": max(waits) if waits else None,
        "aht": (round(sum(s.talk or 0 for s in answered) / len(answered), 1)
                if answered else None),
        "abandon_rate": pct(len(long), offered),
    }
