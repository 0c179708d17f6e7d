"""``hotline outbox list [--dead]`` and ``hotline outbox replay ID|--all-dead`` as a
person runs them, on the real PostgreSQL."""

from __future__ import annotations

from crm_sync.db import create_pool
from crm_sync.migrate import migrate
from tests.support.cli import run_hotline
from tests.support.databases import MakeDatabase


async def test_dead_letters_listed_masked_and_replayed(make_database: MakeDatabase) -> None:
    url = await make_database("outbox_cli")
    pool = await create_pool(url)
    try:
        await migrate(pool)
        event = await pool.fetchval(
            "INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k1', '{}') RETURNING id")
        for n, status in enumerate(("dead", "sent", "dead")):
            await pool.execute(
                """INSERT INTO outbox_messages (event_id, idempotency_key, provider, order_key,
                       recipient, body, status, attempts, last_error)
                   VALUES ($1, $2, 'sms', $2, '+380501234567', 'x', $3, 8, 'HTTP 503')""",
                event, f"k1:{n}", status)
        env = {"DATABASE_URL": url}
        code, out, err = await run_hotline("outbox", "list", "--dead", env=env)
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 2 and all("\tdead\t8\t" in line for line in lines)
        assert "+380501234567" not in out and "HTTP 503" in out
        code, out, err = await run_hotline("outbox", "replay", "nope", env=env)
        assert code == 2 and "a message id, or --all-dead" in err
        code, out, _ = await run_hotline("outbox", "replay", "--all-dead", env=env)
        assert code == 0 and out.strip() == "2 message(s) queued again"
        assert await pool.fetchval(
            "SELECT count(*) FROM outbox_messages WHERE status = 'queued' AND attempts = 0") == 2
        code, out, _ = await run_hotline("outbox", "list", "--dead", env=env)
        assert code == 0 and out == ""
    finally:
        await pool.close()
