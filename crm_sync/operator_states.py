"""Operators' state changes in the case store (for occupancy and login reports)."""

from __future__ import annotations

import asyncpg

from crm_sync.call_store import RetryingPort, RetryingWriter
from hotline.core.ports import OperatorStateSink
from hotline.core.records import OperatorStateChange


class PostgresOperatorStates:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record_operator_state(self, change: OperatorStateChange) -> None:
        await self._pool.execute(
            """
            INSERT INTO operator_state_changes (operator_id, interface, at, state, reason, queue)
            VALUES ((SELECT id FROM operators
                     WHERE queue_interface = $1
                        OR (queue_interface IS NULL AND 'PJSIP/' || login = $1)
                     ORDER BY queue_interface NULLS LAST LIMIT 1), $1, $2, $3, $4, $5)
            """,
            change.interface,
            change.at,
            change.state,
            change.reason,
            change.queue,
        )


class RetryingOperatorStates(RetryingPort[OperatorStateChange]):
    """Every change is kept, in order, through a database outage."""

    def __init__(self, inner: OperatorStateSink) -> None:
        self._writer = RetryingWriter(inner.record_operator_state, name="operator_states")

    async def record_operator_state(self, change: OperatorStateChange) -> None:
        self._writer.submit(change)
