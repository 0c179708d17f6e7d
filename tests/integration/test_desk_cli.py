"""`hotline user add … --skills … --member …` as a person runs it: an operator's queues
and phone, checked against the queue catalogue before anything is saved."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from crm_sync.desk.operators import desk_operator
from tests.support.cli import run_hotline

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_user_add_with_skills_and_a_simulated_member(make_database: Any) -> None:
    url = await make_database("cli_desk")
    env = {"DATABASE_URL": url, "HOTLINE_NEW_PASSWORD": "long-enough-password"}
    code, _, err = await run_hotline("user", "add", "olena", "--role", "operator",
                                     "--skills", "housing:0,nowhere:1", env=env)
    assert code == 2 and "'nowhere' is not a queue of queues.toml" in err
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT count(*) FROM operators") == 0  # nothing half-saved
        code, _, err = await run_hotline(
            "user", "add", "olena", "--role", "operator", "--name", "Олена",
            "--skills", "housing:0, main:5", "--member", "Local/101@hotline-sim-operator/n",
            env=env)
        assert code == 0, err
        operator = await desk_operator(pool, "olena")
        assert operator is not None
        assert operator.interface == "Local/101@hotline-sim-operator/n"
        assert [(s.queue, s.penalty) for s in operator.skills] == [("housing", 0), ("main", 5)]
        code, _, err = await run_hotline("user", "add", "petro", "--role", "operator", env=env)
        assert code == 0, err
        petro = await desk_operator(pool, "petro")
        assert petro is not None and petro.interface == "PJSIP/petro" and petro.skills == ()
    finally:
        await pool.close()
