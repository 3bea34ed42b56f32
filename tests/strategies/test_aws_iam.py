from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.errors import StrategyUnavailable, SubjectNotFound, TargetNotFound
from core.models import Subject
from core.retry import Backoff
from core.strategy import GrantContext, SupportsIsActive
from strategies.aws import AwsIntegration, AwsIntegrationConfig
from strategies.aws_iam import AwsIamStrategy, AwsIamStrategyConfig
from tests.fakes.aws_fault_proxy import aws_error_reply
from tests.strategies.conftest import FakeTime, target_of
from tests.strategies.contract import Harness, run_contract, run_extend_contract

USER = "alice@example.com"
GROUP = "prod-admins"


def make_strategy(integration: AwsIntegration, time: FakeTime | None = None, group: str = GROUP) -> AwsIamStrategy:
    config = AwsIamStrategyConfig.model_validate(
        {
            "type": "aws_iam",
            "integration": "aws",
            "targets": [{"name": "prod", "label": "Prod admin", "group_name": group}],
        }
    )
    time = time or FakeTime()
    return AwsIamStrategy(config, integrations={"aws": integration}, sleep=time.sleep)


def ctx_for(strategy: AwsIamStrategy, identity: str | None = USER) -> GrantContext:
    return GrantContext(
        request_id="r1",
        flow="aws",
        target=target_of(strategy.config.targets[0]),
        subject=Subject(slack_id="U1", email=identity, identity=identity),
    )


@pytest.fixture
def iam(aws_moto):
    client = aws_moto.client("iam")
    client.create_user(UserName=USER)
    client.create_group(GroupName=GROUP)
    return client


def members(iam, group: str = GROUP) -> list[str]:
    return [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]]


async def test_contract(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    await strategy.open()
    assert isinstance(strategy, SupportsIsActive)

    async def is_held() -> bool:
        return USER in await asyncio.to_thread(members, iam)

    await run_contract(Harness(strategy=strategy, ctx=ctx_for(strategy), is_held=is_held))


async def test_grant_state_names_user_and_group_and_revoke_uses_it(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    result = await strategy.grant(ctx_for(strategy))
    assert dict(result.state) == {"user_name": USER, "group_name": GROUP}

    # The identity override changed after the grant; revoke still removes the user that was added.
    await strategy.revoke(ctx_for(strategy, identity="someone-else"), result.state)
    assert members(iam) == []


async def test_validate_unknown_user_names_the_system(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    issues = await strategy.validate(ctx_for(strategy, identity="nobody@example.com"))
    assert len(issues) == 1
    assert "No AWS IAM user named 'nobody@example.com' was found" in issues[0].user_message
    assert "identities set" in issues[0].user_message
    assert "NoSuchEntity" in issues[0].detail


async def test_validate_without_identity_is_an_issue_and_grant_raises(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    issues = await strategy.validate(ctx_for(strategy, identity=None))
    assert [i.detail for i in issues] == ["subject U1 has no identity for AWS IAM"]
    with pytest.raises(SubjectNotFound):
        await strategy.grant(ctx_for(strategy, identity=None))


async def test_unknown_group_is_a_validation_issue_and_grant_raises_target_not_found(iam, aws_integration):
    strategy = make_strategy(await aws_integration(), group="no-such-group")
    issues = await strategy.validate(ctx_for(strategy))
    assert len(issues) == 1 and issues[0].detail.startswith("TargetNotFound")
    assert "'no-such-group'" in issues[0].user_message
    with pytest.raises(TargetNotFound):
        await strategy.grant(ctx_for(strategy))


async def test_grant_unknown_user_raises_subject_not_found(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    with pytest.raises(SubjectNotFound, match="nobody"):
        await strategy.grant(ctx_for(strategy, identity="nobody"))
    assert members(iam) == []


async def test_revoke_twice_and_revoke_of_deleted_user_succeed(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    result = await strategy.grant(ctx_for(strategy))
    await strategy.revoke(ctx_for(strategy), result.state)
    await strategy.revoke(ctx_for(strategy), result.state)

    await strategy.grant(ctx_for(strategy))
    iam.remove_user_from_group(GroupName=GROUP, UserName=USER)
    iam.delete_user(UserName=USER)
    await strategy.revoke(ctx_for(strategy), result.state)  # the user is gone, so is the access
    assert not await strategy.is_active(ctx_for(strategy))


async def test_is_active_ignores_other_groups_and_group_name_case(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    iam.create_group(GroupName="readers")
    iam.add_user_to_group(GroupName="readers", UserName=USER)
    assert not await strategy.is_active(ctx_for(strategy))
    iam.add_user_to_group(GroupName=GROUP, UserName=USER)
    upper = make_strategy(strategy.integration, group=GROUP.upper())
    assert await upper.is_active(ctx_for(upper))


async def test_throttling_is_retried_with_injected_backoff(iam, aws_proxy, aws_integration):
    # The proxy runs on this test's event loop: it can only answer because boto3 runs in a thread.
    time = FakeTime()
    strategy = make_strategy(await aws_integration(aws_proxy.url), time)
    aws_proxy.script("AddUserToGroup", aws_error_reply("Throttling", "Rate exceeded", query=True), times=2)
    await strategy.grant(ctx_for(strategy))
    assert aws_proxy.count("AddUserToGroup") == 3
    assert time.sleeps == [0.5, 1.0]
    assert members(iam) == [USER]


async def test_throttling_that_never_stops_is_retryable_unavailable(iam, aws_proxy, aws_integration):
    time = FakeTime()
    integration = await aws_integration(aws_proxy.url)
    config = make_strategy(integration).config
    strategy = AwsIamStrategy(
        config,
        integrations={"aws": integration},
        sleep=time.sleep,
        backoff=Backoff(first=1, factor=2, cap=3, attempts=4),
    )
    aws_proxy.script("AddUserToGroup", aws_error_reply("Throttling", query=True), times=10)
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(ctx_for(strategy))
    assert caught.value.retryable
    assert time.sleeps == [1, 2, 3]
    assert aws_proxy.count("AddUserToGroup") == 4


async def test_access_denied_is_not_retryable_and_names_the_action(iam, aws_proxy, aws_integration):
    strategy = make_strategy(await aws_integration(aws_proxy.url))
    aws_proxy.script("RemoveUserFromGroup", aws_error_reply("AccessDenied", "not authorized", 403, query=True))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.revoke(ctx_for(strategy), {"user_name": USER, "group_name": GROUP})
    assert not caught.value.retryable
    assert "iam:RemoveUserFromGroup" in str(caught.value)
    assert "iam:RemoveUserFromGroup" in caught.value.user_message


async def test_server_error_is_retryable(iam, aws_proxy, aws_integration):
    strategy = make_strategy(await aws_integration(aws_proxy.url))
    aws_proxy.script("AddUserToGroup", aws_error_reply("ServiceFailure", "boom", 500, query=True))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(ctx_for(strategy))
    assert caught.value.retryable and "ServiceFailure" in str(caught.value)


async def test_unreachable_endpoint_is_retryable(aws_env, aws_integration):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    strategy = make_strategy(await aws_integration(f"http://127.0.0.1:{port}"))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(ctx_for(strategy))
    assert caught.value.retryable


def test_config_model_checks_keys():
    good = {"type": "aws_iam", "integration": "aws", "targets": [{"name": "a", "label": "A", "group_name": "g"}]}
    AwsIamStrategyConfig.model_validate(good)
    with pytest.raises(ValidationError):
        AwsIamStrategyConfig.model_validate({**good, "targets": [{"name": "a", "label": "A"}]})
    with pytest.raises(ValidationError):
        AwsIamStrategyConfig.model_validate(
            {**good, "targets": [{"name": "a", "label": "A", "group_name": "bad name"}]}
        )
    with pytest.raises(ValidationError):
        AwsIamStrategyConfig.model_validate({**good, "region": "us-east-1"})
    integration = AwsIntegration("aws", AwsIntegrationConfig(type="aws", region="eu-west-1"))
    strategy = AwsIamStrategy(AwsIamStrategyConfig.model_validate(good), integrations={"aws": integration})
    assert strategy.identity_key == "aws" and strategy.system == "AWS IAM"


# --- AwsIntegration --------------------------------------------------------------------------


def test_integration_config_model():
    AwsIntegrationConfig(type="aws", region="us-gov-west-1", role_arn="arn:aws:iam::123456789012:role/jit/bot")
    for bad in (
        {"region": "useast1"},
        {"region": "us-east-1", "role_arn": "arn:aws:iam::123:role/x"},
        {"region": "us-east-1", "endpoint_url": "localhost:4566"},
        {"region": "us-east-1", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            AwsIntegrationConfig.model_validate({"type": "aws", **bad})


async def test_integration_caches_one_client_per_service_and_applies_endpoint(aws_moto, aws_integration):
    integration = await aws_integration()
    clients = await asyncio.gather(*[asyncio.to_thread(integration.client, "iam") for _ in range(8)])
    assert all(c is clients[0] for c in clients)
    assert integration.client("sso-admin").meta.endpoint_url == aws_moto.url
    assert integration.client("iam").meta.endpoint_url == aws_moto.url
    assert (await integration.call("sts", "get_caller_identity"))["Account"] == "123456789012"


def test_production_clients_use_standard_retries_and_timeouts(aws_env):
    integration = AwsIntegration("aws", AwsIntegrationConfig(type="aws", region="eu-west-1"))
    config = integration.client("iam").meta.config
    assert config.retries["mode"] == "standard" and config.retries["total_max_attempts"] == 5
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert integration.client("sso-admin").meta.region_name == "eu-west-1"


class SteppingClock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


async def test_role_arn_is_assumed_with_sts_and_refreshed_before_expiry(aws_proxy, aws_integration):
    clock = SteppingClock()
    role = "arn:aws:iam::123456789012:role/jitbot-role"
    integration = await aws_integration(aws_proxy.url, role_arn=role, clock=clock)

    identity = await integration.call("sts", "get_caller_identity")
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/jitbot-role/jitbot"
    await integration.call("iam", "list_users")
    assert aws_proxy.count("AssumeRole") == 1  # the temporary credentials are reused

    clock.at += timedelta(minutes=55)  # moto's credentials last an hour; botocore refreshes in the last 10 min
    await integration.call("iam", "list_users")
    assert aws_proxy.count("AssumeRole") == 2


async def test_failed_assume_role_is_a_strategy_error_naming_sts(aws_proxy, aws_integration):
    integration = await aws_integration(aws_proxy.url, role_arn="arn:aws:iam::123456789012:role/jitbot-role")
    aws_proxy.script("AssumeRole", aws_error_reply("AccessDenied", "no trust", 403, query=True))
    strategy = make_strategy(integration)
    with pytest.raises(StrategyUnavailable, match="sts:AssumeRole") as caught:
        await strategy.grant(ctx_for(strategy))
    assert not caught.value.retryable


async def test_extend_keeps_the_iam_group_membership(iam, aws_integration):
    strategy = make_strategy(await aws_integration())
    await strategy.open()

    async def is_held() -> bool:
        return USER in await asyncio.to_thread(members, iam)

    await run_extend_contract(Harness(strategy=strategy, ctx=ctx_for(strategy), is_held=is_held))
