"""Shared fixtures: `slack`, a local Slack emulator preloaded with a small directory; `moto_server`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from core.event_loop import new_event_loop
from sandbox.slack import SlackEmulator

if TYPE_CHECKING:
    from tests.fakes.moto_server import MotoServer

# The shared headless-browser fixture (`chromium_driver`), the real PostgreSQL (`postgres_server`,
# `postgres_dsn`) and the session's database engine (`databases`, the `sqlite_only` marker; JITBOT_TEST_DB).
pytest_plugins = ["tests.browser", "tests.postgres", "tests.databases"]

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def build_directory_emulator(**overrides: object) -> SlackEmulator:
    """An emulator with requester Alice, approver Bob, Carol, #approvals, #alerts and @secops (Bob, Carol)."""
    emu = SlackEmulator(**overrides)  # type: ignore[arg-type]
    emu.add_user("U_ALICE", email="alice@example.com", name="alice", real_name="Alice Requester")
    emu.add_user("U_BOB", email="bob@example.com", name="bob", real_name="Bob Approver")
    emu.add_user("U_CAROL", email="carol@example.com", name="carol", real_name="Carol Secops")
    emu.add_channel("C_APPROVALS", name="approvals")
    emu.add_channel("C_ALERTS", name="alerts")
    emu.add_usergroup("S_SECOPS", handle="secops", users=["U_BOB", "U_CAROL"])
    return emu


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], object]]:
    """Every async test runs on the event loop the bot runs on in production (core/event_loop.py)."""
    return {"uvloop": new_event_loop}


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackEmulator]:
    """A started SlackEmulator; teardown fails the test on unacked envelopes or payloads Slack would refuse."""
    # slack_sdk reads proxy variables even for the WebSocket and ignores NO_PROXY.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    emu = build_directory_emulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()
    emu.verify()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server (AWS over its real wire protocol) for the whole session; each user resets it."""
    from tests.fakes.moto_server import MotoServer  # boto3 and moto load only for the tests that use AWS

    server = MotoServer().start()
    yield server
    server.stop()
