"""Simulated citizens and operators on a real Asterisk, over AMI.

Citizens are originated as ``Local/1551@hotline-inbound`` whose other half
runs ``hotline-sim-citizen`` (press digits, then hang up at a chosen time);
operators are queue members ``Local/<n>@hotline-sim-operator/n`` that answer,
talk for a while and hang up (both contexts are in
``asterisk/etc/extensions_simulation.conf``, which only the sandbox includes).
The queues and the digits are the catalogue's (``queues.toml``). The same code
drives the demo and the tests.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crm_sync.taxonomy import Sphere
from cti_bridge.ami_client import AmiClient, AmiError
from hotline.core.logs import get_logger
from hotline.core.queues import QueueCatalogue

log = get_logger("hotline.simulator")
FIRST_NAMES = ("Тарас", "Леся", "Іван", "Ольга", "Петро", "Марія", "Богдан", "Оксана")
LAST_NAMES = ("Шевченко", "Українка", "Франко", "Коваленко", "Бондаренко", "Ткаченко")


def operator_interface(number: int) -> str:
    return f"Local/{number}@hotline-sim-operator/n"


async def add_operator(
    ami: AmiClient, number: int, queues: Sequence[str], talk_seconds: int | None = None
) -> str:
    """Log a simulated operator into queues; a fixed talk time if given, else random."""
    interface = operator_interface(number)
    if talk_seconds is not None:
        await ami.action("Setvar", Variable=f"SIM_TALK_{number}", Value=str(talk_seconds))
    for queue in queues:
        try:
            await ami.action(
                "QueueAdd", Queue=queue, Interface=interface, MemberName=f"Operator {number}"
            )
        except AmiError as exc:  # already a member: fine, the state is what we want
            if "Already there" not in str(exc):
                raise
    return interface


async def remove_operator(ami: AmiClient, number: int, queues: Sequence[str]) -> None:
    for queue in queues:
        try:
            await ami.action("QueueRemove", Queue=queue, Interface=operator_interface(number))
        except AmiError as exc:
            if "Not there" not in str(exc):
                raise


@dataclass(frozen=True)
class Citizen:
    number: str
    name: str
    digits: str = ""  # what to press in the IVR ("" = nothing)
    digit_delay: float = 2.0  # seconds after the IVR answers
    hangup_after: float = 120.0  # seconds after pressing


async def call_in(ami: AmiClient, citizen: Citizen) -> None:
    """Originate one citizen's call into the hotline (asynchronously in Asterisk)."""
    await ami.action(
        "Originate",
        Channel="Local/1551@hotline-inbound",
        Context="hotline-sim-citizen",
        Exten="s",
        Priority="1",
        CallerID=f'"{citizen.name}" <{citizen.number}>',
        Async="true",
        Variable=[
            f"SIM_DIGITS={citizen.digits}",
            f"SIM_DIGIT_DELAY={citizen.digit_delay:g}",
            f"SIM_HANGUP_AFTER={citizen.hangup_after:g}",
        ],
    )


#: What a simulated caller presses: (digits, weight).
Choices = Sequence[tuple[str, float]]


def menu_choices(catalogue: QueueCatalogue, spheres: Iterable[Sphere]) -> list[tuple[str, float]]:
    """Each menu digit weighted by the share of the city's calls its queue takes
    (the spheres' shares in Kyiv's figures); a queue with none still gets some."""
    shares: dict[str, float] = {}
    for sphere in spheres:
        shares[sphere.queue] = shares.get(sphere.queue, 0.0) + float(sphere.share_percent)
    return [(digit, max(shares.get(q.name, 0.0), 1.0))
            for digit, q in sorted(catalogue.by_digit().items())]


def random_citizen(rng: random.Random, choices: Choices) -> Citizen:
    """A plausible mix: most choose a sphere, some give up during the greeting."""
    number = "38050" + "".join(rng.choice("0123456789") for _ in range(7))
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    roll = rng.random()
    if roll < 0.08:  # hangs up during the greeting
        return Citizen(number, name, "", 1.0, 0.5)
    digits = rng.choices([d for d, _ in choices], [w for _, w in choices])[0]
    patience = rng.choice((8.0, 20.0, 45.0, 90.0, 180.0))
    return Citizen(number, name, digits, rng.uniform(1.5, 3.0), patience)


async def run_traffic(
    ami: AmiClient,
    calls_per_minute: float,
    stop: asyncio.Event,
    choices: Choices,
    seed: int | None = None,
) -> int:
    """Originate random citizens until ``stop`` is set; returns how many called."""
    rng = random.Random(seed)
    count = 0
    while not stop.is_set():
        try:
            await call_in(ami, random_citizen(rng, choices))
            count += 1
        except AmiError as exc:
            log.warning("simulated_call_failed", error=str(exc))
        pause = rng.expovariate(calls_per_minute / 60.0)
        try:
            await asyncio.wait_for(stop.wait(), timeout=pause)
        except TimeoutError:
            pass
    return count
