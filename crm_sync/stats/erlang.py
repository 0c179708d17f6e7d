"""Erlang C: how many operators a queue needs, and what a given number achieves.

Offered load A = λ·AHT (erlangs); with N > A operators the probability that a
caller waits is P_W = (A^N/N! · N/(N−A)) / (Σ_{k<N} A^k/k! + A^N/N! · N/(N−A)),
the service level within t seconds SL(t) = 1 − P_W·e^{−(N−A)t/AHT} and the mean
wait ASA = P_W·AHT/(N−A). N ≤ A is an unstable queue: everyone waits, for ever.

Computed through the Erlang B recursion (B_0 = 1, B_k = A·B_{k−1}/(k + A·B_{k−1}),
P_W = N·B_N/(N − A(1 − B_N))): no factorials, no overflow at hundreds of agents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: No queue here needs more (and the search must end).
MAX_AGENTS = 10_000


def offered_load(calls: float, interval_seconds: float, aht_seconds: float) -> float:
    """Erlangs: calls per second × average handling time."""
    return calls / interval_seconds * aht_seconds if interval_seconds > 0 else 0.0


def erlang_b(agents: int, load: float) -> float:
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def wait_probability(agents: int, load: float) -> float:
    """P_W (0..1); 1 when the queue cannot keep up."""
    if load <= 0:
        return 0.0
    if agents <= load:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1 - b))


def service_level(agents: int, load: float, aht_seconds: float, target_seconds: float) -> float:
    """Share (0..1) of callers answered within ``target_seconds``."""
    if load <= 0:
        return 1.0
    if agents <= load:
        return 0.0
    pw = wait_probability(agents, load)
    return 1 - pw * math.exp(-(agents - load) * target_seconds / aht_seconds)


def average_speed_of_answer(agents: int, load: float, aht_seconds: float) -> float | None:
    """Seconds; ``None`` when the queue cannot keep up (the wait grows without bound)."""
    if load <= 0:
        return 0.0
    if agents <= load:
        return None
    return wait_probability(agents, load) * aht_seconds / (agents - load)


@dataclass(frozen=True)
class Staffing:
    load: float  # erlangs
    agents: int  # the fewest that meet the target
    service_level: float  # 0..1 with that many
    asa: float | None


def agents_needed(
    calls: float, interval_seconds: float, aht_seconds: float,
    target_level: float, target_seconds: float,
) -> Staffing:
    """The fewest operators for which SL(target_seconds) ≥ target_level (0..1)."""
    load = offered_load(calls, interval_seconds, aht_seconds)
    if load <= 0 or aht_seconds <= 0:
        return Staffing(0.0, 0, 1.0, 0.0)
    agents = max(1, math.floor(load) + 1)
    while agents < MAX_AGENTS:
        level = service_level(agents, load, aht_seconds, target_seconds)
        if level >= target_level:
            return Staffing(load, agents, level, average_speed_of_answer(agents, load,
                                                                         aht_seconds))
        agents += 1
    return Staffing(load, agents, service_level(agents, load, aht_seconds, target_seconds),
                    average_speed_of_answer(agents, load, aht_seconds))
