"""An in-process bot, built by the same Runtime as `bot.py run`, against the emulator and a webhook receiver.

Time is a FrozenClock and the APScheduler timers are off, so tests move time and call `sweep()`
instead of sleeping; the timers themselves are covered by the subprocess tests.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime import Runtime, Settings
from tests.fakes.clock import FrozenClock
from tests.fakes.slack_emulator import Message, SlackEmulator
from tests.fakes.webhook_receiver import WebhookReceiver

WEBHOOK_SECRET = "whsec-e2e-0123456789abcdef"

FLOWS = """\
slack:
  command: /sym
  alerts_channel: C_ALERTS
flows:
  - name: db_access
    label: Database Access
    approval_channel: C_APPROVALS
    approvers:
      usergroups: [S_SECOPS]
    strategy:
      type: webhook
      url: {url}
      secret: ${{env:JITBOT_TEST_WEBHOOK_SECRET}}
      timeout: 5s
      targets:
        - name: prod_admin
          label: Prod Admin
          settings: {{database: prod, role: admin}}
        - name: staging_ro
          label: Staging read-only
          settings: {{database: staging, role: readonly}}
    fields:
      - name: reason
        label: Why do you need access?
        type: text
        required: true
      - name: ticket
        label: Ticket
        type: string
      - name: duration
        label: Duration
        type: duration
        allowed_values: [10s, 30m, 1h]
        required: true
    request_timeout: 1h
{extra}"""


@dataclass
class Bot:
    """The running bot and everything a test needs around it."""

    runtime: Runtime
    slack: SlackEmulator
    receiver: WebhookReceiver
    clock: FrozenClock

    @property
    def engine(self):
        return self.runtime.engine

    async def request(self, user: str = "U_ALICE", *, target: str = "Prod Admin", reason: str = "incident 42",
                      duration: str = "30m", text: str = "db_access") -> Message:
        """Run the slash command as `user`, fill the form, submit, and return the posted channel message."""
        before = len(self.slack.messages_in("C_APPROVALS"))
        result = await self.slack.slash_command(user=user, command="/sym", text=text)
        assert result.ack_payload in (None, {}), result.ack_payload
        view = await self.slack.wait_for_view(user, contains="Request access")
        await self.slack.submit_view(view, {"target": target, "field:reason": reason, "field:duration": duration})
        await self.slack.wait_for(lambda: len(self.slack.messages_in("C_APPROVALS")) > before)
        return self.slack.messages_in("C_APPROVALS")[-1]

    async def request_id(self, message: Message) -> str:
        """The request id behind a channel message."""
        rows = [r for r in await self.engine.requests.list_by_status(*__import__("core.models", fromlist=["x"]).RequestStatus)
                if r.message_ts == message.ts]
        assert len(rows) == 1
        return rows[0].id


async def start_bot(slack: SlackEmulator, receiver: WebhookReceiver, tmp_path: Path, clock: FrozenClock,
                    extra: str = "", db_name: str = "jitbot.db") -> Runtime:
    """Write the flows file and start a Runtime against the emulator."""
    config = tmp_path / "flows.yaml"
    config.write_text(FLOWS.format(url=receiver.url, extra=textwrap.dedent(extra)))
    settings = Settings(bot_token=slack.bot_token, app_token=slack.app_token, config_path=config,
                        db_path=str(tmp_path / db_name), slack_api_url=slack.api_url)
    runtime = Runtime(settings, clock=clock, start_timers=False)
    await runtime.start()
    await slack.wait_connected()
    return runtime


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=WEBHOOK_SECRET) as r:
        yield r


@pytest.fixture
async def bot(slack, receiver, tmp_path, monkeypatch) -> AsyncIterator[Bot]:
    monkeypatch.setenv("JITBOT_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET)
    clock = FrozenClock()
    runtime = await start_bot(slack, receiver, tmp_path, clock)
    try:
        yield Bot(runtime, slack, receiver, clock)
    finally:
        await runtime.stop()


# ── fixtures for tests that bring their own flows file (tests/e2e/harness.py) ─────────────────────

from tests.e2e.harness import BotLauncher  # noqa: E402  (appended section)


@pytest.fixture
async def launch(slack, tmp_path) -> AsyncIterator[BotLauncher]:
    """Starts bots from any flows text in tmp_path (see tests/e2e/harness.py); stops them all after."""
    launcher = BotLauncher(slack, tmp_path)
    try:
        yield launcher
    finally:
        await launcher.close()


@pytest.fixture
def moto(moto_server, monkeypatch, tmp_path):
    """The moto server, reset, as the standard AWS chain's endpoint with fake credentials (AWS_ENDPOINT_URL)."""
    from tests.fakes.moto_server import isolate_aws_env  # boto3 and moto load only for the tests that use AWS

    isolate_aws_env(monkeypatch, tmp_path, endpoint_url=moto_server.url)
    moto_server.reset()
    return moto_server
