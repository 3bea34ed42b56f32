"""Revocation on time under load, and start-up with 100,000 live grants (targets: bench/README.md).

Run: .venv/bin/python bench/revocation.py [--grants 10000] [--ending 1000] [--window 60] [--startup-grants 100000]
     [--skip-lateness | --skip-startup] [--json]

Lateness: the database is seeded (RequestRepo.create_many) with `--grants` live webhook grants, of which
`--ending` end within one `--window`-second stretch starting `--lead` seconds from now and the rest hours
later; then the bot starts in its own process with the real clock and its timers, and we record when
the webhook receiver gets each revoke POST. Lateness = that moment − the grant's end time.
Start-up: a fresh database with `--startup-grants` live grants; the figures are how long
`Runtime.start()` takes (load config, open the store, recover, re-arm the timers, connect) and the
bot process's resident memory right after it (and its peak). Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import (
    ALERTS_CHANNEL,
    APPROVAL_CHANNEL,
    WEBHOOK_SECRET,
    BotSpec,
    Figure,
    TimedReceiver,
    cpu_seconds,
    log_trouble,
    machine,
    percentile,
    print_figures,
    start_bot,
    write_flows,
)
from storage_bulk import granted_request

from sandbox.slack import SlackEmulator
from storage import RequestRepo, Store

# Lateness p99: < 50 ms when the ending grants are spread over a minute, < 2 s when they all end at once.
LATENESS_TARGET_S, SAME_INSTANT_TARGET_S = 0.050, 2.0
ON_TIME_MAX_S, REARM_TARGET_S, RSS_TARGET_MB = 2.0, 5.0, 200.0
REQUESTERS = 500  # distinct people holding the grants


def requester(i: int) -> str:
    """The Slack id of the person holding grant `i`."""
    return f"U_HOLDER{i % REQUESTERS:04d}"


def build_emulator() -> SlackEmulator:
    """The workspace: every grant holder (with an email), the approval and alerts channels."""
    emu = SlackEmulator()
    for i in range(REQUESTERS):
        emu.add_user(requester(i), email=f"holder{i}@example.com")
    emu.add_channel(APPROVAL_CHANNEL, name="approvals")
    emu.add_channel(ALERTS_CHANNEL, name="alerts")
    return emu


def live_grant(i: int, expires_at: datetime, now: datetime, message_ts: str, prefix: str):
    """A granted webhook request ending at `expires_at`, with its creation audit row."""
    request, audit = granted_request(i)
    granted_at = now - timedelta(minutes=30)
    request = replace(
        request,
        id=f"{prefix}{i:07d}",
        requester=requester(i),
        requester_email=f"holder{i % REQUESTERS}@example.com",
        created_at=granted_at,
        decided_at=granted_at,
        granted_at=granted_at,
        expires_at=expires_at,
        duration_seconds=int((expires_at - granted_at).total_seconds()),
        approval_channel=APPROVAL_CHANNEL,
        message_ts=message_ts,
        approvers=None,
        grant_state={},
    )
    return request, replace(audit, at=granted_at)


NEAR_SECONDS = 3600  # start-up seeding: grants ending within this are written last (see measure_startup)
SEED_CHUNK = 100_000  # rows per seeding transaction: a million at once would take gigabytes here


async def seed(db: Path, grants: list) -> float:
    """Write the grants in one transaction; returns the seconds it took."""
    started = time.perf_counter()
    async with await Store.open(db) as store:
        await RequestRepo(store).create_many(grants)
    return time.perf_counter() - started


async def measure_lateness(args: argparse.Namespace, tmp: Path) -> dict:
    """Seed, start the bot, wait for every ending grant's revoke, and compute lateness."""
    rng = random.Random(7)
    emu = build_emulator()
    async with TimedReceiver(secret=WEBHOOK_SECRET) as receiver, emu:
        channel = emu.workspace.channels[APPROVAL_CHANNEL]
        now = datetime.now(UTC)
        window_start = now + timedelta(seconds=args.lead)
        grants, ending = [], {}
        for i in range(args.grants):
            if i < args.ending:
                expires = window_start + timedelta(seconds=rng.uniform(0, args.window))
                ts = emu.workspace.post_message(channel, text=f"grant {i}", blocks=[], attachments=[]).ts
            else:
                expires = now + timedelta(hours=1) + timedelta(seconds=rng.uniform(0, 23 * 3600))
                ts = f"1700000000.{i:06d}"
            request, audit = live_grant(i, expires, now, ts, "late-")
            grants.append((request, audit))
            if i < args.ending:
                ending[request.id] = request
        db = tmp / "lateness.db"
        seed_seconds = await seed(db, grants)
        del grants
        spec = BotSpec(
            "jitbot",
            emu.api_url,
            emu.bot_token,
            emu.app_token,
            config=write_flows(tmp, receiver.url),
            db=db,
            log=tmp / "lateness.log",
            profile=args.profile,
        )
        bot = await start_bot(spec)
        here_cpu, began = cpu_seconds(), time.perf_counter()
        try:
            if datetime.now(UTC) > window_start:
                print(
                    f"warning: the bot was ready after the first grant ended; raise --lead "
                    f"(start-up took {bot.ready['start_seconds']:.1f} s)",
                    file=sys.stderr,
                )
            deadline = (window_start - datetime.now(UTC)).total_seconds() + args.window + args.drain
            try:
                await receiver.wait_for(args.ending, "revoke", timeout=max(1.0, deadline))
            except TimeoutError:
                pass  # reported below as missing revocations
            holders = sorted({r.requester for r in ending.values()})
            try:
                # Stop only once the bot is idle (messages edited, DMs sent): stopping cancels work in flight.
                await emu.wait_for(
                    lambda: all(
                        "Access ended" in emu.message(APPROVAL_CHANNEL, r.message_ts).plain for r in ending.values()
                    ),
                    timeout=args.drain,
                )
                await emu.wait_for(
                    lambda: sum(1 for h in holders for m in emu.dms_to(h) if "has expired" in m.plain) >= len(ending),
                    timeout=args.drain,
                )
            except AssertionError:
                pass  # reported below as messages not updated
        finally:
            slack_side_cpu, wall = cpu_seconds() - here_cpu, time.perf_counter() - began
            final = await bot.stop()

    lateness, edited, missing, stale = [], [], [], 0
    for request_id, request in ending.items():
        arrived = receiver.arrivals.get(f"{request_id}:revoke")
        if arrived is None:
            missing.append(request_id)
            continue
        lateness.append(arrived - request.expires_at.timestamp())
        message = emu.message(APPROVAL_CHANNEL, request.message_ts)
        if "Access ended" in message.plain and message.history:
            edited.append(message.history[-1].replaced_at.timestamp() - request.expires_at.timestamp())
        else:
            stale += 1
    wrongly_revoked = [d for d in receiver.accepted("revoke") if d.body["request_id"] not in ending]
    return {
        "lateness": lateness,
        "edited": edited,
        "missing": missing,
        "messages_not_updated": stale,
        "early": sum(1 for x in lateness if x < 0),
        "wrongly_revoked": len(wrongly_revoked),
        "seed_seconds": seed_seconds,
        "start_seconds": bot.ready["start_seconds"],
        "armed": bot.ready["armed"],
        "cpu_seconds": final.get("cpu_seconds"),
        "slack_side_cpu_seconds": slack_side_cpu,
        "wall_seconds": wall,
        "log_trouble": log_trouble(tmp / "lateness.log"),
    }


async def measure_startup(args: argparse.Namespace, tmp: Path) -> dict:
    """Start the bot on an empty database, then on one with `--startup-grants` live grants."""
    emu = build_emulator()
    results: dict = {}
    async with TimedReceiver(secret=WEBHOOK_SECRET) as receiver, emu:
        config = write_flows(tmp, receiver.url)
        rng = random.Random(11)
        # Ends spread over the next day, as live grants would be: a few hundred per 100,000 fall
        # inside the scheduler's arming horizon, the rest wait in the database. Seeding a million
        # takes minutes, so the grants ending within the first hour are written last, with their
        # ends counted from the moment they are written: none is overdue when the bot starts
        # (overdue ones would be revoked inside start(), which is recovery, not start-up).
        offsets = [120 + rng.uniform(0, 86_400) for _ in range(args.startup_grants)]
        full_db = tmp / "startup.db"
        results["seed_seconds"] = 0.0
        for near in (False, True):
            chosen = [i for i, offset in enumerate(offsets) if (offset < NEAR_SECONDS) == near]
            for start in range(0, len(chosen), SEED_CHUNK):
                now = datetime.now(UTC)
                chunk = [
                    live_grant(i, now + timedelta(seconds=offsets[i]), now, f"1700000000.{i:06d}", "boot-")
                    for i in chosen[start : start + SEED_CHUNK]
                ]
                results["seed_seconds"] += await seed(full_db, chunk)
        for name, db in (("empty", tmp / "empty.db"), ("full", full_db)):
            spec = BotSpec(
                "jitbot",
                emu.api_url,
                emu.bot_token,
                emu.app_token,
                config=config,
                db=db,
                log=tmp / f"startup-{name}.log",
                profile_start=args.profile_start if name == "full" else None,
            )
            bot = await start_bot(spec, timeout=120)
            await bot.stop()
            results[name] = bot.ready
        results["log_trouble"] = log_trouble(tmp / "startup-full.log")
    return results


def report(args: argparse.Namespace, lateness: dict | None, startup: dict | None, elapsed: float) -> dict:
    """Everything measured, as data (and the Figure objects for the table under '_figures')."""
    out: dict = {
        "bench": "revocation",
        "machine": machine(),
        "seconds": round(elapsed, 1),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "profile", "profile_start")},
    }
    figures: list[Figure] = []
    if lateness is not None:
        late = lateness["lateness"]
        figures.append(
            Figure(
                f"revocation lateness ({args.ending:,} of {args.grants:,} end within {args.window:g} s)",
                late,
                "p99 < 50 ms" if args.window else "p99 < 2 s",
                percentile(late, 99) < (LATENESS_TARGET_S if args.window else SAME_INSTANT_TARGET_S),
            )
        )
        figures.append(Figure("  … channel message shows it ended", lateness["edited"], "(reference)"))
        out["lateness"] = {k: v for k, v in lateness.items() if k not in ("lateness", "edited")}
        out["lateness"].update(
            {
                "max_seconds": max(late, default=None),
                "missing": len(lateness["missing"]),
                "revoked": len(late),
                "within_2s": sum(1 for x in late if x <= ON_TIME_MAX_S),
                "log_trouble_count": len(lateness["log_trouble"]),
                "log_trouble": lateness["log_trouble"][:20],
            }
        )
    if startup is not None:
        full, empty = startup["full"], startup["empty"]
        out["startup"] = {
            "grants": args.startup_grants,
            "seed_seconds": startup["seed_seconds"],
            "start_seconds": full["start_seconds"],
            "start_cpu_seconds": full["start_cpu_seconds"],
            "armed": full["armed"],
            "rss_mb": full["rss_mb"],
            "peak_rss_mb": full["peak_rss_mb"],
            "empty_start_seconds": empty["start_seconds"],
            "empty_rss_mb": empty["rss_mb"],
            "rearm_meets": full["start_seconds"] < REARM_TARGET_S,
            "rss_meets": full["peak_rss_mb"] < RSS_TARGET_MB,
            "log_trouble_count": len(startup["log_trouble"]),
            "log_trouble": startup["log_trouble"][:20],
        }
    out["figures"] = [f.to_json() for f in figures]
    out["_figures"] = figures
    return out


def print_report(result: dict) -> None:
    """Readable tables."""
    m = result["machine"]
    notes = []
    late = result.get("lateness")
    if late is not None:
        worst = late["max_seconds"]
        notes += [
            f"max lateness {worst:.3f} s; within 2 s of the end (docs/guarantees.md): {late['within_2s']:,} of "
            f"{late['revoked'] + late['missing']:,}  "
            f"{'meets' if worst <= ON_TIME_MAX_S and not late['missing'] else 'MISSES'}"
            if worst is not None
            else "no revocation arrived",
            f"never revoked: {late['missing']}; revoked early: {late['early']}; revoked but not due: "
            f"{late['wrongly_revoked']}; channel messages not updated: {late['messages_not_updated']}",
            f"seeding {late['seed_seconds']:.1f} s; bot start {late['start_seconds']:.2f} s with "
            f"{late['armed']} timers armed; bot log warnings/errors: {late['log_trouble_count']}",
            f"CPU while the bot ran ({late['wall_seconds']:.0f} s): bot {late['cpu_seconds']:.1f} s, "
            f"emulator and receiver (this process) {late['slack_side_cpu_seconds']:.1f} s",
        ]
    title = f"jitbot revocation — {m['date']}, {m['cpus']} CPUs (load {m['load_before']}), Python {m['python']}"
    if result["_figures"]:
        print_figures(title, result["_figures"], notes)
    else:
        print(title)
    s = result.get("startup")
    if s is not None:
        print()
        print(f"start-up with {s['grants']:,} live grants in the database (seeded in {s['seed_seconds']:.1f} s)")
        rows = [
            (
                "Runtime.start() → return (re-armed, connected)",
                f"{s['start_seconds']:.2f} s",
                "< 5 s",
                s["rearm_meets"],
            ),
            ("  CPU spent in start()", f"{s['start_cpu_seconds']:.2f} s", "", None),
            ("  timers armed (within the 10 min horizon)", f"{s['armed']:,}", "", None),
            ("resident memory after start (VmRSS)", f"{s['rss_mb']:.0f} MB", "", None),
            ("peak resident memory (VmHWM)", f"{s['peak_rss_mb']:.0f} MB", "< 200 MB", s["rss_meets"]),
            (
                "same bot, empty database: start / RSS",
                f"{s['empty_start_seconds']:.2f} s / {s['empty_rss_mb']:.0f} MB",
                "(reference)",
                None,
            ),
        ]
        for name, value, target, meets in rows:
            print(f"{name:<50} {value:>16}  {target:<12} {'' if meets is None else ('meets' if meets else 'MISSES')}")
        if s["log_trouble"]:
            print(f"bot log warnings/errors at start-up: {s['log_trouble_count']}, e.g. {s['log_trouble'][0][:200]}")
    print(f"took {result['seconds']:.1f} s")


async def run(args: argparse.Namespace) -> tuple[dict | None, dict | None]:
    """Both measurements, each against its own emulator and database."""
    with tempfile.TemporaryDirectory(prefix="jitbot-bench-") as tmp:
        lateness = None if args.skip_lateness else await measure_lateness(args, Path(tmp))
        startup = None if args.skip_startup else await measure_startup(args, Path(tmp))
    return lateness, startup


def main() -> int:
    """Parse options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=10_000, help="live grants for the lateness run")
    parser.add_argument("--ending", type=int, default=1_000, help="how many of them end within the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which those end (0: all at once)")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds from seeding to the window (bot start)")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds to wait for stragglers after the window")
    parser.add_argument("--startup-grants", type=int, default=100_000, help="live grants for the start-up run")
    parser.add_argument("--skip-lateness", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    parser.add_argument("--profile", type=Path, help="cProfile the bot during the lateness run into this file")
    parser.add_argument("--profile-start", type=Path, help="cProfile the bot's start-up with the full database")
    args = parser.parse_args()
    started = time.perf_counter()
    lateness, startup = asyncio.run(run(args))
    result = report(args, lateness, startup, time.perf_counter() - started)
    figures = result.pop("_figures")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_report({**result, "_figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
