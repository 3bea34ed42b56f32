"""The floor under the bot's CPU per approval: what the outside calls an approval must make cost the bot alone.

Run: .venv/bin/python bench/call_floor.py [--approvals 50] [--rounds 10] [--json]

An approval makes four Slack Web API calls: `users.info` for the clicker and for the requester (read
fresh at the click: the fail-closed check), `chat.update` of the request's channel message and
`chat.postMessage` of the requester's DM. It also makes its strategy's call, here the webhook
strategy's signed POST, as in bench/latency.py. This script makes exactly those calls, the way the
bot makes them:
- on the bot's event loop (`core.event_loop`);
- through the bot's Slack client (`runtime.slack_client`) and the webhook strategy itself;
- with the real message and DM blocks;
- `--approvals` at a time, like a burst.

The Slack emulator and the webhook receiver run in another process, so this process's CPU is the
bot side of those calls and nothing else. Each call kind is measured in a phase of its own, and
includes building the message's blocks, as the bot does before each call. The sum per approval is a
floor under bench/latency.py's "bot CPU per approval": it has no Socket Mode envelope, no Bolt
dispatch, no database, no log line, no metrics. Nor does it count the one `conversations.open` the bot
makes the first time it DMs a person (it then keeps the DM channel; here the DM goes to the user's id)
or an App Home refresh (only for people who opened it). Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import SECRET_ENV, WEBHOOK_SECRET, bench_env, machine, write_flows

from core import event_loop
from core.config import load_config
from core.models import AccessRequest, RequestStatus, Subject
from core.strategy import GrantContext
from handlers import access_blocks
from handlers.metrics import PrometheusMetrics
from runtime import slack_client
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

CPU_PER_APPROVAL_TARGET_MS = 2.0
# The calls of one approval, with how many of each.
PER_APPROVAL = {"users.info": 2, "chat.update": 1, "chat.postMessage (DM)": 1, "webhook grant": 1}
CHANNEL = "C_BENCH"


def cpu() -> float:
    """This process's CPU seconds (user + system) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ── the other process: a Slack emulator and a webhook receiver ────────────────────────────────────


async def serve(people: int) -> None:
    """Start the emulator and the receiver, print their addresses as one JSON line, run until stdin closes."""
    from sandbox.slack import SlackEmulator
    from tests.fakes.webhook_receiver import WebhookReceiver

    slack = SlackEmulator()
    for n in range(people):
        slack.add_user(f"U{n:04d}", email=f"user{n}@example.com", name=f"user{n}", real_name=f"User {n}")
    slack.add_channel(CHANNEL, name="approvals")
    await slack.start()
    receiver = WebhookReceiver(secret=WEBHOOK_SECRET)
    await receiver.start()
    print(json.dumps({"api_url": slack.api_url, "bot_token": slack.bot_token, "hook_url": receiver.url}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await receiver.close()
    await slack.stop()


# ── this process: the bot's side of the calls ─────────────────────────────────────────────────────


async def phase(calls: list[Callable[[], Awaitable[Any]]], at_once: int) -> float:
    """Make `calls` `at_once` at a time; return this process's CPU seconds per call."""
    before = cpu()
    for start in range(0, len(calls), at_once):
        await asyncio.gather(*(call() for call in calls[start : start + at_once]))
    return (cpu() - before) / len(calls)


async def measure(args: argparse.Namespace, api_url: str, token: str, hook_url: str) -> dict[str, float]:
    """CPU microseconds per call of each kind, over `args.rounds` rounds of `args.approvals` approvals."""
    with tempfile.TemporaryDirectory(prefix="jitbot-floor-") as tmp:
        config = load_config(
            write_flows(Path(tmp), hook_url),
            strategy_types=STRATEGY_TYPES,
            integration_types=INTEGRATION_TYPES,
            resolve_secrets=True,
        )
    flow = config.flows[0]
    target = flow.targets[0]
    assert flow.strategy is not None
    strategy = STRATEGY_TYPES[flow.strategy.type](flow.strategy, integrations={}, hooks=None)
    await strategy.open()
    client = slack_client(token, api_url, PrometheusMetrics())
    now = datetime.now(UTC)
    spent: dict[str, list[float]] = {name: [] for name in PER_APPROVAL}
    n = args.approvals
    posted: dict[str, str] = {}

    async def post(request: AccessRequest) -> None:  # untimed: the message the edit changes
        text, blocks = access_blocks.message(request, flow, target.label)
        response = await client.chat_postMessage(channel=CHANNEL, text=text, blocks=blocks)
        posted[request.id] = response["ts"]

    async def update(request: AccessRequest) -> None:
        text, blocks = access_blocks.message(request, flow, target.label)
        await client.chat_update(channel=CHANNEL, ts=posted[request.id], text=text, blocks=blocks)

    async def dm(request: AccessRequest) -> None:
        text = access_blocks.dm_text(request, "granted", target.label)
        blocks = access_blocks.dm_blocks(request, "granted", text)
        await client.chat_postMessage(channel=request.requester, text=text, blocks=blocks)

    async def grant(request: AccessRequest) -> None:
        subject = Subject(request.requester, request.requester_email, request.requester_email)
        await strategy.grant(
            GrantContext(request.id, flow.name, target, subject, request.fields, now, request.expires_at)
        )

    try:
        for round_no in range(args.rounds + 1):  # the first round warms up and is not counted
            requests = [
                AccessRequest(
                    id=f"r{round_no:02d}{i:04d}",
                    flow=flow.name,
                    target=target.name,
                    requester=f"U{i:04d}",
                    requester_email=f"user{i}@example.com",
                    created_at=now,
                    duration_seconds=3600,
                    status=RequestStatus.GRANTED,
                    fields={"reason": "deploy hotfix for INC-1234", "duration": "1h"},
                    approval_channel=CHANNEL,
                    decided_by=f"U{(i + 1) % n:04d}",
                    decided_at=now,
                    granted_at=now,
                    expires_at=now + timedelta(hours=1),
                )
                for i in range(n)
            ]
            await phase([lambda r=r: post(r) for r in requests], n)

            figures = {
                "users.info": await phase(
                    [
                        lambda who=who: client.users_info(user=who)
                        for r in requests
                        for who in (r.requester, r.decided_by or r.requester)
                    ],
                    2 * n,
                ),
                "chat.update": await phase([lambda r=r: update(r) for r in requests], n),
                "chat.postMessage (DM)": await phase([lambda r=r: dm(r) for r in requests], n),
                "webhook grant": await phase([lambda r=r: grant(r) for r in requests], n),
            }
            if round_no:
                for name, seconds in figures.items():
                    spent[name].append(seconds)
    finally:
        await strategy.aclose()
        if client.session is not None:
            await client.session.close()
    return {name: 1e6 * sum(values) / len(values) for name, values in spent.items()}


def report(per_call: dict[str, float], args: argparse.Namespace, took: float) -> dict[str, Any]:
    """The figures: CPU per call, and the sum over one approval's calls against the target."""
    floor_us = sum(per_call[name] * count for name, count in PER_APPROVAL.items())
    return {
        "machine": machine(),
        "approvals_at_once": args.approvals,
        "rounds": args.rounds,
        "cpu_us_per_call": per_call,
        "calls_per_approval": PER_APPROVAL,
        "floor_ms_per_approval": floor_us / 1000,
        "target_ms": CPU_PER_APPROVAL_TARGET_MS,
        "took_seconds": took,
    }


def print_report(result: dict[str, Any]) -> None:
    """The figures as a small table."""
    m = result["machine"]
    print(
        f"jitbot call floor — the outside calls of one approval, {result['approvals_at_once']} at a time, "
        f"{result['rounds']} rounds; {m['date']}, {m['cpus']} CPUs (load {m['load_before']}), Python {m['python']}"
    )
    print(f"{'call (bot side only)':<26}{'per call':>12}{'× per approval':>16}{'per approval':>15}")
    for name, count in result["calls_per_approval"].items():
        us = result["cpu_us_per_call"][name]
        print(f"{name:<26}{us:>9.0f} µs{count:>16}{us * count / 1000:>12.2f} ms")
    floor = result["floor_ms_per_approval"]
    target = result["target_ms"]
    print(
        f"floor: {floor:.2f} ms of bot CPU per approval for these calls alone, {100 * floor / target:.0f}% of the "
        f"{target:.0f} ms target (bench/latency.py's figure adds Socket Mode, Bolt, the database and the logs)"
    )
    print(f"took {result['took_seconds']:.1f} s")


def main() -> int:
    """Start the other process, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--approvals", type=int, default=50, help="approvals at once (a burst)")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (after one warm-up round)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the other process
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.approvals))
        return 0
    started = time.perf_counter()
    env = bench_env()
    os.environ[SECRET_ENV] = env[SECRET_ENV]  # the flows file reads the webhook secret from it
    other = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--approvals", str(args.approvals)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdin is not None
        where = json.loads(other.stdout.readline())
        per_call = event_loop.run(measure(args, where["api_url"], where["bot_token"], where["hook_url"]))
    finally:
        if other.stdin is not None:
            other.stdin.close()
        other.wait(timeout=30)
    result = report(per_call, args, time.perf_counter() - started)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
