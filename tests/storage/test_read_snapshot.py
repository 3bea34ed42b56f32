"""A read sees the database at one moment, on both engines, even while other connections commit.

On SQLite one process runs every read and write on one thread, so within the bot nothing can commit
in the middle of a read; but the CLI (another process) can, and on PostgreSQL every replica's pooled
connections can. A read made of several statements (a count and its page, a request and its audit
trail) must not mix two moments: a person would see "2 pending" above three requests.
"""

from __future__ import annotations

from storage.db import Store
from tests.db_faults import run_sql


def _add_override(where, slack_id: str) -> None:
    run_sql(
        where,
        "INSERT INTO identity_overrides (slack_id, system, identity, updated_at, updated_by) "
        f"VALUES ('{slack_id}', '*', 'x@example.com', '2026-01-01T00:00:00.000000Z', 'test')",
    )


async def test_a_read_of_several_statements_sees_one_moment_while_another_connection_commits(databases):
    where = databases.where()
    store = await Store.open(where)
    try:
        _add_override(where, "U_FIRST")

        def count_twice(db) -> tuple[int, int]:
            first = db.execute("SELECT COUNT(*) FROM identity_overrides").fetchone()[0]
            _add_override(where, "U_SECOND")  # another process commits between the two statements
            second = db.execute("SELECT COUNT(*) FROM identity_overrides").fetchone()[0]
            return first, second

        assert await store.read(count_twice) == (1, 1)
        # The next read sees the commit: the snapshot lasts one read, not the connection's life.
        assert await store.read(lambda db: db.execute("SELECT COUNT(*) FROM identity_overrides").fetchone()[0]) == 2
    finally:
        await store.close()
