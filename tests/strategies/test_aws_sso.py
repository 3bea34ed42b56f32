from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import StartupError, StrategyUnavailable, SubjectNotFound
from core.models import Subject
from core.strategy import GrantContext, SupportsIsActive
from strategies.aws import AwsIntegration
from strategies.aws_sso import AwsSsoStrategy, AwsSsoStrategyConfig
from tests.fakes.aws_fault_proxy import Reply, Rewrite, aws_error_reply
from tests.fakes.moto_server import SSO_ACCOUNT as ACCOUNT
from tests.fakes.moto_server import IdentityCenter, seed_identity_center
from tests.strategies.conftest import FakeTime, target_of
from tests.strategies.contract import Harness, run_contract, run_extend_contract

EMAIL = "alice@example.com"
CREATE, DESCRIBE_CREATE = "CreateAccountAssignment", "DescribeAccountAssignmentCreationStatus"
DELETE, DESCRIBE_DELETE = "DeleteAccountAssignment", "DescribeAccountAssignmentDeletionStatus"


@pytest.fixture
def sso(aws_moto) -> IdentityCenter:
    return seed_identity_center(aws_moto, email=EMAIL)


def make_strategy(
    sso: IdentityCenter, integration: AwsIntegration, time: FakeTime | None = None, **keys: Any
) -> AwsSsoStrategy:
    permission_set_arn = keys.pop("permission_set_arn", sso.permission_set_arn)
    config = AwsSsoStrategyConfig.model_validate(
        {
            "type": "aws_sso",
            "integration": "aws",
            "instance_arn": sso.instance_arn,
            **keys,
            "targets": [
                {"name": "prod", "label": "Prod admin", "account_id": ACCOUNT, "permission_set_arn": permission_set_arn}
            ],
        }
    )
    time = time or FakeTime()
    return AwsSsoStrategy(config, integrations={"aws": integration}, sleep=time.sleep, monotonic=time.monotonic)


def ctx_for(strategy: AwsSsoStrategy, identity: str | None = EMAIL) -> GrantContext:
    return GrantContext(
        request_id="r1",
        flow="aws",
        target=target_of(strategy.config.targets[0]),
        subject=Subject(slack_id="U1", email=identity, identity=identity),
    )


@pytest.mark.parametrize("identity, store_key", [(EMAIL, False), ("alice", True)], ids=["by-email", "by-username"])
async def test_contract(sso, aws_integration, identity, store_key):
    keys = {"identity_store_id": sso.identity_store_id} if store_key else {}
    strategy = make_strategy(sso, await aws_integration(), **keys)
    await strategy.open()
    assert isinstance(strategy, SupportsIsActive)

    async def is_held() -> bool:
        return sso.user_id in await asyncio.to_thread(sso.holders)

    await run_contract(Harness(strategy=strategy, ctx=ctx_for(strategy, identity), is_held=is_held))
    assert sso.holders() == []


async def test_grant_state_carries_principal_and_revoke_needs_no_lookup(sso, aws_moto, aws_integration):
    strategy = make_strategy(sso, await aws_integration())
    result = await strategy.grant(ctx_for(strategy))
    assert dict(result.state) == {
        "principal_id": sso.user_id,
        "instance_arn": sso.instance_arn,
        "account_id": ACCOUNT,
        "permission_set_arn": sso.permission_set_arn,
    }
    aws_moto.client("identitystore").delete_user(IdentityStoreId=sso.identity_store_id, UserId=sso.user_id)
    await strategy.revoke(ctx_for(strategy), result.state)  # moto keeps the assignment; we delete it
    assert sso.holders() == []


async def test_identity_store_is_read_once_from_the_instance_at_open(sso, aws_proxy, aws_integration):
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url))
    await strategy.open()
    await strategy.grant(ctx_for(strategy))
    await strategy.is_active(ctx_for(strategy))
    assert aws_proxy.count("ListInstances") == 1


async def test_open_survives_a_passing_outage_and_reads_the_store_on_first_use(sso, aws_proxy, aws_integration):
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url))
    aws_proxy.script("ListInstances", aws_error_reply("InternalServerException", "try later", 500))
    await strategy.open()
    assert await strategy.validate(ctx_for(strategy)) == []
    assert aws_proxy.count("ListInstances") == 2


async def test_open_fails_for_an_instance_that_does_not_exist(sso, aws_integration):
    unknown = "arn:aws:sso:::instance/ssoins-0000000000000000"
    strategy = make_strategy(sso, await aws_integration(), instance_arn=unknown)
    with pytest.raises(StartupError, match="sso:ListInstances"):
        await strategy.open()


async def test_validate_unknown_user_names_identity_center(sso, aws_integration):
    strategy = make_strategy(sso, await aws_integration())
    await strategy.open()
    issues = await strategy.validate(ctx_for(strategy, "nobody@example.com"))
    assert len(issues) == 1
    assert "AWS IAM Identity Center" in issues[0].user_message and "nobody@example.com" in issues[0].user_message
    assert "ResourceNotFoundException" in issues[0].detail
    with pytest.raises(SubjectNotFound):
        await strategy.grant(ctx_for(strategy, "nobody@example.com"))
    with pytest.raises(SubjectNotFound):
        await strategy.grant(ctx_for(strategy, None))
    assert [i.detail for i in await strategy.validate(ctx_for(strategy, None))] == [
        "subject U1 has no identity for AWS IAM Identity Center"
    ]


async def test_validate_unknown_permission_set(sso, aws_integration):
    missing = sso.instance_arn.replace(":instance/", ":permissionSet/") + "/ps-0000000000000000"
    strategy = make_strategy(sso, await aws_integration(), permission_set_arn=missing)
    issues = await strategy.validate(ctx_for(strategy))
    assert len(issues) == 1 and issues[0].detail.startswith("TargetNotFound")


async def test_existing_assignment_is_not_created_again(sso, aws_proxy, aws_integration):
    sso.admin.create_account_assignment(**sso.assignment())
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url))
    await strategy.grant(ctx_for(strategy))
    assert aws_proxy.count(CREATE) == 0 and sso.holders() == [sso.user_id]


async def test_in_progress_creation_is_polled_with_growing_pauses(sso, aws_proxy, aws_integration):
    time = FakeTime()
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), time)
    aws_proxy.script(CREATE, Rewrite("IN_PROGRESS"))
    aws_proxy.script(DESCRIBE_CREATE, Rewrite("IN_PROGRESS"), times=3)  # the 4th is moto's SUCCEEDED
    await strategy.grant(ctx_for(strategy))
    assert aws_proxy.count(DESCRIBE_CREATE) == 4
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert sso.holders() == [sso.user_id]


async def test_failed_creation_raises_unavailable_with_the_reason(sso, aws_proxy, aws_integration):
    time = FakeTime()
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), time)
    pending = {"Status": "IN_PROGRESS", "RequestId": "11111111-2222-3333-4444-555555555555"}
    aws_proxy.script(CREATE, Reply(200, {"AccountAssignmentCreationStatus": pending}))
    aws_proxy.script(DESCRIBE_CREATE, Reply(200, {"AccountAssignmentCreationStatus": pending}))
    reason = "Received a 404 status error: Not supported account."
    aws_proxy.script(
        DESCRIBE_CREATE,
        Reply(200, {"AccountAssignmentCreationStatus": {**pending, "Status": "FAILED", "FailureReason": reason}}),
    )
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(ctx_for(strategy))
    assert not caught.value.retryable
    assert reason in str(caught.value) and reason in caught.value.user_message
    assert time.sleeps == [0.5, 1.0] and sso.holders() == []


async def test_polling_gives_up_at_poll_timeout_for_good_and_the_cleanup_removes_the_late_assignment(
    sso, aws_proxy, aws_integration
):
    time = FakeTime()
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), time, poll_timeout="10s")
    aws_proxy.script(CREATE, Rewrite("IN_PROGRESS"))
    aws_proxy.script(DESCRIBE_CREATE, Rewrite("IN_PROGRESS"), times=4)
    with pytest.raises(StrategyUnavailable, match="still IN_PROGRESS after 10s") as caught:
        await strategy.grant(ctx_for(strategy))
    assert not caught.value.retryable and caught.value.grant_state["creation_request_id"]
    assert sum(time.sleeps) <= 10 and time.sleeps == [0.5, 1.0, 2.0, 4.0]
    # The creation finished later (moto has it): the engine's clean-up revoke, given the state, deletes it.
    await strategy.revoke(ctx_for(strategy), caught.value.grant_state)
    assert aws_proxy.count(CREATE) == 1 and sso.holders() == []


async def test_throttled_creation_is_retried_without_a_duplicate(sso, aws_proxy, aws_integration):
    time = FakeTime()
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), time)
    aws_proxy.script(CREATE, aws_error_reply("ThrottlingException", "Rate exceeded"))
    await strategy.grant(ctx_for(strategy))
    assert aws_proxy.count(CREATE) == 2 and time.sleeps == [0.5]
    assert sso.holders() == [sso.user_id]


async def test_conflicting_deletion_is_retried(sso, aws_proxy, aws_integration):
    time = FakeTime()
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), time)
    result = await strategy.grant(ctx_for(strategy))
    conflict = aws_error_reply("ConflictException", "an operation is in progress on this permission set")
    aws_proxy.script(DELETE, conflict, times=2)
    aws_proxy.script(DESCRIBE_DELETE, Rewrite("IN_PROGRESS"))
    await strategy.revoke(ctx_for(strategy), result.state)
    assert aws_proxy.count(DELETE) == 3 and aws_proxy.count(DESCRIBE_DELETE) == 0
    assert time.sleeps == [0.5, 1.0] and sso.holders() == []


async def test_deletion_polled_through_in_progress(sso, aws_proxy, aws_integration):
    time = FakeTime()
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), time)
    result = await strategy.grant(ctx_for(strategy))
    aws_proxy.script(DELETE, Rewrite("IN_PROGRESS"))
    aws_proxy.script(DESCRIBE_DELETE, Rewrite("IN_PROGRESS"))
    await strategy.revoke(ctx_for(strategy), result.state)
    assert aws_proxy.count(DESCRIBE_DELETE) == 2 and time.sleeps == [0.5, 1.0]


async def test_failed_deletion_of_a_held_assignment_is_retryable(sso, aws_proxy, aws_integration):
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url))
    result = await strategy.grant(ctx_for(strategy))
    pending = {"Status": "IN_PROGRESS", "RequestId": "66666666-7777-8888-9999-000000000000"}
    aws_proxy.script(DELETE, Reply(200, {"AccountAssignmentDeletionStatus": pending}))
    aws_proxy.script(
        DESCRIBE_DELETE,
        Reply(
            200, {"AccountAssignmentDeletionStatus": {**pending, "Status": "FAILED", "FailureReason": "role is in use"}}
        ),
    )
    with pytest.raises(StrategyUnavailable, match="role is in use") as caught:
        await strategy.revoke(ctx_for(strategy), result.state)
    assert caught.value.retryable and sso.holders() == [sso.user_id]
    await strategy.revoke(ctx_for(strategy), result.state)  # the engine's retry succeeds
    assert sso.holders() == []


async def test_revoke_of_an_assignment_removed_elsewhere_succeeds(sso, aws_proxy, aws_integration):
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url))
    result = await strategy.grant(ctx_for(strategy))
    sso.admin.delete_account_assignment(**sso.assignment())
    await strategy.revoke(ctx_for(strategy), result.state)
    # Between our check and our delete someone else removed it: ResourceNotFoundException is success.
    aws_proxy.script(DELETE, aws_error_reply("ResourceNotFoundException", "no such assignment"))
    await strategy.grant(ctx_for(strategy))
    await strategy.revoke(ctx_for(strategy), result.state)
    assert aws_proxy.count(DELETE) == 1


async def test_access_denied_names_the_sso_action(sso, aws_proxy, aws_integration):
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url))
    aws_proxy.script(CREATE, aws_error_reply("AccessDeniedException", "User is not authorized", 403))
    with pytest.raises(StrategyUnavailable, match="sso:CreateAccountAssignment") as caught:
        await strategy.grant(ctx_for(strategy))
    assert not caught.value.retryable


def test_config_model():
    instance = "ssoins-1234567890abcdef"
    base = {
        "type": "aws_sso",
        "integration": "aws",
        "instance_arn": f"arn:aws:sso:::instance/{instance}",
        "targets": [
            {
                "name": "prod",
                "label": "Prod",
                "account_id": "012345678901",
                "permission_set_arn": f"arn:aws:sso:::permissionSet/{instance}/ps-1234567890abcdef",
            }
        ],
    }
    config = AwsSsoStrategyConfig.model_validate(base)
    assert config.poll_timeout == timedelta(seconds=120) and config.identity_store_id is None
    assert AwsSsoStrategyConfig.model_validate({**base, "poll_timeout": "5m"}).poll_timeout == timedelta(minutes=5)
    target = base["targets"][0]
    for bad_target in (
        {**target, "account_id": 12345678901},
        {**target, "account_id": "12345678901"},
        {**target, "permission_set_arn": "ps-1"},
    ):
        with pytest.raises(ValidationError):
            AwsSsoStrategyConfig.model_validate({**base, "targets": [bad_target]})
    with pytest.raises(ValidationError, match="in quotes"):
        AwsSsoStrategyConfig.model_validate({**base, "targets": [{**target, "account_id": 123456789012}]})
    with pytest.raises(ValidationError):
        AwsSsoStrategyConfig.model_validate({**base, "instance_arn": "ssoins-1"})


async def test_extend_keeps_the_sso_assignment(sso, aws_integration):
    strategy = make_strategy(sso, await aws_integration())
    await strategy.open()

    async def is_held() -> bool:
        return sso.user_id in await asyncio.to_thread(sso.holders)

    await run_extend_contract(Harness(strategy=strategy, ctx=ctx_for(strategy), is_held=is_held))
    assert sso.holders() == []
