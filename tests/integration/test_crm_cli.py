"""``hotline crm reconcile --since`` as a person runs it, on the real PostgreSQL with
the fake CRM on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from tests.support.cli import assert_one_error_line, run_hotline
from tests.support.databases import MakeDatabase
from tests.support.fake_crm import CrmAppeal, FakeCrm


async def test_reconcile_prints_the_drift_and_exits_1(make_database: MakeDatabase) -> None:
    url = await make_database("crm_cli")
    pool = await create_pool(url)
    fake = FakeCrm()
    await fake.start()
    try:
        await migrate(pool)
        env = {"DATABASE_URL": url}
        code, _, err = await run_hotline("crm", "reconcile", "--since", "2026-01-01", env=env)
        assert code == 2  # an error; 1 means drift
        assert_one_error_line(err, "crm.url")
        env |= {"HOTLINE_CRM_URL": fake.url, "HOTLINE_CRM_API_KEY": fake.api_key}
        code, _, err = await run_hotline("crm", "reconcile", "--since", "yesterday", env=env)
        assert code == 2
        assert_one_error_line(err, "--since")
        code, out, err = await run_hotline("crm", "reconcile", "--since", "2026-01-01",
                                           env=env)
        assert code == 0, err
        assert json.loads(out) == {"compared": 0, "drift": []}
        fake.appeals["X-1"] = CrmAppeal("X-1", "done", datetime.now(UTC))
        code, out, err = await run_hotline("crm", "reconcile", "--since", "2026-01-01",
                                           "--report-only", env=env)
        assert code == 1, err
        assert json.loads(out)["drift"] == [{"number": "X-1", "kind": "unknown", "ours": None,
                                             "theirs": "done", "action": "none"}]
    finally:
        await fake.stop()
        await pool.close()
