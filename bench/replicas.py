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
    cpu_seconds,
    machine,
    percentile,
    print_figures,
    start_bot,
    write_flows,
)
from latency import approve_all, build_emulator, open_forms, submit_forms

from tests.postgres import PostgresServer, free_port, postgres_bin_dir

TARGET_RATIO = 2.5


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started (a backend per pooled connection, the writers)."""
    try:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue  # gone since listed
    return pids


class StepCpu:
    """CPU seconds spent during one step by the bots, PostgreSQL, and this process (the emulator, the
    receiver and the simulated people), and the step's wall time: how much of the machine the step used."""

    def __init__(self, server: PostgresServer, bot_pids: list[int]) -> None:
        self.server, self.bot_pids = server, bot_pids
        self.totals = {"bots": 0.0, "bots_main": 0.0, "postgres": 0.0, "emulator": 0.0, "wall": 0.0}

    def _read(self) -> dict[str, float]:
        def total(pids: list[int], *, main_thread: bool = False) -> float:
            seconds = 0.0
            for pid in pids:
                try:
                    seconds += cpu_seconds(pid, main_thread=main_thread)
                except OSError:
                    continue  # a backend that exited mid-step; its CPU is lost (rare: the pools keep them)
            return seconds

        return {
            "bots": total(self.bot_pids),
            "bots_main": total(self.bot_pids, main_thread=True),
            "postgres": total(server_pids(self.server)),
            "emulator": cpu_seconds(),
            "wall": time.perf_counter(),
        }

    async def measure(self, work):
        """Await `work`, adding what it cost to the totals."""
        before = self._read()
        result = await work
        after = self._read()
        for key in self.totals:
            self.totals[key] += after[key] - before[key]
        return result


async def measure(replicas: int, server: PostgresServer, args: argparse.Namespace, tmp: Path) -> dict:
    """Start `replicas` bots on a fresh database; run the rounds; approvals/s and click → grant latencies."""
    per_round = 2 * args.users
    people = [f"U_BENCH{i:05d}" for i in range(per_round * (args.warmup + args.rounds))]
    emu = build_emulator(people)
    dsn = server.dsn(server.create_database())
    latencies: list[float] = []
    rates: list[float] = []
    approvals = 0
    meter: StepCpu | None = None
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
            meter = StepCpu(server, [bot.pid for bot in bots if bot.pid is not None])
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
                step = approve_all(emu, receiver, pending, approvers, problems)
                if round_no < args.warmup:
                    await step
                    continue
                round_latencies = await meter.measure(step)
                arrivals = [t for key, t in receiver.arrivals.items() if key not in seen and key.endswith(":grant")]
                if arrivals:
                    latencies += round_latencies
                    approvals += len(arrivals)
                    rates.append(len(arrivals) / max(1e-6, max(arrivals) - began))
        finally:
            for bot in bots:
                await bot.stop()
    server.drop_database(dsn.rsplit("/", 1)[1])
    cpu = dict(meter.totals) if meter else {}
    return {
        "replicas": replicas,
        "latencies": latencies,
        "rates": rates,
        "approvals": approvals,
        "cpu_seconds": cpu,
        "problems": problems,
    }


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
    result = {"machine": machine(), "one": one, "three": three}
    return result | {"ceiling": ceiling(result)}


def rounds(measured: dict) -> str:
    """Each measured round's approvals per second."""
    return ", ".join(f"{r:.1f}" for r in measured["rates"])


def cpu_use(measured: dict) -> dict:
    """What one configuration's measured Approve steps cost: CPU ms per approval by part, and cores used."""
    cpu, approvals = measured["cpu_seconds"], max(1, measured["approvals"])
    wall = cpu.get("wall") or float("nan")
    parts = {name: cpu.get(name, 0.0) for name in ("bots", "postgres", "emulator")}
    total = sum(parts.values())
    return {
        "ms_per_approval": {name: 1000 * seconds / approvals for name, seconds in parts.items()}
        | {"bots_event_loop": 1000 * cpu.get("bots_main", 0.0) / approvals, "total": 1000 * total / approvals},
        "cores_used": {name: seconds / wall for name, seconds in parts.items()} | {"total": total / wall},
        "approvals_per_second_of_step": approvals / wall,
    }


def ceiling(result: dict) -> dict:
    """What this machine can physically give: every core busy at the 3-replica run's CPU per approval."""
    one, three = cpu_use(result["one"]), cpu_use(result["three"])
    cores = os.cpu_count() or 1
    per_approval = three["ms_per_approval"]["total"] / 1000
    best = cores / per_approval if per_approval else float("nan")
    return {
        "cores": cores,
        "approvals_per_second": best,
        "ratio": best / one["approvals_per_second_of_step"],
        # Throughput per core used: equal for 1 and 3 when a replica costs nothing extra per approval.
        "per_core_used": {
            "one": one["approvals_per_second_of_step"] / one["cores_used"]["total"],
            "three": three["approvals_per_second_of_step"] / three["cores_used"]["total"],
        },
    }


def cpu_lines(label: str, use: dict) -> list[str]:
    """One configuration's CPU per approval and cores busy, by part."""
    ms, cores = use["ms_per_approval"], use["cores_used"]
    return [
        f"{label}: CPU per approval {ms['total']:.1f} ms = bots {ms['bots']:.1f} "
        f"(event loops {ms['bots_event_loop']:.1f}) + PostgreSQL {ms['postgres']:.1f} "
        f"+ emulator/receiver {ms['emulator']:.1f}; "
        f"cores busy {cores['total']:.2f} = {cores['bots']:.2f} + {cores['postgres']:.2f} + {cores['emulator']:.2f}"
    ]


def report(result: dict) -> None:
    one, three = result["one"], result["three"]
    rate1 = sum(one["rates"]) / max(1, len(one["rates"]))
    rate3 = sum(three["rates"]) / max(1, len(three["rates"]))
    ratio = rate3 / rate1 if rate1 else float("nan")
    limit = ceiling(result)
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
            "Where the CPU goes during the Approve steps (click → every 'granted' DM):",
            *cpu_lines("  1 replica ", cpu_use(one)),
            *cpu_lines("  3 replicas", cpu_use(three)),
            f"  approvals per second per core busy: 1 replica {limit['per_core_used']['one']:.0f}, "
            f"3 replicas {limit['per_core_used']['three']:.0f}",
            f"ceiling on this machine: {limit['cores']} cores / the 3-replica CPU per approval = "
            f"{limit['approvals_per_second']:.0f} approvals/s = {limit['ratio']:.2f}× the 1-replica step rate "
            f"(3 bots + PostgreSQL + the emulator share {limit['cores']} cores; separate hosts would not)",
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
