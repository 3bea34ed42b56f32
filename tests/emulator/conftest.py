"""Fixtures for the emulator's own tests (the `slack` fixture itself lives in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackEmulator
from tests.emulator.helpers import BoltBot, RawBot


@pytest.fixture
async def bolt(slack: SlackEmulator) -> AsyncIterator[BoltBot]:
    """A Bolt app (not yet connected: register listeners, then `await bolt.connect()`)."""
    bot = BoltBot(slack)
    try:
        yield bot
    finally:
        await bot.close()


@pytest.fixture
async def raw_bot(slack: SlackEmulator) -> AsyncIterator[RawBot]:
    """A connected RawBot that acks with an empty payload unless the test sets `raw_bot.answer`."""
    bot = RawBot(slack)
    await bot.connect()
    try:
        yield bot
    finally:
        await bot.close()


@pytest.fixture
async def web(slack: SlackEmulator) -> AsyncWebClient:
    """An AsyncWebClient holding the bot token, pointed at the emulator."""
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
