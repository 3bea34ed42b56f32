"""The shipped example receiver checks the signature and refuses stale, replayed and already-expired deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.errors import StrategyUnavailable
from core.models import Subject, Target
from core.strategy import GrantContext
from examples.webhook_receiver import REPLAY_WINDOW, SEEN_DELIVERIES, make_app
from strategies.webhook import WebhookStrategy, WebhookStrategyConfig
from tests.fakes.clock import FrozenClock

SECRET = "s3cret-value"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def delivery(
    clock: FrozenClock,
    *,
    action: str = "grant",
    sent_at: datetime | None = None,
    delivery_id: str | None = None,
    expires_at: datetime | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A body as jitbot sends it, sent now unless told otherwise."""
    body = {
        "action": action,
        "request_id": "r1",
        "flow": "db_access",
        "target": {"name": "prod", "label": "Prod", "settings": {}},
        "requester": {"slack_id": "U1", "email": "a@example.com", "identity": "a@example.com"},
        "fields": {},
        "granted_at": stamp(clock.now()),
        "expires_at": stamp(expires_at or clock.now() + timedelta(hours=1)),
        "sent_at": stamp(sent_at or clock.now()),
        "delivery_id": delivery_id or uuid.uuid4().hex,
    }
    body.update(changes)
    return body


def signed(body: dict[str, Any] | bytes, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"X-Jitbot-Signature": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def example(clock):
    async with TestClient(TestServer(make_app(SECRET, now=clock.now))) as client:
        yield client


async def post(client: TestClient, body: dict[str, Any] | bytes, **kwargs: Any):
    raw, headers = signed(body, **kwargs)
    return await client.post("/grants", data=raw, headers=headers)


async def test_the_example_receiver_accepts_signed_bodies_and_refuses_others(example, clock):
    body = delivery(clock)
    ok = await post(example, body)
    assert ok.status == 200 and (await ok.json())["grant_id"] == "r1"
    forged = await post(example, delivery(clock), secret="not-the-secret")
    assert forged.status == 401


@pytest.mark.parametrize(
    "sent_at",
    [NOW - REPLAY_WINDOW - timedelta(seconds=1), NOW + timedelta(minutes=2)],
    ids=["older-than-the-window", "from-the-future"],
)
async def test_a_delivery_sent_outside_the_replay_window_is_refused(example, clock, sent_at):
    answer = await post(example, delivery(clock, sent_at=sent_at))
    assert answer.status == 403 and "sent_at" in (await answer.json())["error"]


async def test_a_delivery_sent_within_the_window_or_a_little_ahead_is_accepted(example, clock):
    assert (await post(example, delivery(clock, sent_at=NOW - REPLAY_WINDOW + timedelta(seconds=1)))).status == 200
    assert (await post(example, delivery(clock, sent_at=NOW + timedelta(seconds=20)))).status == 200


async def test_a_delivery_id_seen_before_is_refused_even_inside_the_window(example, clock):
    body = delivery(clock)
    assert (await post(example, body)).status == 200
    clock.advance(seconds=30)
    replay = await post(example, body)
    assert replay.status == 403 and "delivery_id" in (await replay.json())["error"]


async def test_a_grant_whose_end_has_passed_is_refused_but_its_revoke_is_not(example, clock):
    late_grant = delivery(clock, expires_at=NOW - timedelta(seconds=1))
    answer = await post(example, late_grant)
    assert answer.status == 422 and "expires_at" in (await answer.json())["error"]
    # Revokes are sent at or after the end: that is when they are due.
    assert (await post(example, delivery(clock, action="revoke", expires_at=NOW - timedelta(seconds=1)))).status == 200


@pytest.mark.parametrize(
    "broken",
    [
        {"sent_at": None},
        {"delivery_id": ""},
        {"sent_at": "yesterday"},
        {"sent_at": "2026-11-21T12:00:00"},
        {"expires_at": None},
        {"action": "delete"},
    ],
)
async def test_a_body_without_usable_replay_markers_is_refused(example, clock, broken):
    answer = await post(example, {**delivery(clock), **broken})
    assert answer.status == 400


async def test_a_signed_body_that_is_not_json_is_refused_not_a_crash(example):
    assert (await post(example, b"not json")).status == 400


async def test_delivery_ids_are_remembered_only_for_the_replay_window():
    clock = FrozenClock(NOW)
    app = make_app(SECRET, now=clock.now)
    async with TestClient(TestServer(app)) as client:
        for _ in range(3):
            assert (await post(client, delivery(clock))).status == 200
        assert len(app[SEEN_DELIVERIES]) == 3
        clock.advance(REPLAY_WINDOW + timedelta(seconds=1))
        assert (await post(client, delivery(clock))).status == 200
        assert len(app[SEEN_DELIVERIES]) == 1, "ids older than the window were forgotten"


@dataclass
class Wiretap:
    """Records every request the receiver gets, as someone on the path could."""

    captured: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def middleware(self):
        @web.middleware
        async def record(request: web.Request, handler):
            self.captured.append((await request.read(), dict(request.headers)))
            return await handler(request)

        return record


@asynccontextmanager
async def strategy_posting_to(server: TestServer, clock: FrozenClock) -> AsyncIterator[WebhookStrategy]:
    """The real webhook strategy, signing with SECRET, delivering to the example receiver under test."""
    config = WebhookStrategyConfig(
        type="webhook", url=str(server.make_url("/grants")), secret=SECRET, targets=[{"name": "prod", "label": "Prod"}]
    )
    strategy = WebhookStrategy(config, integrations={}, clock=clock)
    await strategy.open()
    try:
        yield strategy
    finally:
        await strategy.aclose()


async def test_a_captured_grant_replayed_after_the_revoke_does_not_reopen_access(clock):
    tap = Wiretap()
    app = make_app(SECRET, now=clock.now)
    app.middlewares.append(tap.middleware())
    async with TestServer(app, host="127.0.0.1") as server:
        async with strategy_posting_to(server, clock) as strategy:
            ctx = GrantContext(
                request_id="r1",
                flow="db_access",
                target=Target("prod", "Prod", {}),
                subject=Subject("U1", "a@example.com", identity="a@example.com"),
                granted_at=clock.now(),
                expires_at=clock.now() + timedelta(minutes=30),
            )
            result = await strategy.grant(ctx)
            assert result.state == {"grant_id": "r1"}
            clock.advance(minutes=3)
            await strategy.revoke(ctx, result.state)

        raw, headers = tap.captured[0]
        assert json.loads(raw)["action"] == "grant"
        async with TestClient(server) as attacker:
            soon = await attacker.post("/grants", data=raw, headers=headers)
            assert soon.status == 403  # the same delivery_id, still inside the window
            clock.advance(minutes=10)
            later = await attacker.post("/grants", data=raw, headers=headers)
            assert later.status == 403  # outside the window: its id is forgotten, but its sent_at is too old


async def test_a_refusal_reaches_jitbot_as_a_final_error(clock):
    # A receiver whose clock is far from jitbot's refuses every delivery: final, so it is alerted on.
    async with TestServer(make_app(SECRET, now=lambda: NOW + timedelta(hours=1)), host="127.0.0.1") as server:
        async with strategy_posting_to(server, clock) as strategy:
            ctx = GrantContext(
                request_id="r1",
                flow="db_access",
                target=Target("prod", "Prod", {}),
                subject=Subject("U1", "a@example.com"),
                expires_at=NOW + timedelta(hours=2),
            )
            with pytest.raises(StrategyUnavailable, match="HTTP 403") as caught:
                await strategy.grant(ctx)
    assert caught.value.retryable is False
