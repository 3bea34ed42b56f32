"""Live: the aptible strategy's contract against a real Aptible organization, role and test user."""

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
    "Aptible",
    (
        "JITBOT_LIVE_APTIBLE_ORGANIZATION_ID",
        "JITBOT_LIVE_APTIBLE_USERNAME",
        "JITBOT_LIVE_APTIBLE_PASSWORD",
        "JITBOT_LIVE_APTIBLE_ROLE_ID",
        "JITBOT_LIVE_APTIBLE_USER_EMAIL",
    ),
)
pytestmark = LIVE.marks()


def integration_config() -> dict[str, str]:
    """The `integrations:` entry: the organization and the bot user; auth_url only when overridden."""
    raw = {
        "type": "aptible",
        "organization_id": LIVE.value("JITBOT_LIVE_APTIBLE_ORGANIZATION_ID"),
        "username": LIVE.value("JITBOT_LIVE_APTIBLE_USERNAME"),
        "password": LIVE.value("JITBOT_LIVE_APTIBLE_PASSWORD"),
    }
    if auth_url := env("JITBOT_LIVE_APTIBLE_AUTH_URL"):
        raw["auth_url"] = auth_url
    return raw


async def test_aptible_strategy_meets_the_contract_in_a_real_organization():
    role_id, email = LIVE.value("JITBOT_LIVE_APTIBLE_ROLE_ID"), LIVE.value("JITBOT_LIVE_APTIBLE_USER_EMAIL")
    integration = build_integration("aptible_live", integration_config())
    strategy = build_strategy(
        {
            "type": "aptible",
            "integration": "aptible_live",
            "targets": [{"name": "live_test", "label": "jitbot live test", "role_id": role_id}],
        },
        {"aptible_live": integration},
    )
    async with opened(integration, strategy):
        user = await integration.find_user_by_email(email)
        if user is None:
            pytest.fail(f"JITBOT_LIVE_APTIBLE_USER_EMAIL: no user {email} in the organization")
        # Revoking a user's last role removes them from the organization, so the test needs a baseline role.
        if not any(role.id != role_id for role in await integration.user_roles(user.id)):
            pytest.fail(
                f"{email} has no role in the organization besides {role_id}; revoking it would remove "
                "them from the organization. Give the test user a baseline role first."
            )

        async def is_held() -> bool:
            return any(m.user_id == user.id for m in await integration.role_memberships(role_id))

        ctx = live_context(strategy, flow="live_aptible", identity=email)
        async with revoked_afterwards(strategy, ctx, is_held):
            await run_contract(Harness(strategy, ctx, is_held))
