"""A webhook receiver like the one a team would put behind `type: webhook` (docs/webhook-contract.md), for tests.

It verifies `X-Jitbot-Signature` (401 and recorded as rejected when wrong), keeps the grants it
currently holds, answers a grant with `{"grant_id": …}`, and de-duplicates by request id and action
(`X-Jitbot-Delivery`), as a careful receiver would. Failures and latency can be scripted.

    async with WebhookReceiver(secret="s3cret") as receiver:
        strategy = WebhookStrategy(config(url=receiver.url, secret="s3cret"), integrations={})
        ...
        receiver.fail_next(2, status=503, action="revoke")
        receiver.answer_next_grant({"grant_id": "grant-José"})   # script the body of the next grant's answer
        receiver.set_latency(30)               # answers late (released at close, no sleeping test)
        await receiver.wait_for(1, "grant")
        assert receiver.is_held("req-1")
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Delivery:
    """One POST the receiver got, and what it did with it."""

    raw: bytes
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int = 0
    rejected: bool = False  # bad or missing signature
    duplicate: bool = False  # same request id and action as an earlier processed delivery
    failed: bool = False  # answered with a scripted failure

    @property
    def action(self) -> str | None:
        """The body's action, if the body parsed."""
        return (self.body or {}).get("action")


@dataclass
class _Failure:
    remaining: int
    status: int
    action: str | None
    body: str


@dataclass
class WebhookReceiver:
    """The fake receiver; `deliveries` holds every POST in order, `grants` what is currently granted."""

    secret: str | None = None
    path: str = "/grants"
    deliveries: list[Delivery] = field(default_factory=list)
    grants: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    latency: float = 0.0
    _failures: list[_Failure] = field(default_factory=list)
    _grant_answers: list[Any] = field(default_factory=list)
    _processed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event | None = None
    _released: asyncio.Event | None = None
    _server: TestServer | None = None

    @property
    def url(self) -> str:
        """The URL to configure as the strategy's `url`."""
        assert self._server is not None, "start() the receiver first"
        return str(self._server.make_url(self.path))

    async def start(self) -> WebhookReceiver:
        """Listen on 127.0.0.1, a free port."""
        self._changed, self._released = asyncio.Event(), asyncio.Event()
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def close(self) -> None:
        """Release delayed answers and stop listening."""
        if self._released is not None:
            self._released.set()
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ── scripting and inspection ──────────────────────────────────────────────────────────────────
    def fail_next(
        self, count: int = 1, *, status: int = 500, action: str | None = None, body: str = "receiver failure"
    ) -> None:
        """Answer the next `count` valid deliveries (of `action`, or any) with `status`, changing nothing."""
        self._failures.append(_Failure(count, status, action, body))

    def answer_next_grant(self, answer: Any) -> None:
        """Answer the next processed grant with `answer` (any JSON value) instead of a fresh grant id."""
        self._grant_answers.append(answer)

    def set_latency(self, seconds: float) -> None:
        """Delay every answer; delayed answers are released at once when the receiver closes."""
        self.latency = seconds

    def is_held(self, request_id: str, target: str | None = None, requester: str | None = None) -> bool:
        """Whether a grant for this request (and target / requester slack id, when given) is held."""
        return any(
            rid == request_id and target in (None, tgt) and requester in (None, who) for rid, tgt, who in self.grants
        )

    def accepted(self, action: str | None = None) -> list[Delivery]:
        """Deliveries that were processed (not rejected, failed or duplicate), optionally of one action."""
        return [
            d
            for d in self.deliveries
            if not (d.rejected or d.failed or d.duplicate) and (action is None or d.action == action)
        ]

    async def wait_for(self, count: int, action: str | None = None, *, timeout: float = 5.0) -> list[Delivery]:
        """Wait until `count` deliveries (of `action`, if given) have been answered; return them."""

        async def reached() -> list[Delivery]:
            while True:
                matching = [d for d in self.deliveries if d.status and (action is None or d.action == action)]
                if len(matching) >= count:
                    return matching
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(reached(), timeout)

    # ── the endpoint ──────────────────────────────────────────────────────────────────────────────
    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        delivery = Delivery(raw=raw, headers=dict(request.headers), body=body if isinstance(body, dict) else None)
        self.deliveries.append(delivery)
        try:
            if self.latency:
                try:
                    await asyncio.wait_for(self._released.wait(), self.latency)
                except TimeoutError:
                    pass
            response = self._respond(delivery, request.headers.get("X-Jitbot-Signature"))
        except Exception:
            delivery.status = 500
            self._changed.set()
            raise
        delivery.status = response.status
        self._changed.set()
        return response

    def _respond(self, delivery: Delivery, signature: str | None) -> web.Response:
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), delivery.raw, hashlib.sha256).hexdigest()
            if not signature or not hmac.compare_digest(signature, expected):
                delivery.rejected = True
                return web.json_response({"error": "bad signature"}, status=401)
        body = delivery.body
        if body is None or body.get("action") not in ("grant", "revoke") or not body.get("request_id"):
            return web.json_response({"error": "body must be a JSON object with action and request_id"}, status=400)

        failure = next((f for f in self._failures if f.remaining > 0 and f.action in (None, body["action"])), None)
        if failure is not None:
            failure.remaining -= 1
            delivery.failed = True
            return web.Response(status=failure.status, text=failure.body)

        dedup_key = (body["request_id"], body["action"])
        if dedup_key in self._processed:
            delivery.duplicate = True
            return web.json_response(self._processed[dedup_key])

        grant_key = (body["request_id"], body["target"]["name"], body["requester"]["slack_id"])
        if body["action"] == "grant":
            scripted = bool(self._grant_answers)
            answer = self._grant_answers.pop(0) if scripted else {"ok": True, "grant_id": f"g-{next(self._ids)}"}
            grant_id = answer.get("grant_id") if isinstance(answer, dict) else None
            self.grants[grant_key] = {**body, "grant_id": grant_id}
        else:
            self.grants.pop(grant_key, None)
            answer = {"ok": True}
        self._processed[dedup_key] = answer
        return web.json_response(answer)
