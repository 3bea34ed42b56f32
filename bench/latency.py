"""Slack-facing latency of jitbot with 50 users at once, through the emulator over the real WebSocket.

Run: .venv/bin/python bench/latency.py [--users 50] [--rounds 4] [--warmup 1] [--serial 20] [--in-process] [--json]
                                      [--transport NAME] (another httpx transport under the webhook strategy)

Each round, every user of the round does, all at the same moment per step:
  1. `/sym`                 → envelope→ack latency, and `/sym` → the emulator receiving `views.open`;
  2. submits the form       → envelope→ack latency (the ack waits for the identity check, by design);
  3. a second person clicks Approve → envelope→ack latency, and click → the webhook receiver getting the
     grant POST ("strategy called").
Then the same `/sym` step is run against a bare Bolt app (ack + `views.open` of a trivial modal) on a
second emulator, so the ratio jitbot / bare comes from the same run. Every round uses fresh people,
so caches (users.info, DM channels) start cold as they would for real traffic. Last, `--serial`
people do `/sym` and get approved one at a time: the uncontended floor of the same figures.

The bot runs in its own process, as in production, so the emulator's work is not billed to it;
`--in-process` runs it in this event loop instead. Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot_host import TRANSPORTS
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

from sandbox.slack import SlackEmulator

SYM_TARGET_S, APPROVE_TARGET_S, SERIAL_APPROVE_TARGET_S, RATIO_TARGET = 0.100, 0.100, 0.015, 1.3
ACK_RATIO_TARGET = 1.3  # jitbot's ack p99 under the burst against the bare Bolt app's in the same run
CPU_PER_APPROVAL_TARGET_MS = 2.0  # what 50 clicks reaching the strategy within 100 ms p99 needs
WAIT_S = 30.0  # how long a step may take before the bench gives up on it
FORM_VALUES = {"target": "Prod Admin", "field:reason": "bench: investigating INC-1234", "field:duration": "1h"}
_REQUESTER = re.compile(r"<@(U[A-Z0-9_]+)>")


@dataclass
class Samples:
    """Seconds, per figure, from the measured rounds."""

    sym_jitbot: list[float] = field(default_factory=list)
    sym_bare: list[float] = field(default_factory=list)
    approve: list[float] = field(default_factory=list)
    serial_sym_jitbot: list[float] = field(default_factory=list)
    serial_sym_bare: list[float] = field(default_factory=list)
    serial_approve: list[float] = field(default_factory=list)
    serial_acks: list[float] = field(default_factory=list)
    acks: dict[str, list[float]] = field(default_factory=dict)
    bare_acks: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # bot CPU seconds spent in each step, summed
    cpu_main: dict[str, float] = field(default_factory=dict)  # the part of it on the bot's event-loop thread
    cpu_here: dict[str, float] = field(default_factory=dict)  # the same for the Slack side (this process)
    wall: dict[str, float] = field(default_factory=dict)  # wall seconds of each step, summed
    approve_calls: dict[str, int] = field(default_factory=dict)  # Web API calls during the Approve steps, by method
    people: int = 0  # requests made in the measured rounds
    problems: list[str] = field(default_factory=list)


def build_emulator(users: Iterable[str]) -> SlackEmulator:
    """An emulator with every bench person (with an email), the approval and alerts channels."""
    emu = SlackEmulator()
    for user in users:
        emu.add_user(user, email=f"{user.lower()}@example.com", real_name=f"Bench {user}")
    emu.add_channel(APPROVAL_CHANNEL, name="approvals")
    emu.add_channel(ALERTS_CHANNEL, name="alerts")
    return emu


async def at_once(steps: Iterable[Awaitable[object]], problems: list[str], what: str) -> None:
    """Run every person's step concurrently; a failure is recorded, not raised, so the run finishes."""
    for outcome in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(outcome, BaseException):
            problems.append(f"{what}: {type(outcome).__name__}: {outcome}")


async def open_forms(emu: SlackEmulator, users: list[str], problems: list[str]) -> list[float]:
    """Every user runs `/sym` at once; seconds from sending each envelope to the emulator getting views.open."""
    sent: dict[str, float] = {}

    async def run_command(user: str) -> None:
        began = time.time()
        result = await emu.slash_command(user=user, command="/sym")
        sent[result.trigger_id] = began

    await at_once((run_command(u) for u in users), problems, "/sym")

    def all_opened() -> dict | None:
        calls = {c.args.get("trigger_id"): c for c in emu.calls("views.open")}
        return calls if all(t in calls for t in sent) else None

    calls = await emu.wait_for(all_opened, WAIT_S, description=f"views.open for {len(sent)} triggers")
    for trigger in sent:
        if not calls[trigger].ok:
            problems.append(f"views.open failed: {calls[trigger].response.get('error')}")
    # Call.time is stamped by the emulator's clock (UTC wall clock) when the request arrives.
    return [calls[t].time.timestamp() - began for t, began in sent.items() if calls[t].ok]


async def submit_forms(emu: SlackEmulator, users: list[str], problems: list[str]) -> dict[str, object]:
    """Every user submits their open form at once; returns each user's new approval-channel message."""
    already = len(emu.messages_in(APPROVAL_CHANNEL))
    dms = {u: len(emu.dms_to(u)) for u in users}
    await at_once((emu.submit_view(emu.latest_view(u), FORM_VALUES) for u in users), problems, "submit")
    wanted = set(users)

    def all_posted() -> dict | None:
        posted = {}
        for message in emu.messages_in(APPROVAL_CHANNEL)[already:]:
            match = _REQUESTER.search(message.text or "")
            if match and match.group(1) in wanted and message.buttons:
                posted[match.group(1)] = message
        return posted if len(posted) == len(wanted) else None

    posted = await emu.wait_for(all_posted, WAIT_S, description=f"{len(users)} request messages")
    # Let the step settle (each requester's "submitted" DM), so its tail is not billed to the next step.
    await emu.wait_for(
        lambda: all(len(emu.dms_to(u)) > dms[u] for u in users),
        WAIT_S,
        description=f"a 'submitted' DM to each of {len(users)} requesters",
    )
    return posted


async def approve_all(
    emu: SlackEmulator, receiver: TimedReceiver, pending: dict[str, object], approvers: list[str], problems: list[str]
) -> list[float]:
    """Each request gets Approve from a different person at once; seconds from click to the grant POST."""
    clicked: dict[str, float] = {}

    async def click(message, approver: str) -> None:
        button = next(b for b in message.buttons if b["text"]["text"] == "Approve")
        request_id = button["value"].removeprefix("v1:")
        began = time.time()
        await emu.click(message, text="Approve", user=approver)
        clicked[request_id] = began

    granted_before = len(receiver.accepted("grant"))
    await at_once((click(m, a) for m, a in zip(pending.values(), approvers, strict=False)), problems, "Approve")
    requesters = list(pending)
    try:
        await receiver.wait_for(granted_before + len(clicked), "grant", timeout=WAIT_S)
        # Let the round finish (message edited, DM sent) so the next round starts from a quiet bot.
        await emu.wait_for(
            lambda: all(any("is granted" in m.plain for m in emu.dms_to(u)) for u in requesters),
            WAIT_S,
            description="a 'granted' DM to every requester",
        )
    except (TimeoutError, AssertionError) as error:  # the emulator's WaitTimeout is an AssertionError
        problems.append(f"Approve: the round did not finish: {type(error).__name__}: {error}")
    missing = [rid for rid in clicked if f"{rid}:grant" not in receiver.arrivals]
    problems += [f"Approve: no grant POST for {rid}" for rid in missing]
    return [receiver.arrivals[f"{rid}:grant"] - began for rid, began in clicked.items() if rid not in missing]


class CpuMeter:
    """CPU seconds the bot process spends during each step (the whole step, until it settled)."""

    def __init__(self, jitbot_pid: int | None, bare_pid: int | None, profile_step: str | None = None) -> None:
        self.pids = {False: jitbot_pid, True: bare_pid}
        self.profile_step = profile_step
        self.spent: dict[str, float] = {}
        self.spent_main: dict[str, float] = {}  # the bot's main thread (its event loop) only
        self.spent_here: dict[str, float] = {}  # this process: the emulator, receiver and simulated people
        self.wall: dict[str, float] = {}

    async def step(self, name: str, work: Awaitable, *, bare: bool = False):
        pid = self.pids[bare]
        if pid is None:  # in-process: the emulator's CPU would be mixed in
            return await work
        before, main_before = cpu_seconds(pid), cpu_seconds(pid, main_thread=True)
        profiled = name == self.profile_step and not bare
        if profiled:
            os.kill(pid, signal.SIGUSR1)
        ours_before, began = cpu_seconds(), time.perf_counter()
        result = await work
        if profiled:
            os.kill(pid, signal.SIGUSR2)
        self.spent[name] = cpu_seconds(pid) - before
        self.spent_main[name] = cpu_seconds(pid, main_thread=True) - main_before
        self.spent_here[name] = cpu_seconds() - ours_before
        self.wall[name] = time.perf_counter() - began
        return result


def ack_kind(result) -> str:
    """slash_commands, view_submission or block_actions."""
    return result.type if result.type != "interactive" else result.payload.get("type", "interactive")


async def burst_round(env: Setup, requesters: list[str], approvers: list[str], samples: Samples | None) -> None:
    """One round with every person acting at the same moment per step; `samples=None` for warm-up."""
    problems = samples.problems if samples is not None else []
    first_jit, first_bare = len(env.jit_emu.envelopes), len(env.bare_emu.envelopes)
    meter = CpuMeter(env.jitbot_pid, env.bare_pid, env.profile_step)
    sym = await meter.step("/sym", open_forms(env.jit_emu, requesters, problems))
    pending = await meter.step("submit", submit_forms(env.jit_emu, requesters, problems))
    calls_before = len(env.jit_emu.calls())
    approve = await meter.step("Approve", approve_all(env.jit_emu, env.receiver, pending, approvers, problems))
    approve_calls = env.jit_emu.calls()[calls_before:]
    sym_bare = await meter.step("/sym (bare)", open_forms(env.bare_emu, requesters, problems), bare=True)
    if samples is None:
        return
    samples.people += len(requesters)
    for call in approve_calls:
        samples.approve_calls[call.method] = samples.approve_calls.get(call.method, 0) + 1
    for total, spent in (
        (samples.cpu, meter.spent),
        (samples.cpu_main, meter.spent_main),
        (samples.cpu_here, meter.spent_here),
        (samples.wall, meter.wall),
    ):
        for name, seconds in spent.items():
            total[name] = total.get(name, 0.0) + seconds
    samples.sym_jitbot += sym
    samples.sym_bare += sym_bare
    samples.approve += approve
    for result in env.jit_emu.envelopes[first_jit:]:
        if result.latency is not None:
            samples.acks.setdefault(ack_kind(result), []).append(result.latency)
    samples.bare_acks += [r.latency for r in env.bare_emu.envelopes[first_bare:] if r.latency]


async def serial_round(env: Setup, requesters: list[str], approvers: list[str], samples: Samples) -> None:
    """The uncontended floor: each `/sym` and each Approve click alone, the next one after it finished."""
    first = len(env.jit_emu.envelopes)
    for user in requesters:
        samples.serial_sym_jitbot += await open_forms(env.jit_emu, [user], samples.problems)
        samples.serial_sym_bare += await open_forms(env.bare_emu, [user], samples.problems)
    pending = {}
    for user in requesters:
        pending.update(await submit_forms(env.jit_emu, [user], samples.problems))
    for (user, message), approver in zip(pending.items(), approvers, strict=False):
        samples.serial_approve += await approve_all(
            env.jit_emu, env.receiver, {user: message}, [approver], samples.problems
        )
    samples.serial_acks += [r.latency for r in env.jit_emu.envelopes[first:] if r.latency is not None]


@dataclass
class Setup:
    """The two emulators, the receiver and the pids of the two bots (None when in this process)."""

    jit_emu: SlackEmulator
    bare_emu: SlackEmulator
    receiver: TimedReceiver
    jitbot_pid: int | None
    bare_pid: int | None
    profile_step: str | None = None  # the one step the jitbot process profiles (--profile-step)


async def run(args: argparse.Namespace) -> dict:
    """Start both emulators, the receiver and both bots; run the rounds; return the figures."""
    per_round = 2 * args.users
    people = [f"U_BENCH{i:05d}" for i in range(per_round * (args.warmup + args.rounds) + 2 * args.serial)]
    samples = Samples()
    jit_emu, bare_emu = build_emulator(people), build_emulator(people)
    with tempfile.TemporaryDirectory(prefix="jitbot-bench-") as tmp:
        tmp_path = Path(tmp)
        async with TimedReceiver(secret=WEBHOOK_SECRET) as receiver, jit_emu, bare_emu:
            config = write_flows(tmp_path, receiver.url)
            log = Path(args.log) if args.log else tmp_path / "bot.log"
            jit_spec = BotSpec(
                "jitbot",
                jit_emu.api_url,
                jit_emu.bot_token,
                jit_emu.app_token,
                config=config,
                db=tmp_path / "jitbot.db",
                log=log,
                profile=args.profile,
                profile_on_signal=args.profile_step is not None,
                transport=args.transport,
            )
            bare_spec = BotSpec("bare", bare_emu.api_url, bare_emu.bot_token, bare_emu.app_token, log=log)
            jitbot = await start_bot(jit_spec, in_process=args.in_process)
            bare = await start_bot(bare_spec, in_process=args.in_process)
            # In this process the emulator's CPU would be mixed into the bot's: no per-step CPU then.
            pids = (None, None) if args.in_process else (jitbot.pid, bare.pid)
            env = Setup(jit_emu, bare_emu, receiver, *pids, profile_step=args.profile_step)
            try:
                await jit_emu.wait_connected()
                await bare_emu.wait_connected()
                for round_no in range(args.warmup + args.rounds):
                    chunk = people[round_no * per_round : (round_no + 1) * per_round]
                    await burst_round(
                        env, chunk[: args.users], chunk[args.users :], samples if round_no >= args.warmup else None
                    )
                if args.serial:
                    rest = people[per_round * (args.warmup + args.rounds) :]
                    await serial_round(env, rest[: args.serial], rest[args.serial :], samples)
            finally:
                jit_final, bare_final = await jitbot.stop(), await bare.stop()
            for name, emu in (("jitbot", jit_emu), ("bare", bare_emu)):
                samples.problems += [f"emulator ({name}) saw [{p.kind}] {p.detail}" for p in emu.unexpected_problems()]
            trouble = log_trouble(log)
    return report(args, samples, jitbot.ready, jit_final, bare_final, trouble)


def report(args, samples: Samples, ready: dict, jit_final: dict, bare_final: dict, log_trouble: list[str]) -> dict:
    """Figures, the ratio and the context, as data."""
    all_acks = [x for values in samples.acks.values() for x in values]
    figures = [
        # Judged against the bare Bolt app's acks in the same run (the ratio below), not alone.
        Figure("envelope → ack, jitbot, every envelope", all_acks, "see ratio")
    ]
    for kind in ("slash_commands", "view_submission", "block_actions"):
        values = samples.acks.get(kind, [])
        figures.append(Figure(f"  … {kind}", values, "see ratio"))
    figures += [
        Figure("envelope → ack, bare Bolt (/sym)", samples.bare_acks, "(reference)"),
        Figure(
            "/sym → views.open, jitbot",
            samples.sym_jitbot,
            "p99 < 100 ms",
            percentile(samples.sym_jitbot, 99) < SYM_TARGET_S,
        ),
        Figure("/sym → views.open, bare Bolt", samples.sym_bare, "(reference)"),
        Figure(
            "Approve click → strategy called",
            samples.approve,
            "p99 < 100 ms",
            percentile(samples.approve, 99) < APPROVE_TARGET_S,
        ),
    ]
    if samples.serial_approve:
        figures += [
            Figure("one at a time: envelope → ack, jitbot", samples.serial_acks, "(floor)"),
            Figure("one at a time: /sym → views.open, jitbot", samples.serial_sym_jitbot, "(floor)"),
            Figure("one at a time: /sym → views.open, bare", samples.serial_sym_bare, "(floor)"),
            Figure(
                "one at a time: Approve → strategy called",
                samples.serial_approve,
                "p99 < 15 ms",
                percentile(samples.serial_approve, 99) < SERIAL_APPROVE_TARGET_S,
            ),
        ]
    ratio = {q: percentile(samples.sym_jitbot, q) / percentile(samples.sym_bare, q) for q in (50, 99)}
    bare_ack_p99 = percentile(samples.bare_acks, 99)
    ack_ratio = {
        kind: percentile(values, 99) / bare_ack_p99
        for kind, values in [("every envelope", all_acks), *sorted(samples.acks.items())]
    }
    return {
        "bench": "latency",
        "machine": machine(),
        "settings": {
            "users": args.users,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "bot_process": "this process" if args.in_process else "own process",
            "transport": args.transport or "production's",
        },
        "figures": [f.to_json() for f in figures],
        "_figures": figures,
        "ratio_sym_jitbot_over_bare": {
            "p50": ratio[50],
            "p99": ratio[99],
            "target": f"p99 ≤ {RATIO_TARGET}×",
            "meets": ratio[99] <= RATIO_TARGET,
        },
        "ack_p99_ratio_to_bare": {
            "by_kind": ack_ratio,
            "target": f"≤ {ACK_RATIO_TARGET}×",
            "meets": ack_ratio["every envelope"] <= ACK_RATIO_TARGET,
        },
        "bot": {
            "start_seconds": ready.get("start_seconds"),
            "cpu_seconds": jit_final.get("cpu_seconds"),
            "rss_mb": jit_final.get("rss_mb"),
            "bare_cpu_seconds": bare_final.get("cpu_seconds"),
        },
        "bot_cpu_per_approval": cpu_per_approval(samples),
        "slack_calls_per_approval": {
            method: n / max(1, samples.people) for method, n in sorted(samples.approve_calls.items())
        },
        "bot_cpu_ms_per_request": {
            name: 1000 * seconds / max(1, samples.people) for name, seconds in samples.cpu.items()
        },
        "slack_side_cpu_ms_per_request": {
            name: 1000 * seconds / max(1, samples.people) for name, seconds in samples.cpu_here.items()
        },
        "step_wall_ms_per_round": {
            name: 1000 * seconds / max(1, args.rounds) for name, seconds in samples.wall.items()
        },
        "problems": samples.problems,
        "bot_log_warnings": log_trouble[:20],
        "bot_log_warning_count": len(log_trouble),
    }


def cpu_per_approval(samples: Samples) -> dict:
    """Bot CPU per approval: the bot process's CPU during the Approve steps / approvals (click, checks,
    strategy call, record, message edit, DM); the bare Bolt app's CPU per `/sym` (ack + views.open)
    in the same run is what any Bolt envelope costs on this machine."""
    people = max(1, samples.people)
    approve = samples.cpu.get("Approve")
    main = samples.cpu_main.get("Approve")
    bare = samples.cpu.get("/sym (bare)")
    return {
        "approve_step_ms": None if approve is None else 1000 * approve / people,
        "approve_step_main_thread_ms": None if main is None else 1000 * main / people,
        "target_ms": CPU_PER_APPROVAL_TARGET_MS,
        "meets": None if approve is None else 1000 * approve / people <= CPU_PER_APPROVAL_TARGET_MS,
        "bare_bolt_sym_ms": None if bare is None else 1000 * bare / people,
    }


def cpu_note(cpu: dict) -> list[str]:
    """The CPU-per-approval line under the table (n/a when the bots shared this process)."""
    if cpu["approve_step_ms"] is None:
        return ["bot CPU per approval: n/a (the bots share this process with the emulator)"]
    main = cpu["approve_step_main_thread_ms"]
    return [
        f"bot CPU per approval: {cpu['approve_step_ms']:.2f} ms (target ≤ {cpu['target_ms']:.0f} ms)  "
        f"{'meets' if cpu['meets'] else 'MISSES'} (event-loop thread {main:.2f} ms, "
        f"other threads {cpu['approve_step_ms'] - main:.2f} ms); "
        f"bare Bolt per /sym (ack + views.open): {cpu['bare_bolt_sym_ms']:.2f} ms in the same run",
    ]


def print_report(result: dict, elapsed: float) -> None:
    """The readable table and the notes under it."""
    s, m = result["settings"], result["machine"]
    ratio = result["ratio_sym_jitbot_over_bare"]
    bot = result["bot"]
    acks = result["ack_p99_ratio_to_bare"]
    notes = [
        "envelope → ack p99, jitbot / bare Bolt's /sym acks in the same run: "
        + ", ".join(f"{kind} {value:.2f}×" for kind, value in acks["by_kind"].items())
        + f"   (target {acks['target']})  {'meets' if acks['meets'] else 'MISSES'}",
        f"/sym → views.open ratio jitbot / bare: p50 {ratio['p50']:.2f}×, p99 {ratio['p99']:.2f}×   "
        f"(target p99 ≤ {RATIO_TARGET}×)  {'meets' if ratio['meets'] else 'MISSES'}",
        (
            f"jitbot process: CPU {bot['cpu_seconds']:.1f} s over the run "
            f"(bare Bolt: {bot['bare_cpu_seconds']:.1f} s), "
            f"RSS {bot['rss_mb']:.0f} MB"
            if s["bot_process"] == "own process"
            else "per-process CPU figures: n/a (the bots share this process with the emulator)"
        ),
        *cpu_note(result["bot_cpu_per_approval"]),
        "Slack Web API calls per approval: "
        + (", ".join(f"{m} {n:.2f}" for m, n in result["slack_calls_per_approval"].items()) or "n/a"),
        *(
            ["CPU per request, by step (bot / emulator side), and each step's wall time for all users:"]
            if result["bot_cpu_ms_per_request"]
            else []
        ),
        *(
            f"  {name:<12} {ms:5.1f} ms / {result['slack_side_cpu_ms_per_request'][name]:5.1f} ms   "
            f"step took {result['step_wall_ms_per_round'][name]:6.0f} ms"
            for name, ms in result["bot_cpu_ms_per_request"].items()
        ),
        f"problems: {len(result['problems'])}; bot log warnings/errors: {result['bot_log_warning_count']}",
        *(f"  - {p}" for p in result["problems"][:10]),
        *(f"  - log: {line[:200]}" for line in result["bot_log_warnings"][:5]),
        f"took {elapsed:.1f} s",
    ]
    print_figures(
        f"jitbot latency — {s['users']} users at once, {s['rounds']} measured rounds (+{s['warmup']} warm-up), "
        f"bot in {s['bot_process']}, webhook transport: {s['transport']};\n"
        f"{m['date']}, {m['cpus']} CPUs (load {m['load_before']}), Python {m['python']}",
        result["_figures"],
        notes,
    )


def main() -> int:
    """Parse options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="simulated people acting at once (default 50)")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument(
        "--serial",
        type=int,
        default=20,
        help="then this many people one at a time, for the uncontended floor (default 20; 0: skip)",
    )
    parser.add_argument("--in-process", action="store_true", help="run the bots in this process's event loop")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--log", help="keep the bots' log here (default: a temporary file)")
    parser.add_argument("--profile", type=Path, help="cProfile the jitbot process into this file")
    parser.add_argument(
        "--profile-step",
        choices=("/sym", "submit", "Approve"),
        help="with --profile: profile only this step of the burst rounds (e.g. Approve)",
    )
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        help="put this transport under the webhook strategy's limits (default: production's)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(run(args))
    elapsed = time.perf_counter() - started
    figures = result.pop("_figures")
    if args.json:
        print(json.dumps({**result, "seconds": round(elapsed, 1)}, indent=2, default=str))
    else:
        print_report({**result, "_figures": figures}, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
