"""The bot's HTTP API in end-to-end tests: a started bot with `JITBOT_HTTP_ADDR`, tokens, and a client.

api = await start_api_bot(start_webhook_bot)
token = await api.token("U_BOB", scopes="decide,read")
response = await api.post(f"/v1/requests/{id}/approve", token=token)
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from core.tokens import parse_scopes
from storage.tokens import TokenStore
from tests.e2e.harness import RunningBot


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ApiBot:
    """A running bot serving the API on `url`."""

    bot: RunningBot
    url: str

    @property
    def tokens(self) -> TokenStore:
        """The bot's token store (as `bot.py tokens` uses it)."""
        return TokenStore(self.bot.runtime.store, self.bot.clock)

    async def token(
        self,
        user: str,
        *,
        scopes: str = "request,decide,read",
        name: str | None = None,
        expires: timedelta | None = None,
    ) -> str:
        """Make a token for `user`; returns the token text (shown once)."""
        _, fresh = await self.tokens.create(
            user, actor="test", name=name, scopes=parse_scopes(scopes), expires_in=expires
        )
        return fresh.text

    async def call(
        self, method: str, path: str, *, token: str | None = None, json: Any = None, **options: Any
    ) -> httpx.Response:
        """One HTTP call to the API (the bot runs in this event loop, so the client is async)."""
        headers = dict(options.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient(base_url=self.url, timeout=10.0) as client:
            return await client.request(method, path, headers=headers, json=json, **options)

    async def get(self, path: str, **options: Any) -> httpx.Response:
        """GET `path`."""
        return await self.call("GET", path, **options)

    async def post(self, path: str, **options: Any) -> httpx.Response:
        """POST `path`."""
        return await self.call("POST", path, **options)


async def start_api_bot(start: Any, *more_flows: dict, **options: Any) -> ApiBot:
    """Start a bot (with `start`, e.g. the start_webhook_bot fixture) serving the API on a free port."""
    port = free_port()
    bot = await start(*more_flows, health_address=f"127.0.0.1:{port}", **options)
    return ApiBot(bot, f"http://127.0.0.1:{port}")


def request_body(target: str = "prod_admin", reason: str = "deploy 7", duration: str = "30m", **fields: Any) -> dict:
    """A POST /v1/requests body for the standard db_access flow."""
    return {"flow": "db_access", "target": target, "fields": {"reason": reason, "duration": duration, **fields}}
