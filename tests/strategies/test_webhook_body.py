"""The body a webhook receiver gets: every documented key, times that are never null, and replay markers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime

import pytest

from core.errors import StrategyUnavailable
from core.models import Subject
from strategies.webhook import WebhookStrategy
from tests.fakes.clock import FrozenClock
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.strategies.test_webhook import SECRET, config, context

NOW = datetime(2026, 3, 4, 12, 0, 7, 250_000, tzinfo=UTC)
BODY_KEYS = [
    "action",
    "request_id",
    "flow",
    "target",
    "requester",
    "fields",
    "granted_at",
    "expires_at",
    "sent_at",
    "delivery_id",
]


@pytest.fixture
async def receiver():
    async with WebhookReceiver(secret=SECRET) as server:
        yield server


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def strategy(receiver, clock, opened) -> WebhookStrategy:
    return await opened(WebhookStrategy(config(receiver.url, secret=SECRET), integrations={}, clock=clock))


async def test_a_grant_delivery_carries_every_documented_key_in_order(receiver, strategy):
    await strategy.grant(context())
    [delivery] = receiver.accepted("grant")
    assert list(json.loads(delivery.raw)) == BODY_KEYS
    body = delivery.body
    assert {k: v for k, v in body.items() if k != "delivery_id"} == {
        "action": "grant",
        "request_id": "req-42",
        "flow": "db_access",
        "target": {"name": "prod_admin", "label": "Prod Admin", "settings": {"database": "prod", "role": "admin"}},
        "requester": {"slack_id": "U1", "email": "ann@example.com", "identity": "ann@example.com"},
        "fields": {"reason": "incident 7", "duration": "1h"},
        "granted_at": "2026-03-04T12:00:00Z",
        "expires_at": "2026-03-04T13:00:00Z",
        "sent_at": "2026-03-04T12:00:07Z",
    }
    assert re.fullmatch(r"[0-9a-f]{32}", body["delivery_id"])


async def test_granted_at_on_a_grant_without_one_is_the_current_time_never_null(receiver, strategy):
    await strategy.grant(context(granted_at=None))
    [delivery] = receiver.accepted("grant")
    assert delivery.body["granted_at"] == "2026-03-04T12:00:07Z"


async def test_granted_at_on_a_revoke_is_the_stored_time_of_the_grant(receiver, strategy, clock):
    result = await strategy.grant(context())
    clock.advance(hours=1)
    await strategy.revoke(context(), result.state)
    [revoke] = receiver.accepted("revoke")
    assert revoke.body["granted_at"] == "2026-03-04T12:00:00Z"
    assert revoke.body["sent_at"] == "2026-03-04T13:00:07Z"


async def test_a_revoke_of_a_grant_in_doubt_still_has_a_granted_at(receiver, strategy):
    # After a crash the engine may revoke a grant whose time it never recorded.
    await strategy.revoke(context(granted_at=None), {})
    [revoke] = receiver.accepted("revoke")
    assert revoke.body["granted_at"] == "2026-03-04T12:00:07Z"


async def test_identity_is_the_stored_override_and_falls_back_to_the_email(receiver, strategy):
    await strategy.grant(context(subject=Subject("U1", "ann@example.com", identity="ann.admin")))
    await strategy.grant(context(request_id="req-43", subject=Subject("U1", "ann@example.com", identity=None)))
    override, fallback = receiver.accepted("grant")
    assert override.body["requester"] == {"slack_id": "U1", "email": "ann@example.com", "identity": "ann.admin"}
    assert fallback.body["requester"]["identity"] == "ann@example.com"


async def test_every_attempt_is_a_new_signed_delivery_so_a_receiver_can_refuse_replays(receiver, strategy, clock):
    receiver.fail_next(1, status=503)
    with pytest.raises(StrategyUnavailable):
        await strategy.grant(context())
    clock.advance(seconds=30)
    await strategy.grant(context())  # the engine's retry
    first, second = receiver.deliveries
    assert first.body["delivery_id"] != second.body["delivery_id"]
    assert (first.body["sent_at"], second.body["sent_at"]) == ("2026-03-04T12:00:07Z", "2026-03-04T12:00:37Z")
    for delivery in (first, second):
        signed = hmac.new(SECRET.encode(), delivery.raw, hashlib.sha256).hexdigest()
        assert delivery.headers["X-Jitbot-Signature"] == f"sha256={signed}"
    # The de-duplication key stays the same across attempts; only the replay markers change.
    assert first.headers["X-Jitbot-Delivery"] == second.headers["X-Jitbot-Delivery"] == "req-42:grant"


async def test_without_an_injected_clock_sent_at_is_the_wall_clock(receiver, opened):
    strategy = await opened(WebhookStrategy(config(receiver.url, secret=SECRET), integrations={}))
    before = datetime.now(UTC).replace(microsecond=0)
    await strategy.grant(context(granted_at=None))
    after = datetime.now(UTC)
    body = receiver.deliveries[0].body
    for key in ("sent_at", "granted_at"):
        moment = datetime.fromisoformat(body[key].replace("Z", "+00:00"))
        assert before <= moment <= after
