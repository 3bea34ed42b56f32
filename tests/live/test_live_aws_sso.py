"""Live: the aws_sso strategy's contract against real IAM Identity Center (a permission set, an account, a user)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

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

LIVE = LiveEnv(
    "AWS IAM Identity Center",
    (
        "JITBOT_LIVE_AWS_REGION",
        "JITBOT_LIVE_AWS_SSO_INSTANCE_ARN",
        "JITBOT_LIVE_AWS_SSO_PERMISSION_SET_ARN",
        "JITBOT_LIVE_AWS_SSO_ACCOUNT_ID",
        "JITBOT_LIVE_AWS_SSO_USER_EMAIL",
    ),
)
pytestmark = LIVE.marks()


async def principal_id(integration, instance_arn: str, email: str) -> str:
    """The Identity Store user id of `email`, read through the integration's own clients."""
    pages = await integration.paginate("sso-admin", "list_instances")
    stores = [
        i["IdentityStoreId"] for page in pages for i in page.get("Instances", []) if i["InstanceArn"] == instance_arn
    ]
    if not stores:
        pytest.fail(f"JITBOT_LIVE_AWS_SSO_INSTANCE_ARN: {instance_arn} is not an instance in this account and region")
    try:
        found = await integration.call(
            "identitystore",
            "get_user_id",
            IdentityStoreId=stores[0],
            AlternateIdentifier={"UniqueAttribute": {"AttributePath": "emails.value", "AttributeValue": email}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            pytest.fail(f"JITBOT_LIVE_AWS_SSO_USER_EMAIL: no Identity Center user has the email {email}")
        raise
    return found["UserId"]


async def test_aws_sso_strategy_meets_the_contract_in_a_real_instance():
    await require_aws_credentials()
    instance_arn = LIVE.value("JITBOT_LIVE_AWS_SSO_INSTANCE_ARN")
    permission_set_arn = LIVE.value("JITBOT_LIVE_AWS_SSO_PERMISSION_SET_ARN")
    account_id, email = LIVE.value("JITBOT_LIVE_AWS_SSO_ACCOUNT_ID"), LIVE.value("JITBOT_LIVE_AWS_SSO_USER_EMAIL")
    integration = build_integration("aws_live", aws_integration_config())
    strategy = build_strategy(
        {
            "type": "aws_sso",
            "integration": "aws_live",
            "instance_arn": instance_arn,
            "targets": [
                {
                    "name": "live_test",
                    "label": "jitbot live test",
                    "permission_set_arn": permission_set_arn,
                    "account_id": account_id,
                }
            ],
        },
        {"aws_live": integration},
    )
    async with opened(integration, strategy):
        user_id = await principal_id(integration, instance_arn, email)

        async def is_held() -> bool:
            pages = await integration.paginate(
                "sso-admin",
                "list_account_assignments",
                InstanceArn=instance_arn,
                AccountId=account_id,
                PermissionSetArn=permission_set_arn,
            )
            return any(
                a["PrincipalType"] == "USER" and a["PrincipalId"] == user_id
                for page in pages
                for a in page.get("AccountAssignments", [])
            )

        ctx = live_context(strategy, flow="live_aws_sso", identity=email)
        settling = SettlingStrategy(strategy, is_held)
        async with revoked_afterwards(settling, ctx, is_held):
            await run_contract(Harness(settling, ctx, is_held))
