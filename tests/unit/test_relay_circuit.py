"""The relay's view of a provider being down: opened after a run of failures,
probed after a pause that doubles (once per probe, not once per message of the
probe's batch) up to a ceiling, closed by one success."""

from __future__ import annotations

from crm_sync.outbox.relay import Circuit


def test_a_run_of_failures_opens_it_and_a_success_in_between_resets_the_run() -> None:
    circuit = Circuit(threshold=3, pause=1.0, pause_max=8.0)
    assert [circuit.failure(0.0), circuit.failure(0.0)] == [False, False]
    assert circuit.success() is False  # was not open: nothing to announce
    assert [circuit.failure(0.0), circuit.failure(0.0)] == [False, False]
    assert circuit.claimable(0.0)
    assert circuit.failure(10.0) is True and circuit.is_open
    assert not circuit.claimable(10.5) and circuit.claimable(11.0)


def test_probes_back_off_to_the_ceiling_and_one_success_closes() -> None:
    circuit = Circuit(threshold=1, pause=1.0, pause_max=8.0)
    circuit.failure(0.0)
    now, pauses = 0.0, []
    for _ in range(6):
        now = circuit.open_until or now
        circuit.failure(now)  # the probe failed
        for _ in range(9):
            circuit.failure(now)  # the rest of the probe's batch: no news
        pauses.append(circuit.pause)
    assert pauses == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert circuit.success() is True
    assert not circuit.is_open and circuit.claimable(now) and circuit.failures == 0
