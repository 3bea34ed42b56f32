"""Replicas: approvals per second and Approve → strategy p99 for 1 and for 3 `bot.py`-built bots on one
PostgreSQL, in one run (target: 3 replicas ≥ 2.5× the approvals per second of 1 at the same p99).

Each bot runs in its own process (bench/bot_host.py, the production Runtime) with its own Socket Mode
connection; the local Slack spreads envelopes over them as Slack does. PostgreSQL is started from the
distribution's binaries (as the tests do). Each round: `--users` people open and submit requests,
then as many approvers click Approve at the same moment; a round's throughput is its approvals over
the time from the first click to the last grant POST. Prints the figures; never asserts a timing.
On a machine with fewer cores than replicas + PostgreSQL + the emulator, the replicas compete for
the same CPUs and the ratio says so; it cannot show what separate hosts would.

    .venv/bin/python bench/replicas.py [--users 50] [--rounds 3] [--warmup 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from common import (
    WEBHOOK_SECRET,
    BotSpec,
    Figure,
    TimedReceiver,
    machine,
    percentile,
    print_figures,
    start_bot,
    write_flows,
)
from latency import approve_all, build_emulator, open_forms, submit_forms

from tests.postgres import PostgresServer, free_port, postgres_bin_dir

TARGET_RATIO = 2.5


async def measure(replicas: int, server: PostgresServer, args: argparse.Namespace, tmp: Path) -> dict:
    """Start `replicas` bots on a fresh database; run the rounds; approvals/s and click → grant latencies."""
    per_round = 2 * args.users
    people = [f"U_BENCH{i:05d}" for i in range(per_round * (args.warmup + args.rounds))]
    emu = build_emulator(people)
    dsn = server.dsn(server.create_database())
    latencies: list[float] = []
    rates: list[float] = []
    problems: list[str] = []
    directory = tmp / f"r{replicas}"
    directory.mkdir()
    async with TimedReceiver(secret=WEBHOOK_SECRET) as receiver, emu:
        config = write_flows(directory, receiver.url)
        bots = []
        try:
            for n in range(replicas):
                spec = BotSpec(
                    "jitbot",
                    emu.api_url,
                    emu.bot_token,
                    emu.app_token,
                    config=config,
                    db=dsn,  # type: ignore[arg-type]  # bot_host passes it on as JITBOT_DB does
                    log=directory / f"bot-{n}.log",
                )
                bots.append(await start_bot(spec))
            await emu.wait_connected(replicas, timeout=60)
            for round_no in range(args.warmup + args.rounds):
                chunk = people[round_no * per_round : (round_no + 1) * per_round]
                requesters, approvers = chunk[: args.users], chunk[args.users :]
                await open_forms(emu, requesters, problems)
                pending = await submit_forms(emu, requesters, problems)
                # A message can show up before its ts is stored; a click in that instant is refused as not
                # this request's message (no person clicks within milliseconds of a post).
                await asyncio.sleep(0.5)
                seen = set(receiver.arrivals)
                began = time.time()
                round_latencies = await approve_all(emu, receiver, pending, approvers, problems)
                arrivals = [t for key, t in receiver.arrivals.items() if key not in seen and key.endswith(":grant")]
                if round_no >= args.warmup and arrivals:
                    latencies += round_latencies
                    rates.append(len(arrivals) / max(1e-6, max(arrivals) - began))
        finally:
            for bot in bots:
                await bot.stop()
    server.drop_database(dsn.rsplit("/", 1)[1])
    return {"replicas": replicas, "latencies": latencies, "rates": rates, "problems": problems}


async def run(args: argparse.Namespace) -> dict:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed: apt-get install -y postgresql")
    with tempfile.TemporaryDirectory(prefix="jitbot-bench-replicas-") as tmp:
        tmp = os.environ.get("JITBOT_BENCH_KEEP") or tmp
        root = Path(tempfile.mkdtemp(prefix="jitbot-pg-"))
        server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port()).start()
        try:
            one = await measure(1, server, args, Path(tmp))
            three = await measure(3, server, args, Path(tmp))
        finally:
            server.stop()
    return {"machine": machine(), "one": one, "three": three}


def rounds(measured: dict) -> str:
    """Each measured round's approvals per second."""
    return ", ".join(f"{r:.1f}" for r in measured["rates"])


def report(result: dict) -> None:
    one, three = result["one"], result["three"]
    rate1 = sum(one["rates"]) / max(1, len(one["rates"]))
    rate3 = sum(three["rates"]) / max(1, len(three["rates"]))
    ratio = rate3 / rate1 if rate1 else float("nan")
    figures = [
        Figure("Approve → strategy called, 1 replica", one["latencies"]),
        Figure("Approve → strategy called, 3 replicas", three["latencies"]),
    ]
    print_figures(
        "Replicas on PostgreSQL: a burst of approvals, 1 bot vs 3",
        figures,
        [
            f"approvals per second, 1 replica:  {rate1:7.1f}  (rounds: {rounds(one)})",
            f"approvals per second, 3 replicas: {rate3:7.1f}  (rounds: {rounds(three)})",
            f"ratio 3/1: {ratio:.2f}× (target ≥ {TARGET_RATIO}× at the same p99) "
            f"{'meets' if ratio >= TARGET_RATIO else 'MISSES'}",
            f"p99 1 replica {percentile(one['latencies'], 99) * 1000:.0f} ms, "
            f"3 replicas {percentile(three['latencies'], 99) * 1000:.0f} ms",
            f"cores on this machine: {os.cpu_count()} (3 bots + PostgreSQL + the emulator share them)",
            *[f"problem: {p}" for p in one["problems"] + three["problems"]],
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        report(result)


if __name__ == "__main__":
    main()
