"""Live: the webhook strategy against a real receiver - deliveries accepted and idempotent.

A generic receiver has no read API, so whether access is held cannot be checked here: this test
runs the contract's sequence (validate, grant twice, revoke twice) and asserts only that every
delivery is accepted. Check the receiver's own records to see that it acted on them.
"""

from __future__ import annotations

import json

from core.strategy import GrantResult
from tests.live.conftest import LiveEnv, build_strategy, env, live_context, opened, revoked_afterwards

LIVE = LiveEnv("webhook", ("JITBOT_LIVE_WEBHOOK_URL",))
pytestmark = LIVE.marks()

DEFAULT_EMAIL = "jitbot-live-test@example.com"


def strategy_config() -> dict:
    """The `strategy:` block: the receiver's URL, its secret if it checks signatures, one test target."""
    settings = json.loads(env("JITBOT_LIVE_WEBHOOK_TARGET_SETTINGS") or "{}")
    raw = {
        "type": "webhook",
        "url": LIVE.value("JITBOT_LIVE_WEBHOOK_URL"),
        "targets": [{"name": "jitbot_live_test", "label": "jitbot live test", "settings": settings}],
    }
    if secret := env("JITBOT_LIVE_WEBHOOK_SECRET"):
        raw["secret"] = secret
    return raw


async def test_webhook_grant_and_revoke_are_accepted_twice_each():
    strategy = build_strategy(strategy_config(), {})
    async with opened(strategy):
        ctx = live_context(
            strategy, flow="live_webhook", identity=env("JITBOT_LIVE_WEBHOOK_USER_EMAIL") or DEFAULT_EMAIL
        )
        assert await strategy.validate(ctx) == []
        async with revoked_afterwards(strategy, ctx, is_held=None) as granted:
            first = await strategy.grant(ctx)
            assert isinstance(first, GrantResult)
            granted.update(first.state)  # the clean-up revoke then carries the receiver's grant_id
            second = await strategy.grant(ctx)  # the same X-Jitbot-Delivery again: a retried grant
            assert isinstance(second, GrantResult)
            await strategy.revoke(ctx, first.state)
            await strategy.revoke(ctx, first.state)  # revoking what is already gone must be accepted
