"""Local stand-ins for the audit destinations that speak HTTP: a signed-batch receiver and Datadog's logs intake.

`AuditReceiver` is what a team would put behind `type: http` (docs/audit.md): it checks
`X-Jitbot-Signature` (401 when wrong), the body's shape, and keeps the events in arrival order.
`DatadogIntake` is built from Datadog's logs API v2 documentation (POST /api/v2/logs): it refuses a
missing or wrong `DD-API-KEY` with 403, decodes gzip, and checks the body is a JSON array of at most
1,000 log items of at most 5 MB, each with a string `message` and only string `ddsource`, `ddtags`,
`hostname`, `service`; it answers 202. Both can be taken down (503) and refuse (any status) on cue.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

MAX_DATADOG_BYTES = 5 * 1024 * 1024
MAX_DATADOG_ITEMS = 1000
_DATADOG_STRING_KEYS = ("ddsource", "ddtags", "hostname", "service")


@dataclass
class _Server:
    """An aiohttp app on 127.0.0.1 (a free port) with a scriptable outage."""

    status_while_down: int = 503
    down: bool = False
    refusal: tuple[int, str] | None = None
    requests: int = 0
    bad_requests: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""
    arrived: asyncio.Condition | None = None

    async def start(self) -> str:
        """Serve; returns the base URL."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self.arrived = asyncio.Condition()
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def refuse(self, status: int, body: str) -> None:
        """Answer every request with `status` and `body` (until `accept()`)."""
        self.refusal = (status, body)

    def accept(self) -> None:
        """Answer normally again."""
        self.refusal, self.down = None, False

    async def _post(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=self.status_while_down, text="service unavailable")
        if self.refusal is not None:
            return web.Response(status=self.refusal[0], text=self.refusal[1])
        answer = await self.handle(request)
        assert self.arrived is not None
        async with self.arrived:
            self.arrived.notify_all()
        return answer

    async def handle(self, request: web.Request) -> web.Response:  # pragma: no cover - overridden
        raise NotImplementedError

    def _bad(self, why: str, status: int = 400) -> web.Response:
        self.bad_requests.append(why)
        return web.Response(status=status, text=json.dumps({"errors": [why]}))

    async def wait_for(self, predicate: Any, *, timeout: float = 15.0) -> None:
        """Wait until `predicate()` holds (checked after each accepted request)."""
        assert self.arrived is not None

        async def waiting() -> None:
            async with self.arrived:
                await self.arrived.wait_for(predicate)

        await asyncio.wait_for(waiting(), timeout)


@dataclass
class AuditReceiver(_Server):
    """The `http` destination's receiver: signature and shape checked, events kept in arrival order."""

    secret: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # each with the batch's chain_head
    batches: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    max_events: int | None = None  # answer 413 to a larger batch
    holding: bool = False  # keep each request unanswered (its events recorded) until release()
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Answer the held requests and stop holding."""
        self.holding = False
        self._release.set()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Jitbot-Signature", ""), expected):
            return self._bad("bad signature", 401)
        try:
            body = json.loads(raw)
        except ValueError:
            return self._bad("not JSON")
        if set(body) != {"events", "chain_head", "sent_at", "delivery_id"} or not body["events"]:
            return self._bad(f"unexpected body keys {sorted(body)}")
        if self.max_events is not None and len(body["events"]) > self.max_events:
            return self._bad("payload too large", 413)
        first, last = body["events"][0]["seq"], body["events"][-1]["seq"]
        if request.headers.get("X-Jitbot-Delivery") != f"audit:{first}-{last}":
            return self._bad("X-Jitbot-Delivery does not name the batch")
        self.headers.append(dict(request.headers))
        self.batches.append(body)
        self.events.extend(dict(event, chain_head=body["chain_head"]) for event in body["events"])
        if self.holding:
            assert self.arrived is not None
            async with self.arrived:
                self.arrived.notify_all()
            await self._release.wait()
        return web.json_response({"ok": True})

    def seqs(self) -> list[int]:
        """The seq of every event received, in arrival order (duplicates included)."""
        return [event["seq"] for event in self.events]


@dataclass
class DatadogIntake(_Server):
    """Datadog's logs intake API v2, as documented; `logs` holds every accepted log item."""

    api_key: str = ""
    logs: list[dict[str, Any]] = field(default_factory=list)
    tags_seen: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path != "/api/v2/logs":
            return self._bad(f"no route {request.path}", 404)
        if not request.headers.get("DD-API-KEY"):
            return self._bad("Unauthorized", 401)
        if request.headers["DD-API-KEY"] != self.api_key:
            return self._bad("Forbidden", 403)
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self._bad("Content-Type must be application/json")
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip" and raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)  # aiohttp's server usually has decoded it already
        if len(raw) > MAX_DATADOG_BYTES:
            return self._bad("Payload too large", 413)
        try:
            body = json.loads(raw)
        except ValueError:
            return self._bad("not JSON")
        if not isinstance(body, list) or not 1 <= len(body) <= MAX_DATADOG_ITEMS:
            return self._bad("the body must be an array of 1 to 1000 logs")
        for item in body:
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                return self._bad("each log needs a string message")
            for key in _DATADOG_STRING_KEYS:
                if key in item and not isinstance(item[key], str):
                    return self._bad(f"{key} must be a string")
        self.logs.extend(body)
        for item in body:
            self.tags_seen.update(item.get("ddtags", "").split(","))
        return web.Response(status=202, text="{}", content_type="application/json")

    def events(self) -> list[dict[str, Any]]:
        """The audit events inside the accepted logs' messages, in arrival order."""
        return [json.loads(item["message"]) for item in self.logs]
