"""Start an in-process bot from any flows text against the Slack emulator, and drive it as people would.

The production Runtime, a FrozenClock, the APScheduler timers off (tests move time and call
`sweep()`); any flows file (see tests/e2e/flows.py), hooks files next to it, several bots per test:

    async def test_x(launch):                          # fixture in tests/e2e/conftest.py
        launch.write("hooks.py", "def on_request(evt): ...")
        bot = await launch.start(FLOWS_TEXT)           # flows.yaml is written next to hooks.py
        message = await bot.request("U_ALICE", flow="db_access")
        await bot.slack.click(message, text="Approve", user="U_BOB")

`capture_logs(secrets)` captures every log line exactly as `bot.py run` renders it (JSON, scrubbed
with `secrets`), plus each structured event before rendering, for tests that prove a value never
reaches the logs. As in `bot.py run`, the bot scrubs with that same registry: pass it to
`launch.start(..., secrets=secrets)`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core.logging import configure_logging
from core.models import AccessRequest, AuditEvent, RequestStatus
from core.secrets import SecretRegistry
from runtime import Runtime, Settings
from sandbox.slack import EnvelopeResult, Message, SlackEmulator
from tests.audit_schema_check import check_audit_trail
from tests.databases import TestDatabases
from tests.fakes.clock import FrozenClock

DEFAULT_VALUES = {"field:reason": "incident 42", "field:duration": "30m"}


async def submit_request(
    slack: SlackEmulator, user: str, flow: str, *, target: str, timeout: float = 5.0, **values: Any
) -> EnvelopeResult:
    """`/sym FLOW` as `user`, then fill the request modal (target label, reason, duration…) and submit it."""
    result = await slack.slash_command(user=user, command="/sym", text=flow)
    assert result.ack_payload in (None, {}), result.ack_payload
    view = await slack.wait_for_view(user, contains="Request access", timeout=timeout)
    filled = {**DEFAULT_VALUES, **{f"field:{k}": v for k, v in values.items()}, "target": target}
    return await slack.submit_view(view, filled)


async def command_answer(slack: SlackEmulator, user: str, text: str, *, command: str = "/sym") -> str:
    """`/sym TEXT` as `user`: the command is acked empty at once, and the answer only `user` sees follows."""
    before = len(slack.ephemerals_to(user))
    result = await slack.slash_command(user=user, command=command, text=text)
    assert result.ack_payload in (None, {}), result.ack_payload
    answer = await slack.wait_for_ephemeral(user, where=lambda e: e in slack.ephemerals_to(user)[before:])
    return answer.text or ""


@dataclass
class RunningBot:
    """One started Runtime plus the emulator and clock it runs against."""

    runtime: Runtime
    slack: SlackEmulator
    clock: FrozenClock
    config_path: Path
    db_path: Path | str  # a SQLite file, or a postgresql:// URL (replicas)
    stopped: bool = False

    @property
    def engine(self):
        """The runtime's AccessEngine."""
        return self.runtime.engine

    async def submit(self, user: str, flow: str, *, target: str, **values: Any) -> EnvelopeResult:
        """Open `flow`'s form as `user`, fill it (target label, reason, duration…) and submit it."""
        return await submit_request(self.slack, user, flow, target=target, **values)

    async def request(self, user: str, flow: str, channel: str, *, target: str, **values: Any) -> Message:
        """Submit a request and return the message it posted in `channel` (the submit must be accepted)."""
        before = {m.ts for m in self.slack.messages_in(channel)}
        result = await self.submit(user, flow, target=target, **values)
        assert result.response_action is None, f"the form was refused: {result.ack_payload}"
        await self.idle()  # the submit's hooks, post, DM and any fast-track grant are done
        return await self.slack.wait_for(
            lambda: next((m for m in self.slack.messages_in(channel) if m.ts not in before), None),
            timeout=0.5,
            description=f"a new request message in {channel}",
        )

    async def approve(self, message: Message, user: str = "U_BOB") -> Message:
        """`user` clicks Approve on a request message; returns that message once it shows the grant."""
        await self.slack.click(message, text="Approve", user=user)
        return await self.slack.wait_for_message(
            message.channel, contains="granted until", where=lambda m: m.ts == message.ts
        )

    async def deny(self, message: Message, user: str = "U_CAROL", reason: str | None = None) -> None:
        """`user` clicks Deny on a request message and submits the reason modal it opens (reason optional)."""
        before = {v.id for v in self.slack.open_views(user)}
        await self.slack.click(message, text="Deny", user=user)
        view = await self.slack.wait_for(
            lambda: next((v for v in self.slack.open_views(user) if v.id not in before), None),
            description=f"the deny modal for {user}",
        )
        await self.slack.submit_view(view, {"deny-reason": reason} if reason is not None else {})
        await self.idle()

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every Slack listener the bot is running has finished (a submit, a click), and the
        notifications that follow revocations."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while busy := self.runtime.listeners.running():
            remaining = deadline - loop.time()
            assert remaining > 0, f"the bot is still busy after {timeout}s: {busy}"
            await asyncio.wait(busy, timeout=remaining)
        if self.engine is not None:
            left = await self.engine.settle(max(0.0, deadline - loop.time()))
            assert left == 0, f"{left} follow-ups still running after {timeout}s"

    async def request_for(self, message: Message) -> AccessRequest:
        """The stored request behind a channel message."""
        rows = [r for r in await self.engine.requests.list_by_status(*RequestStatus) if r.message_ts == message.ts]
        assert len(rows) == 1, rows
        return rows[0]

    async def all_requests(self) -> list[AccessRequest]:
        """Every stored request, whatever its status."""
        return await self.engine.requests.list_by_status(*RequestStatus)

    async def audit(self, request_id: str) -> list[AuditEvent]:
        """The audit trail of one request, oldest first."""
        return await self.engine.audit.for_request(request_id)

    def hook_module(self, flow: str) -> Any:
        """The bot's own copy of `flow`'s hooks module: state kept by async hooks (sync hooks run in
        processes of their own, whose state is theirs)."""
        return self.engine.hooks.modules[flow].module

    async def stop(self) -> None:
        """Stop the runtime (idempotent)."""
        if not self.stopped:
            self.stopped = True
            try:
                await self.idle()
            finally:
                await self.runtime.stop()


@dataclass
class BotLauncher:
    """Writes flows and hooks files into a directory and starts bots from them; `close()` stops them all."""

    slack: SlackEmulator
    directory: Path
    databases: TestDatabases | None = None  # the session's engine (tests/databases.py); None: SQLite files
    bots: list[RunningBot] = field(default_factory=list)

    def write(self, name: str, text: str) -> Path:
        """Write a file (a hooks file, a secret) next to the flows file; returns its absolute path."""
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path.resolve()

    async def start(
        self,
        flows: str,
        *,
        clock: FrozenClock | None = None,
        name: str = "flows.yaml",
        db_name: str = "jitbot.db",
        db: str | None = None,
        health_address: str | None = None,
        secrets: SecretRegistry | None = None,
        **runtime_options: Any,
    ) -> RunningBot:
        """Write `flows` (dedented) and start a Runtime on it against the emulator (GET /health on
        `health_address`), scrubbing with `secrets` (the one `capture_logs` was given) or its own;
        the database is `db_name` on the session's engine (a SQLite file, or a PostgreSQL database of that
        name), or `db` (a postgresql:// URL) when given: several bots on one database are replicas;
        `runtime_options` go to the Runtime (e.g. a short `audit_backoff`)."""
        config = self.write(name, flows)
        db_path: Path | str
        if db is not None:
            db_path = db
        elif self.databases is not None:
            db_path = self.databases.where(db_name)
        else:
            db_path = self.directory / db_name
        settings = Settings(
            bot_token=self.slack.bot_token,
            app_token=self.slack.app_token,
            config_path=config,
            db_path=str(db_path),
            slack_api_url=self.slack.api_url,
            health_address=health_address,
        )
        clock = clock or FrozenClock()
        runtime = Runtime(
            settings,
            clock=clock,
            start_timers=False,
            secrets=SecretRegistry() if secrets is None else secrets,
            **runtime_options,
        )
        connected = self.slack.connects
        try:
            await runtime.start()
        except BaseException:
            await runtime.stop()
            raise
        bot = RunningBot(runtime, self.slack, clock, config, db_path)
        self.bots.append(bot)
        await self.slack.wait_for(
            lambda: self.slack.connects > connected, description="the bot's Socket Mode connection"
        )
        return bot

    async def close(self) -> None:
        """Stop every bot this launcher started, then check every audit event they wrote (schema and chain)."""
        for bot in reversed(self.bots):
            await bot.stop()
        for db_path in dict.fromkeys(bot.db_path for bot in self.bots):
            check_audit_trail(db_path)


@dataclass
class CapturedLogs:
    """What `capture_logs` saw: rendered lines (as `bot.py run` writes them) and raw structlog events."""

    stream: io.StringIO
    events: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Everything written to the log stream."""
        return self.stream.getvalue()

    @property
    def lines(self) -> list[dict]:
        """The JSON log lines, parsed."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@contextmanager
def capture_logs(secrets: SecretRegistry) -> Iterator[CapturedLogs]:
    """Configure logging exactly as `bot.py run` does (JSON to a buffer, scrubbed with `secrets`, the
    registry the bot is then started with), then put everything back."""
    was_configured, saved_structlog = structlog.is_configured(), structlog.get_config()
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    noisy = {
        name: logging.getLogger(name).level
        for name in ("slack_bolt", "slack_sdk", "apscheduler", "botocore", "urllib3", "httpx", "aiohttp.access")
    }
    captured = CapturedLogs(io.StringIO())

    def keep_raw(_logger: Any, _method: str, event: dict) -> dict:
        captured.events.append(dict(event))
        return event

    configure_logging("json", stream=captured.stream, secrets=secrets)
    processors = structlog.get_config()["processors"]
    # Raw events are recorded before any rendering; loggers are not cached, so nothing outlives the test.
    structlog.configure(processors=[*processors[:-1], keep_raw, processors[-1]], cache_logger_on_first_use=False)
    try:
        yield captured
    finally:
        if was_configured:
            structlog.configure(**saved_structlog)
        else:
            structlog.reset_defaults()
        root.handlers[:], level = saved_root
        root.setLevel(level)
        for name, level in noisy.items():
            logging.getLogger(name).setLevel(level)
