"""Audit figures: event → delivered to a local HTTP destination (p99 at a sustained rate), and what
the chained, outbox-backed audit row costs the approve path (before / after).

Run: .venv/bin/python bench/audit.py [--rate 10] [--seconds 30] [--approvals 1000] [--repeat 3] [--db-dir DIR]
Prints figures only; nothing is asserted (target, bench/README.md: delivered p99 < 1 s at 10 events/s).

- Delivery: events are appended through `AuditLog` at `--rate` per second for `--seconds`, while the
  bot's own delivery worker (`core.audit_delivery.AuditDelivery`, default poll and batch) sends them
  to a local signed-batch receiver (`tests/fakes/audit_receivers.AuditReceiver`). Latency is the
  receiver's arrival time minus the moment the append's transaction committed.
- Approve path: `--approvals` pending requests are moved to approved with their audit row in one
  fsync'd transaction (`RequestRepo.transition`, as `AccessEngine.approve` does), timed per call:
  *before* writes the audit row as jitbot did before the chain (seven columns, no hash, no outbox
  cursor), *after* writes today's documented, chained row; then *after* again while one destination
  is being delivered to, and while one is dead (connection refused, retried with back-off).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlite_utils  # noqa: E402

from audit_sinks.http import HttpSink  # noqa: E402
from core.audit_config import HttpDestination  # noqa: E402
from core.audit_delivery import AuditDelivery  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.models import AccessRequest, AuditEvent, RequestStatus  # noqa: E402
from core.ports import Alert  # noqa: E402
from core.secrets import Secret, SecretRegistry  # noqa: E402
from storage import AuditLog, RequestRepo, Store  # noqa: E402
from storage.audit import AuditWriter  # noqa: E402
from storage.audit_outbox import AuditCursors  # noqa: E402
from storage.db import to_db_time  # noqa: E402
from tests.fakes.audit_receivers import AuditReceiver  # noqa: E402

SECRET = "bench-audit-secret-0123456789"
S = RequestStatus


class UnchainedWriter(AuditWriter):
    """The audit row as written before the chain: seven columns, no derived fields, no hash."""

    def insert(self, db: sqlite_utils.Database, event: AuditEvent) -> int:
        row = db.conn.execute(
            "INSERT INTO audit_events (at, request_id, actor, action, status_from, status_to, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                to_db_time(event.at),
                event.request_id,
                self.secrets.scrub(event.actor),
                event.action,
                event.status_from,
                event.status_to,
                self.encode_detail(event.detail),
            ],
        ).lastrowid
        return int(row or 0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def pending(i: int) -> AccessRequest:
    return AccessRequest(
        id=f"req-{i:06d}",
        flow="db_access",
        target="prod_admin",
        requester=f"U{i:07d}",
        created_at=datetime.now(UTC),
        duration_seconds=3600,
        requester_email=f"user{i}@example.com",
        fields={"reason": "investigating incident INC-1234 on the orders database", "duration": "1h"},
        approval_channel="C0APPROVALS",
    )


def http_sink(url: str, name: str) -> HttpSink:
    config = HttpDestination(type="http", url=url, secret=Secret(SECRET), name=name)
    return HttpSink(config, clock=SystemClock())


async def no_alert(alert: Alert) -> None:
    return None


async def approvals(path: Path, count: int, *, writer: AuditWriter | None, sinks: list[Any]) -> dict[str, float]:
    """Approve `count` requests one after another; per-call wall time and CPU (ms)."""
    async with await Store.open(path) as store:
        repo = RequestRepo(store)
        if writer is not None:
            repo._audit = writer  # the bench's "before": the row as it used to be written
        now = datetime.now(UTC)
        await repo.create_many(
            (pending(i), AuditEvent(at=now, actor=f"U{i:07d}", action="request.created")) for i in range(count)
        )
        delivery = AuditDelivery(
            AuditCursors(store), sinks, alert=no_alert, clock=SystemClock(), secrets=SecretRegistry()
        )
        await delivery.start()
        await asyncio.sleep(0.5)  # let a dead destination reach its back-off, a live one catch up
        walls: list[float] = []
        cpu_start = time.process_time()
        for i in range(count):
            request = pending(i)
            started = time.perf_counter()
            await repo.transition(
                request.id,
                S.PENDING,
                S.APPROVED,
                changes={"decided_by": "U0BOB", "decided_at": now, "expires_at": now + timedelta(hours=1)},
                audit=AuditEvent(
                    at=datetime.now(UTC),
                    actor="U0BOB",
                    action="request.approved",
                    status_from="pending",
                    status_to="approved",
                    detail={"reason": None},
                    flow=request.flow,
                    target=request.target,
                ),
            )
            walls.append((time.perf_counter() - started) * 1000)
        cpu = (time.process_time() - cpu_start) * 1000 / count
        await delivery.stop()
    return {"p50": statistics.median(walls), "p99": pct(walls, 99), "cpu": cpu}


async def delivery_latency(path: Path, rate: float, seconds: float) -> dict[str, float]:
    async with AuditReceiver(secret=SECRET) as receiver, await Store.open(path) as store:
        arrivals: dict[int, float] = {}
        original = receiver.handle

        async def timed(request: Any) -> Any:
            answer = await original(request)
            now = time.perf_counter()
            for event in receiver.events:
                arrivals.setdefault(event["seq"], now)
            return answer

        receiver.handle = timed  # type: ignore[method-assign]
        log = AuditLog(store)
        delivery = AuditDelivery(
            AuditCursors(store),
            [http_sink(receiver.url, "bench")],
            alert=no_alert,
            clock=SystemClock(),
            secrets=SecretRegistry(),
        )
        await delivery.start()
        written: dict[int, float] = {}
        total = int(rate * seconds)
        start = time.perf_counter()
        for n in range(total):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            seq = await log.append(
                AuditEvent(at=datetime.now(UTC), actor="U0BOB", action="request.approved", request_id=f"r{n}")
            )
            written[seq] = time.perf_counter()
        deadline = time.perf_counter() + 30
        while len(arrivals) < len(written) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        await delivery.stop()
    latencies = [(arrivals[s] - t) * 1000 for s, t in written.items() if s in arrivals]
    return {
        "events": total,
        "delivered": len(latencies),
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 99),
        "max": max(latencies),
        "duplicates": len(receiver.events) - len(set(e["seq"] for e in receiver.events)),
    }


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/audit"  # closed again: connection refused


async def main(args: argparse.Namespace) -> None:
    directory = Path(args.db_dir or tempfile.mkdtemp(prefix="jitbot-bench-audit-"))
    print(f"audit bench in {directory} ({args.rate}/s for {args.seconds}s; {args.approvals} approvals per run)")
    figure = await delivery_latency(directory / "delivery.db", args.rate, args.seconds)
    print(
        f"event → delivered (local HTTP destination, {figure['events']} events at {args.rate}/s): "
        f"p50 {figure['p50']:.0f} ms, p99 {figure['p99']:.0f} ms, max {figure['max']:.0f} ms "
        f"[target p99 < 1000 ms]; delivered {figure['delivered']}, duplicates {figure['duplicates']}"
    )
    async with AuditReceiver(secret=SECRET) as live:
        runs = {
            "before (unchained row, no outbox)": dict(writer=UnchainedWriter(SecretRegistry()), sinks=[]),
            "after (chained row, no destination)": dict(writer=None, sinks=[]),
            "after, a live HTTP destination": dict(writer=None, sinks=[http_sink(live.url, "live")]),
            "after, a dead HTTP destination": dict(writer=None, sinks=[http_sink(dead_url(), "dead")]),
        }
        print(
            f"approve transition + audit row, one fsync'd transaction each (median of {args.repeat} rounds, in turn):"
        )
        results: dict[str, list[dict[str, float]]] = {label: [] for label in runs}
        for round_number in range(args.repeat):
            for number, (label, options) in enumerate(runs.items()):
                path = directory / f"approve-{round_number}-{number}.db"
                results[label].append(await approvals(path, args.approvals, **options))
        for label, rounds in results.items():
            p50, p99, cpu = (statistics.median(r[key] for r in rounds) for key in ("p50", "p99", "cpu"))
            print(f"  {label:38s} p50 {p50:.2f} ms  p99 {p99:.2f} ms  process CPU {cpu:.2f} ms/approval")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (default 10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to sustain it (default 30)")
    parser.add_argument("--approvals", type=int, default=1000, help="approvals per approve-path run (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the approve-path runs (default 3)")
    parser.add_argument("--db-dir", help="where the bench databases go (default: a temporary directory)")
    asyncio.run(main(parser.parse_args()))
