"""A year of grants: `bot.py report access` streams 100,000 requests to a file in bounded memory.

The report runs as the operator runs it, in its own process; its peak resident memory is the
kernel's high-water mark of that process (VmHWM, read by the process itself as it exits: a child's
rusage would also count the test process it was forked from), compared with the same command on
an almost empty database. The difference is what the grants cost, and it must stay flat.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from core.models import AuditEvent
from storage import RequestRepo, Store
from tests.databases import TestDatabases
from tests.e2e.botprocess import BOT, REPO, clean_env
from tests.reports.conftest import SINCE, grant

pytestmark = pytest.mark.slow

COUNT = 100_000
PEOPLE = 400
# Loading 100,000 records into memory would cost ~150 MB more than the empty run; streaming costs
# a few pages of rows and one target's lane state.
EXTRA_MEMORY_BOUND_KIB = 16 * 1024

# 100,000 grants, 5 minutes apart, over 4 targets and 400 people, written in one statement.
_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count)
INSERT INTO requests (id, flow, target, requester, requester_email, status, created_at, duration_seconds,
    fields, decided_by, decided_at, granted_at, expires_at, ended_at, grant_spec)
SELECT printf('r%06d', i), 'db_access', CASE i % 4 WHEN 0 THEN 'prod_admin' WHEN 1 THEN 'staging'
    WHEN 2 THEN 'billing' ELSE 'support' END, printf('U%04d', i % :people), printf('u%04d@example.com', i % :people),
    'revoked', t || '.000000Z', 3600, '{"reason":"ticket ' || i || '"}', 'U_BOB', t || '.000000Z',
    t || '.000000Z', e || '.000000Z', CASE WHEN i % 10 = 0 THEN m ELSE e END || '.000000Z', '{}'
FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%S', :since, '+' || (i * 5) || ' minutes') AS t,
             strftime('%Y-%m-%dT%H:%M:%S', :since, '+' || (i * 5 + 60) || ' minutes') AS e,
             strftime('%Y-%m-%dT%H:%M:%S', :since, '+' || (i * 5 + 20) || ' minutes') AS m FROM n)
"""

# The same rows in PostgreSQL's dialect (generate_series, to_char).
_FILL_PG = """
INSERT INTO requests (id, flow, target, requester, requester_email, status, created_at, duration_seconds,
    fields, decided_by, decided_at, granted_at, expires_at, ended_at, grant_spec)
SELECT 'r' || lpad(i::text, 6, '0'), 'db_access', CASE i % 4 WHEN 0 THEN 'prod_admin' WHEN 1 THEN 'staging'
    WHEN 2 THEN 'billing' ELSE 'support' END, 'U' || lpad((i % :people)::text, 4, '0'),
    'u' || lpad((i % :people)::text, 4, '0') || '@example.com',
    'revoked', to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS') || '.000000Z', 3600, '{"reason":"ticket ' || i || '"}', 'U_BOB',
    to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS') || '.000000Z', to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS') || '.000000Z',
    to_char(t + interval '60 minutes', 'YYYY-MM-DD"T"HH24:MI:SS') || '.000000Z',
    to_char(t + CASE WHEN i % 10 = 0 THEN interval '20 minutes' ELSE interval '60 minutes' END,
            'YYYY-MM-DD"T"HH24:MI:SS') || '.000000Z', '{}'
FROM (SELECT i, CAST(:since AS timestamp) + i * interval '5 minutes' AS t FROM generate_series(0, :count - 1) AS i) s
"""


# Runs bot.py as `python bot.py …` would, then writes the process's own VmHWM (KiB) to argv[1].
_MEASURED = """
import runpy, sys
hwm_file, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    status = open("/proc/self/status").read()
    hwm = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    open(hwm_file, "w").write(hwm)
"""


def report(db: Path | str, hwm: Path, *args: str) -> int:
    """Run `bot.py report access ARGS` on `db`; return its peak resident memory in KiB (written to `hwm`)."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(hwm), str(BOT), "report", "access", *args],
        cwd=REPO,
        env=clean_env(JITBOT_DB=str(db)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return int(hwm.read_text())


async def test_the_review_of_100000_grants_streams_to_a_file_in_bounded_memory(
    tmp_path: Path, databases: TestDatabases
) -> None:
    big, small = databases.where("big.db"), databases.where("small.db")
    fill = _FILL_PG if databases.engine == "postgresql" else _FILL
    store = await Store.open(big)
    try:
        await store.write(lambda db: db.execute(fill, {"count": COUNT, "people": PEOPLE, "since": "2026-11-01"}))
    finally:
        await store.close()
    store = await Store.open(small)
    try:
        created = AuditEvent(at=SINCE, actor="U_ALICE", action="request.created")
        await RequestRepo(store).create(grant("only", SINCE + timedelta(hours=1), 1), created)
    finally:
        await store.close()

    period = ["--since", "2026-11-01", "--until", "2027-11-01"]
    peaks = {}
    for fmt in ("html", "csv"):
        out_big, out_small = tmp_path / f"big.{fmt}", tmp_path / f"small.{fmt}"
        baseline = report(small, tmp_path / "small.hwm", *period, "--format", fmt, "--output", str(out_small))
        peak = report(big, tmp_path / "big.hwm", *period, "--format", fmt, "--output", str(out_big))
        peaks[fmt] = (baseline, peak)
        text = out_big.read_text(encoding="utf-8")
        if fmt == "html":
            assert text.count('<rect class="grant ') == COUNT
            assert text.count('class="grant outcome-early"') == COUNT // 10
        else:
            assert text.count("\n") == COUNT + 1
    print("peak RSS (KiB), empty vs 100,000 grants:", peaks)
    for fmt, (baseline, peak) in peaks.items():
        assert peak - baseline < EXTRA_MEMORY_BOUND_KIB, f"{fmt}: {peak - baseline} KiB more than an empty report"
