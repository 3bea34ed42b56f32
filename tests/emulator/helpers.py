"""Harness pieces for the emulator's own tests: a Bolt app over Socket Mode, a raw WebSocket bot, a clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackEmulator


class ManualClock:
    """A clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.current = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class BoltBot:
    """A Bolt AsyncApp wired to the emulator, plus the Socket Mode handlers it runs."""

    def __init__(self, slack: SlackEmulator):
        self.slack = slack
        self.client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        self.app = AsyncApp(client=self.client)
        self.handlers: list[AsyncSocketModeHandler] = []

    async def connect(self, connections: int = 1) -> None:
        """Open `connections` Socket Mode connections (one handler each) and wait until all are up."""
        for _ in range(connections):
            handler = AsyncSocketModeHandler(self.app, self.slack.app_token)
            self.handlers.append(handler)
            await handler.connect_async()
        await self.slack.wait_connected(len(self.handlers))

    async def close(self) -> None:
        """Close every handler and wait for its background tasks, so no session or task is left behind."""
        for handler in self.handlers:
            await handler.close_async()
            client = handler.client
            tasks = [
                t
                for t in (client.message_processor, client.current_session_monitor, client.message_receiver)
                if t is not None
            ]
            await asyncio.gather(*tasks, return_exceptions=True)


AckFn = Callable[[dict], Awaitable[dict | None] | dict | None]


class RawBot:
    """A minimal Socket Mode client written from the protocol docs: acks every envelope via `answer`."""

    def __init__(self, slack: SlackEmulator):
        self.slack = slack
        self.session = aiohttp.ClientSession()
        self.frames: list[dict] = []
        self.answer: AckFn = lambda envelope: None
        self.ack = True
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    async def connect(self) -> dict:
        """Open a connection and return the `hello` frame."""
        async with self.session.post(
            f"{self.slack.api_url}apps.connections.open", headers={"Authorization": f"Bearer {self.slack.app_token}"}
        ) as response:
            url = (await response.json())["url"]
        self._ws = await self.session.ws_connect(url)
        hello = json.loads((await self._ws.receive()).data)
        self._reader = asyncio.create_task(self._read())
        await self.slack.wait_connected()
        return hello

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            frame = json.loads(message.data)
            self.frames.append(frame)
            if "envelope_id" in frame and self.ack:
                payload = self.answer(frame)
                if asyncio.iscoroutine(payload):
                    payload = await payload
                ack: dict[str, Any] = {"envelope_id": frame["envelope_id"]}
                if payload:
                    ack["payload"] = payload
                await self._ws.send_str(json.dumps(ack))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.session.close()


def modal(*blocks: dict, title: str = "Request access", submit: str | None = "Submit", **extra: Any) -> dict:
    """A modal view payload."""
    view: dict[str, Any] = {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": list(blocks)}
    if submit is not None:
        view["submit"] = {"type": "plain_text", "text": submit}
    view.update(extra)
    return view


def plain(text: str) -> dict:
    """A plain_text object."""
    return {"type": "plain_text", "text": text}


def option(text: str, value: str) -> dict:
    """A select option."""
    return {"text": plain(text), "value": value}


def section(text: str, **extra: Any) -> dict:
    """A mrkdwn section block."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(text: str, action_id: str, value: str = "v", **extra: Any) -> dict:
    """A button element."""
    return {"type": "button", "text": plain(text), "action_id": action_id, "value": value, **extra}
