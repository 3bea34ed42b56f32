"""Storage figures: insert 100,000 granted requests, then load them back as the start-up path does.

Run: .venv/bin/python bench/storage_bulk.py [--count N] [--db PATH]
Prints figures only; nothing is asserted (target, bench/README.md: start-up with 100k live grants re-armed in < 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import AccessRequest, AuditEvent, RequestStatus  # noqa: E402
from storage import RequestRepo, Store  # noqa: E402

T0 = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


def granted_request(i: int) -> tuple[AccessRequest, AuditEvent]:
    """One realistic granted request (fields, approvers, grant state) with its audit row."""
    expires = T0 + timedelta(seconds=60 + i % 86_400, microseconds=i % 1_000_000)
    request = AccessRequest(
        id=f"req-{i:07d}",
        flow="db_access",
        target="prod_admin",
        requester=f"U{i % 5000:07d}",
        created_at=T0,
        duration_seconds=3600,
        status=RequestStatus.GRANTED,
        requester_email=f"user{i % 5000}@example.com",
        fields={"reason": "investigating incident INC-1234 on the orders database", "duration": "1h"},
        approval_channel="C0APPROVALS",
        message_ts=f"1700000000.{i:06d}",
        approvers=("U0ADMIN1", "U0ADMIN2"),
        decided_by="U0ADMIN1",
        decided_at=T0,
        granted_at=T0,
        expires_at=expires,
        grant_state={"membership_id": f"m-{i}"},
    )
    audit = AuditEvent(at=T0, actor="bench", action="request.created")
    return request, audit


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; ru_maxrss would include the forking parent's)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def insert(count: int, path: Path) -> None:
    """Fill the database: 100k granted requests with audit rows, in one transaction."""
    items = [granted_request(i) for i in range(count)]
    async with await Store.open(path) as store:
        started = time.perf_counter()
        await RequestRepo(store).create_many(items)
        print(f"requests                                : {count:,}")
        print(f"insert (one transaction, + audit rows)  : {time.perf_counter() - started:.2f} s")
    print(f"database file                           : {path.stat().st_size / 1e6:.0f} MB")


async def load(path: Path) -> None:
    """What start-up does, in a fresh process so the memory figure is honest."""
    started = time.perf_counter()
    store = await Store.open(path)
    print(f"open store (migrations checked)         : {(time.perf_counter() - started) * 1000:.1f} ms")
    repo = RequestRepo(store)

    started = time.perf_counter()
    schedule = await repo.list_granted_schedule()
    print(
        f"list_granted_schedule (re-arm path)     : {time.perf_counter() - started:.2f} s   "
        f"{len(schedule):,} rows, RSS {rss_mb():.0f} MB"
    )

    started = time.perf_counter()
    full = await repo.list_by_status(RequestStatus.GRANTED)
    print(
        f"list_by_status(GRANTED), full rows      : {time.perf_counter() - started:.2f} s   "
        f"{len(full):,} rows, RSS {rss_mb():.0f} MB"
    )

    started = time.perf_counter()
    due = await repo.list_due_revocations(T0 + timedelta(seconds=60 + 1000))
    print(f"list_due_revocations ({len(due):,} due)         : {(time.perf_counter() - started) * 1000:.1f} ms")

    singles = 1000
    started = time.perf_counter()
    for request in full[:singles]:
        await repo.transition(
            request.id,
            RequestStatus.GRANTED,
            RequestStatus.REVOKED,
            changes={"ended_at": T0 + timedelta(hours=2)},
            audit=AuditEvent(at=T0, actor="bench", action="request.revoked"),
        )
    each_ms = (time.perf_counter() - started) / singles * 1000
    print(f"transition + audit row, fsync'd commit  : {each_ms:.2f} ms each (mean of {singles})")
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="granted requests to insert")
    parser.add_argument("--load-only", type=Path, metavar="DB", help="(internal) run the load phase on DB")
    args = parser.parse_args()
    if args.load_only:
        asyncio.run(load(args.load_only))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            db_path = Path(tmp) / "bench.db"
            asyncio.run(insert(args.count, db_path))
            subprocess.run([sys.executable, __file__, "--load-only", str(db_path)], check=True)
