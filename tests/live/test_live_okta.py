"""Live: the okta strategy's contract against a real Okta org (a real group and a real test user)."""

from __future__ import annotations

import pytest

from tests.live.conftest import (
    LiveEnv,
    build_integration,
    build_strategy,
    env,
    live_context,
    opened,
    revoked_afterwards,
)
from tests.strategies.contract import Harness, run_contract

LIVE = LiveEnv(
    "Okta",
    (
        ("JITBOT_LIVE_OKTA_BASE_URL", "JITBOT_LIVE_OKTA_DOMAIN"),
        "JITBOT_LIVE_OKTA_API_TOKEN",
        "JITBOT_LIVE_OKTA_GROUP_ID",
        "JITBOT_LIVE_OKTA_USER",
    ),
)
pytestmark = LIVE.marks()


def integration_config() -> dict[str, str]:
    """The `integrations:` entry: base_url when given, else the org's domain."""
    location = (
        {"base_url": base_url}
        if (base_url := env("JITBOT_LIVE_OKTA_BASE_URL"))
        else {"domain": LIVE.value("JITBOT_LIVE_OKTA_DOMAIN")}
    )
    return {"type": "okta", **location, "api_token": LIVE.value("JITBOT_LIVE_OKTA_API_TOKEN")}


async def test_okta_strategy_meets_the_contract_in_a_real_org():
    group_id, login = LIVE.value("JITBOT_LIVE_OKTA_GROUP_ID"), LIVE.value("JITBOT_LIVE_OKTA_USER")
    integration = build_integration("okta_live", integration_config())
    strategy = build_strategy(
        {
            "type": "okta",
            "integration": "okta_live",
            "targets": [{"name": "live_test", "label": "jitbot live test", "group_id": group_id}],
        },
        {"okta_live": integration},
    )
    async with opened(integration, strategy):
        user = await integration.find_user(login)
        if user is None:
            pytest.fail(f"JITBOT_LIVE_OKTA_USER: no Okta user has the login or email {login}")

        async def is_held() -> bool:
            # The integration's own uncached read of the user's groups, not the strategy's memory.
            return await integration.is_member(group_id, user.id)

        ctx = live_context(strategy, flow="live_okta", identity=login)
        async with revoked_afterwards(strategy, ctx, is_held):
            await run_contract(Harness(strategy, ctx, is_held))
