"""Shared pieces of the bench scripts: figures and tables, the bench flows file, a timing webhook
receiver, and the bot under test (in its own process by default, or in this one)."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aiohttp import web  # noqa: E402

from tests.e2e.flows import ALERTS_CHANNEL, APPROVAL_CHANNEL, db_access_flow, flows_file  # noqa: E402,F401
from tests.fakes.webhook_receiver import WebhookReceiver  # noqa: E402

BOT_HOST = Path(__file__).resolve().with_name("bot_host.py")
WEBHOOK_SECRET = "whsec-bench-0123456789abcdef"
SECRET_ENV = "JITBOT_BENCH_WEBHOOK_SECRET"
# slack_sdk honours proxy variables even for the Socket Mode WebSocket and ignores NO_PROXY.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def write_flows(directory: Path, receiver_url: str) -> Path:
    """The bench flows file: the e2e tests' webhook flow, no approvers restriction (anyone but the requester)."""
    path = directory / "flows.yaml"
    flow = db_access_flow(receiver_url, "30m", "1h", "4h", secret_env=SECRET_ENV, request_timeout="24h")
    path.write_text(flows_file(flow, alerts_channel=ALERTS_CHANNEL))
    return path


def bench_env() -> dict[str, str]:
    """The environment for the bot: no proxies, the webhook secret set."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env[SECRET_ENV] = WEBHOOK_SECRET
    env.setdefault("PYTHONHASHSEED", "0")
    return env


# ── figures ───────────────────────────────────────────────────────────────────────────────────────


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Figure:
    """One measured distribution (in seconds) and the performance target (bench/README.md) it is compared with."""

    name: str
    samples: list[float]
    target: str = ""
    meets: bool | None = None  # None: no target, or not applicable
    unit: str = "ms"

    def stats(self) -> dict[str, float]:
        """n, p50, p99 and max, in the figure's unit."""
        scale = 1000.0 if self.unit == "ms" else 1.0
        return {
            "n": len(self.samples),
            "p50": percentile(self.samples, 50) * scale,
            "p99": percentile(self.samples, 99) * scale,
            "max": max(self.samples, default=float("nan")) * scale,
        }

    def to_json(self) -> dict[str, Any]:
        """Stats, target and verdict as plain data."""
        return {"name": self.name, "unit": self.unit, **self.stats(), "target": self.target, "meets": self.meets}


def verdict(meets: bool | None) -> str:
    """The table's last column."""
    return "" if meets is None else ("meets" if meets else "MISSES")


def print_figures(title: str, figures: Sequence[Figure], notes: Sequence[str] = ()) -> None:
    """A fixed-width table: figure, n, p50, p99, max, target, verdict."""
    width = max([42, *(len(f.name) + 2 for f in figures)])
    print(title)
    print(f"{'figure':<{width}} {'n':>6} {'p50':>9} {'p99':>9} {'max':>9}  {'target':<22} verdict")
    print("-" * (width + 72))
    for figure in figures:
        s = figure.stats()
        unit = figure.unit
        print(
            f"{figure.name:<{width}} {s['n']:>6} {s['p50']:>7.1f}{unit:<2} {s['p99']:>7.1f}{unit:<2} "
            f"{s['max']:>7.1f}{unit:<2}  {figure.target:<22} {verdict(figure.meets)}"
        )
    for note in notes:
        print(note)


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        # Other work on the machine skews latency figures; the 1-minute load average shows it.
        "load_before": round(os.getloadavg()[0], 2),
    }


def rss_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process in MB, from /proc."""
    figures = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                figures[key] = int(value.split()[0]) / 1024
    return {"rss_mb": figures.get("VmRSS", 0.0), "peak_rss_mb": figures.get("VmHWM", 0.0)}


def log_trouble(path: Path) -> list[str]:
    """The warning and error lines of a bot's JSON log."""
    if not path.exists():
        return []
    return [
        line for line in path.read_text().splitlines() if '"level": "error"' in line or '"level": "warning"' in line
    ]


def cpu_seconds(pid: int | str = "self", *, main_thread: bool = False) -> float:
    """User + system CPU seconds a process (or, with `main_thread`, only its main thread: the event
    loop) has used so far (from /proc/PID/stat; 10 ms resolution)."""
    tid = os.getpid() if pid == "self" else pid
    with open(f"/proc/{pid}/task/{tid}/stat" if main_thread else f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ── the strategy's far end ────────────────────────────────────────────────────────────────────────


class TimedReceiver(WebhookReceiver):
    """The test webhook receiver, also noting when each delivery first arrived (wall clock, seconds)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: dict[str, float] = {}  # "<request_id>:<action>" → time.time() at arrival

    async def _handle(self, request: web.Request) -> web.Response:
        # Stamped before the body is read: "the receiver got the POST" is when its headers arrived.
        self.arrivals.setdefault(request.headers.get("X-Jitbot-Delivery", "?"), time.time())
        return await super()._handle(request)


# ── the bot under test ────────────────────────────────────────────────────────────────────────────


@dataclass
class BotSpec:
    """How to start one bot: jitbot's Runtime or a bare Bolt app, against one emulator."""

    kind: str  # "jitbot" or "bare"
    api_url: str
    bot_token: str
    app_token: str
    config: Path | None = None
    db: Path | None = None
    log: Path | None = None
    profile: Path | None = None  # cProfile of the steady state (after start-up)
    profile_on_signal: bool = False  # profile only between SIGUSR1 and SIGUSR2 (one step of a bench)
    profile_start: Path | None = None  # cProfile of start-up
    timers: bool = True
    transport: str | None = None  # a bot_host.TRANSPORTS name; None: the one production uses

    def argv(self) -> list[str]:
        """Command-line arguments for bot_host.py."""
        args = [
            "--kind",
            self.kind,
            "--api-url",
            self.api_url,
            "--bot-token",
            self.bot_token,
            "--app-token",
            self.app_token,
        ]
        for flag, value in (
            ("--config", self.config),
            ("--db", self.db),
            ("--log", self.log),
            ("--profile", self.profile),
            ("--profile-start", self.profile_start),
        ):
            if value is not None:
                args += [flag, str(value)]
        if not self.timers:
            args.append("--no-timers")
        if self.profile_on_signal:
            args.append("--profile-on-signal")
        if self.transport:
            args += ["--transport", self.transport]
        return args


@dataclass
class RunningBot:
    """A started bot; `ready` is what it reported after start-up, `stop()` returns its final report."""

    ready: dict[str, Any]
    _stop: Callable[[], Awaitable[dict[str, Any]]] = field(repr=False)
    pid: int | None = None

    async def stop(self) -> dict[str, Any]:
        """Stop the bot and return its final report (CPU seconds, memory)."""
        return await self._stop()


async def start_bot(spec: BotSpec, *, in_process: bool = False, timeout: float = 60.0) -> RunningBot:
    """Start the bot in a child process (as production runs it), or in this event loop."""
    if in_process:
        import bot_host  # the bench directory is on sys.path when a bench script runs

        secrets = bot_host.configure_bot_logging(spec.log)

        os.environ.update({k: v for k, v in bench_env().items() if k == SECRET_ENV})
        for name in PROXY_VARIABLES:
            os.environ.pop(name, None)
        ready, stop = await bot_host.start(spec, secrets)
        return RunningBot(ready=ready, _stop=stop, pid=os.getpid())

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BOT_HOST),
        *spec.argv(),
        cwd=str(REPO),
        env=bench_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        ready = await _read_report(proc, timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise

    async def stop() -> dict[str, Any]:
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        try:
            report = await _read_report(proc, timeout)
        finally:
            await proc.wait()
        return report

    return RunningBot(ready=ready, _stop=stop, pid=proc.pid)


async def _read_report(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        await proc.wait()
        raise RuntimeError(f"the bot process exited ({proc.returncode}) without reporting; see its stderr above")
    report = json.loads(line)
    if report.get("event") == "error":
        raise RuntimeError(f"the bot failed to start: {report.get('error')}")
    return report
