"""Listing who holds a target (SupportsHolders), checked against each target system: every page is
read, a listing that cannot be done raises (never an empty list), and removing a holder removes it."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import StrategyError, TargetNotFound
from core.models import Target
from core.strategy import Holder, SupportsHolders
from strategies.aptible import AptibleIntegration, AptibleIntegrationConfig, AptibleStrategy, AptibleStrategyConfig
from strategies.aws_iam import AwsIamStrategy, AwsIamStrategyConfig
from strategies.aws_sso import AwsSsoStrategy, AwsSsoStrategyConfig
from strategies.okta import OktaIntegration, OktaIntegrationConfig, OktaStrategy, OktaStrategyConfig
from strategies.registry import STRATEGY_TYPES
from tests.fakes.aptible_api import AptibleFake
from tests.fakes.moto_server import SSO_ACCOUNT, seed_identity_center
from tests.fakes.okta_api import OktaFake
from tests.strategies.conftest import FakeTime


def test_the_membership_strategies_can_list_holders_and_the_others_cannot() -> None:
    listable = sorted(name for name, cls in STRATEGY_TYPES.items() if issubclass(cls, SupportsHolders))
    assert listable == ["aptible", "aws_iam", "aws_sso", "okta"]


# ── Okta ──────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture
async def okta():
    async with OktaFake(page_size=2) as fake:
        yield fake


async def okta_strategy(okta: OktaFake, opened) -> OktaStrategy:
    fake_time = FakeTime()
    config = OktaIntegrationConfig(type="okta", base_url=okta.url, api_token=okta.api_token)
    integration = await opened(OktaIntegration("okta", config, sleep=fake_time.sleep, monotonic=fake_time.monotonic))
    strategy_config = OktaStrategyConfig(
        type="okta", integration="okta", targets=[{"name": "prod", "label": "Prod", "group_id": "x"}]
    )
    return await opened(OktaStrategy(strategy_config, integrations={"okta": integration}))


async def test_okta_lists_every_member_across_pages_and_removes_one(okta, opened) -> None:
    group = okta.add_group("prod-admins")
    ids = [okta.add_user(f"user{i}@example.com") for i in range(5)]
    okta.members[group] |= set(ids)
    okta.members[okta.add_group("other")].add(okta.add_user("elsewhere@example.com"))
    strategy = await okta_strategy(okta, opened)
    target = Target("prod", "Prod", {"group_id": group})

    holders = await strategy.holders(target)

    assert sorted(h.id for h in holders) == sorted(ids)
    assert holders[0].names == {holders[0].name.casefold()}  # login and email are the same here
    assert len(okta.calls_to("GET", f"/api/v1/groups/{group}/users")) == 3  # 5 members, pages of 2
    await strategy.remove_holder(target, holders[0])
    assert not okta.is_member(group, holders[0].id)
    assert okta.members[group] == set(ids) - {holders[0].id}


async def test_okta_a_missing_group_or_a_failing_api_is_an_error_not_an_empty_list(okta, opened) -> None:
    strategy = await okta_strategy(okta, opened)
    with pytest.raises(TargetNotFound):
        await strategy.holders(Target("prod", "Prod", {"group_id": "00gnothere"}))
    group = okta.add_group("prod-admins")
    okta.members[group].add(okta.add_user("a@example.com"))
    okta.fail(20, status=503)
    with pytest.raises(StrategyError):
        await strategy.holders(Target("prod", "Prod", {"group_id": group}))


# ── Aptible ──────────────────────────────────────────────────────────────────────────────────────


async def test_aptible_lists_role_members_by_email_and_a_missing_role_is_an_error(opened) -> None:
    async with AptibleFake(page_size=2) as aptible:
        org = aptible.add_organization("Acme")
        owners = aptible.add_role(org, "Owners", type="owner")
        aptible.add_membership(owners, aptible.add_user("jitbot@acme.example", password="pw"))
        role = aptible.add_role(org, "Prod Deploy")
        members = [aptible.add_user(f"dev{i}@acme.example") for i in range(3)]
        for user in members:
            aptible.add_membership(role, user)
        config = AptibleIntegrationConfig(
            type="aptible", organization_id=org, username="jitbot@acme.example", password="pw", auth_url=aptible.url
        )
        integration = await opened(AptibleIntegration("aptible", config))
        strategy = AptibleStrategy(
            AptibleStrategyConfig(
                type="aptible", integration="aptible", targets=[{"name": "p", "label": "P", "role_id": role}]
            ),
            integrations={"aptible": integration},
        )
        target = Target("p", "P", {"role_id": role})

        holders = await strategy.holders(target)

        assert sorted(h.name for h in holders) == [f"dev{i}@acme.example" for i in range(3)]
        await strategy.remove_holder(target, next(h for h in holders if h.name == "dev1@acme.example"))
        assert not aptible.has_role(role, members[1]) and aptible.has_role(role, members[0])
        with pytest.raises(TargetNotFound):
            await strategy.holders(Target("p", "P", {"role_id": "no-such-role"}))


# ── AWS IAM and IAM Identity Center (moto) ─────────────────────────────────────────────────────────


async def test_aws_iam_lists_group_members_and_a_missing_group_is_an_error(aws_moto, aws_integration) -> None:
    iam = aws_moto.client("iam")
    iam.create_group(GroupName="Admins")
    for user in ("alice", "bob"):
        iam.create_user(UserName=user)
        iam.add_user_to_group(GroupName="Admins", UserName=user)
    integration = await aws_integration()
    strategy = AwsIamStrategy(
        AwsIamStrategyConfig(
            type="aws_iam", integration="aws", targets=[{"name": "a", "label": "A", "group_name": "Admins"}]
        ),
        integrations={"aws": integration},
    )
    target = Target("a", "A", {"group_name": "Admins"})
    assert sorted(h.name for h in await strategy.holders(target)) == ["alice", "bob"]
    await strategy.remove_holder(target, Holder(id="bob", name="bob"))
    users = await asyncio.to_thread(lambda: iam.get_group(GroupName="Admins")["Users"])
    assert [u["UserName"] for u in users] == ["alice"]
    with pytest.raises(TargetNotFound):
        await strategy.holders(Target("a", "A", {"group_name": "Gone"}))


async def test_aws_sso_names_users_and_groups_and_removes_a_group_assignment(aws_moto, aws_integration) -> None:
    sso = seed_identity_center(aws_moto, email="alice@example.com")
    store = aws_moto.client("identitystore")
    group = store.create_group(IdentityStoreId=sso.identity_store_id, DisplayName="Contractors")["GroupId"]
    sso.admin.create_account_assignment(**sso.assignment())
    sso.admin.create_account_assignment(**{**sso.assignment(), "PrincipalType": "GROUP", "PrincipalId": group})
    integration = await aws_integration()
    target_keys = {"permission_set_arn": sso.permission_set_arn, "account_id": SSO_ACCOUNT}
    strategy = AwsSsoStrategy(
        AwsSsoStrategyConfig(
            type="aws_sso",
            integration="aws",
            instance_arn=sso.instance_arn,
            targets=[{"name": "p", "label": "P", **target_keys}],
        ),
        integrations={"aws": integration},
        sleep=FakeTime().sleep,
    )
    await strategy.open()
    target = Target("p", "P", target_keys)

    holders = {h.id: h for h in await strategy.holders(target)}

    assert holders[sso.user_id].name == "alice" and "alice@example.com" in holders[sso.user_id].names
    assert holders[group].name == "group:Contractors" and holders[group].kind == "group"
    await strategy.remove_holder(target, holders[group])
    remaining = await asyncio.to_thread(
        lambda: sso.admin.list_account_assignments(
            InstanceArn=sso.instance_arn, AccountId=SSO_ACCOUNT, PermissionSetArn=sso.permission_set_arn
        )["AccountAssignments"]
    )
    assert [(a["PrincipalType"], a["PrincipalId"]) for a in remaining] == [("USER", sso.user_id)]


async def test_aws_a_listing_refused_half_way_is_an_error_not_a_shorter_list(aws_moto, aws_proxy, aws_integration):
    from tests.fakes.aws_fault_proxy import aws_error_reply

    iam = aws_moto.client("iam")
    iam.create_group(GroupName="Admins")
    iam.create_user(UserName="alice")
    iam.add_user_to_group(GroupName="Admins", UserName="alice")
    integration = await aws_integration(aws_proxy.url)
    iam_strategy = AwsIamStrategy(
        AwsIamStrategyConfig(
            type="aws_iam", integration="aws", targets=[{"name": "a", "label": "A", "group_name": "Admins"}]
        ),
        integrations={"aws": integration},
        sleep=FakeTime().sleep,
    )
    aws_proxy.script("GetGroup", aws_error_reply("AccessDenied", "not authorized", 403, query=True))
    with pytest.raises(StrategyError, match="iam:GetGroup"):
        await iam_strategy.holders(Target("a", "A", {"group_name": "Admins"}))

    sso = seed_identity_center(aws_moto, email="alice@example.com")
    sso.admin.create_account_assignment(**sso.assignment())
    target_keys = {"permission_set_arn": sso.permission_set_arn, "account_id": SSO_ACCOUNT}
    sso_strategy = AwsSsoStrategy(
        AwsSsoStrategyConfig(
            type="aws_sso",
            integration="aws",
            instance_arn=sso.instance_arn,
            identity_store_id=sso.identity_store_id,
            targets=[{"name": "p", "label": "P", **target_keys}],
        ),
        integrations={"aws": integration},
        sleep=FakeTime().sleep,
    )
    # The assignments are listed, but who a principal is cannot be read: the listing fails as a whole.
    aws_proxy.script("DescribeUser", aws_error_reply("AccessDeniedException", "not authorized", 400))
    with pytest.raises(StrategyError, match="identitystore:DescribeUser"):
        await sso_strategy.holders(Target("p", "P", target_keys))
