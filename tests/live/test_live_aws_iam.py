"""Live: the aws_iam strategy's contract against a real AWS account (an IAM group and a test IAM user)."""

from __future__ import annotations

from tests.live.conftest import (
    LiveEnv,
    SettlingStrategy,
    aws_integration_config,
    build_integration,
    build_strategy,
    live_context,
    opened,
    require_aws_credentials,
    revoked_afterwards,
)
from tests.strategies.contract import Harness, run_contract

LIVE = LiveEnv("AWS IAM", ("JITBOT_LIVE_AWS_REGION", "JITBOT_LIVE_AWS_IAM_GROUP", "JITBOT_LIVE_AWS_IAM_USER"))
pytestmark = LIVE.marks()


async def test_aws_iam_strategy_meets_the_contract_in_a_real_account():
    await require_aws_credentials()
    group, user = LIVE.value("JITBOT_LIVE_AWS_IAM_GROUP"), LIVE.value("JITBOT_LIVE_AWS_IAM_USER")
    integration = build_integration("aws_live", aws_integration_config())
    strategy = build_strategy(
        {
            "type": "aws_iam",
            "integration": "aws_live",
            "targets": [{"name": "live_test", "label": "jitbot live test", "group_name": group}],
        },
        {"aws_live": integration},
    )

    async def is_held() -> bool:
        # iam:GetGroup through the integration's own boto3 client (the strategy's is_active uses ListGroupsForUser).
        pages = await integration.paginate("iam", "get_group", GroupName=group)
        return any(member["UserName"] == user for page in pages for member in page.get("Users", []))

    async with opened(integration, strategy):
        ctx = live_context(strategy, flow="live_aws_iam", identity=user)
        settling = SettlingStrategy(strategy, is_held)
        async with revoked_afterwards(settling, ctx, is_held):
            await run_contract(Harness(settling, ctx, is_held))
