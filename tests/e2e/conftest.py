"""In-process bots for the e2e tests, built by the same Runtime as `bot.py run` (see tests/e2e/harness.py).

Time is a FrozenClock and the APScheduler timers are off, so tests move time and call `sweep()`
instead of sleeping; the timers themselves are covered by the subprocess tests.

- `launch`: starts bots from any flows text (several per test, hooks files next to them).
- `bot`: one bot on the standard webhook flow (`db_access`, approvers @secops) and its `receiver`;
  `start_webhook_bot(*more_flows)` starts one on that flows file plus more flows.
- `moto`: the session's moto server, reset, as the standard AWS chain's endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from runtime import Runtime
from sandbox.slack import Message, SlackEmulator
from tests.e2e.flows import APPROVAL_CHANNEL, SECOPS, db_access_flow, flows_file
from tests.e2e.harness import BotLauncher, RunningBot
from tests.fakes.clock import FrozenClock
from tests.fakes.webhook_receiver import WebhookReceiver

if TYPE_CHECKING:
    from tests.fakes.moto_server import MotoServer

WEBHOOK_SECRET = "whsec-e2e-0123456789abcdef"
SECRET_ENV = "JITBOT_TEST_WEBHOOK_SECRET"


STANDARD_DURATIONS = ("10s", "30m", "1h")


def standard_flow(receiver_url: str, durations: tuple[str, ...] = STANDARD_DURATIONS, **keys: Any) -> dict:
    """The standard `db_access` flow (webhook to `receiver_url`, approvers @secops); `keys` replace its
    settings, and a key given as None is left out (`approvers=None`: anyone but the requester decides)."""
    settings = {"secret_env": SECRET_ENV, "ticket": True, "approvers": SECOPS, "request_timeout": "1h", **keys}
    return db_access_flow(receiver_url, *durations, **{k: v for k, v in settings.items() if v is not None})


def webhook_flows(receiver_url: str, *more_flows: dict) -> str:
    """The standard flows file: `db_access` (webhook to `receiver_url`, approvers @secops), then `more_flows`."""
    return flows_file(standard_flow(receiver_url), *more_flows)


@dataclass
class Bot:
    """A RunningBot on the standard webhook flow, its receiver, and a one-call request with defaults."""

    running: RunningBot
    receiver: WebhookReceiver

    @property
    def runtime(self) -> Runtime:
        return self.running.runtime

    @property
    def slack(self) -> SlackEmulator:
        return self.running.slack

    @property
    def clock(self) -> FrozenClock:
        return self.running.clock

    @property
    def engine(self):
        return self.running.engine

    async def request(
        self,
        user: str = "U_ALICE",
        *,
        target: str = "Prod Admin",
        reason: str = "incident 42",
        duration: str = "30m",
        text: str = "db_access",
    ) -> Message:
        """Run the slash command as `user`, fill the form, submit, and return the posted channel message."""
        return await self.running.request(user, text, APPROVAL_CHANNEL, target=target, reason=reason, duration=duration)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=WEBHOOK_SECRET) as r:
        yield r


@pytest.fixture
async def launch(slack, tmp_path, databases) -> AsyncIterator[BotLauncher]:
    """Starts bots from any flows text in tmp_path, on the session's database engine (see
    tests/e2e/harness.py, tests/databases.py); stops them all after."""
    launcher = BotLauncher(slack, tmp_path, databases)
    try:
        yield launcher
    finally:
        await launcher.close()


@pytest.fixture
def start_webhook_bot(receiver, launch, monkeypatch) -> Callable[..., Awaitable[RunningBot]]:
    """Starts bots on the standard flows file plus any more flows; `launch` stops them before the receiver closes."""
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)

    async def start(*more_flows: dict, **options: Any) -> RunningBot:
        return await launch.start(webhook_flows(receiver.url, *more_flows), **options)

    return start


@pytest.fixture
async def bot(start_webhook_bot, receiver) -> Bot:
    """The standard bot, started."""
    return Bot(await start_webhook_bot(), receiver)


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch, tmp_path) -> MotoServer:
    """The moto server, reset, as the standard AWS chain's endpoint with fake credentials (AWS_ENDPOINT_URL)."""
    from tests.fakes.moto_server import isolate_aws_env  # boto3 and moto load only for the tests that use AWS

    isolate_aws_env(monkeypatch, tmp_path, endpoint_url=moto_server.url)
    moto_server.reset()
    return moto_server
