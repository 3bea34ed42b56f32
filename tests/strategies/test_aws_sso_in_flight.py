"""An account assignment still being created when the grant gives up must not land after the clean-up.

The fault proxy keeps CreateAccountAssignment back (IN_PROGRESS, not in moto) until the test lets it
land, as AWS does for a slow assignment; moto is then asked directly whether anything is assigned.
"""

from __future__ import annotations

import pytest

from core.errors import StrategyError, StrategyUnavailable
from tests.fakes.aws_fault_proxy import AwsFaultProxy, aws_error_reply
from tests.fakes.moto_server import IdentityCenter, seed_identity_center
from tests.strategies.conftest import FakeTime
from tests.strategies.test_aws_sso import EMAIL, ctx_for, make_strategy

CREATE, DESCRIBE_CREATE = "CreateAccountAssignment", "DescribeAccountAssignmentCreationStatus"
LIST_CREATIONS = "ListAccountAssignmentCreationStatus"


@pytest.fixture
def sso(aws_moto) -> IdentityCenter:
    return seed_identity_center(aws_moto, email=EMAIL)


@pytest.fixture
async def slow(sso, aws_proxy: AwsFaultProxy, aws_integration):
    """A strategy whose assignments stay in progress (poll_timeout 10s) until the proxy lands them."""
    strategy = make_strategy(sso, await aws_integration(aws_proxy.url), FakeTime(), poll_timeout="10s")
    aws_proxy.hold_creations()
    return strategy


async def timed_out_grant(strategy) -> StrategyError:
    with pytest.raises(StrategyError) as caught:
        await strategy.grant(ctx_for(strategy))
    return caught.value


async def test_a_grant_that_gives_up_on_an_in_progress_creation_is_final_and_names_it(sso, aws_proxy, slow):
    error = await timed_out_grant(slow)
    assert isinstance(error, StrategyUnavailable) and "still IN_PROGRESS after 10s" in str(error)
    # The engine must never retry a grant that may still be running.
    assert error.retryable is False
    [creation] = aws_proxy.held
    assert error.grant_state == {
        "principal_id": sso.user_id,
        "instance_arn": sso.instance_arn,
        "account_id": "012345678901",
        "permission_set_arn": sso.permission_set_arn,
        "creation_request_id": creation.request_id,
    }
    assert sso.holders() == [], "nothing is assigned yet: the creation is still in flight"


async def test_the_cleanup_revoke_waits_for_the_creation_to_land_then_deletes_it(sso, aws_proxy, slow):
    state = (await timed_out_grant(slow)).grant_state
    with pytest.raises(StrategyUnavailable, match="still being created") as caught:
        await slow.revoke(ctx_for(slow), state)  # the engine's clean-up, while the creation is in flight
    assert caught.value.retryable is True, "the engine retries the revoke with back-off"
    assert "deleted once it lands" in str(caught.value)

    await aws_proxy.land_creations()
    assert sso.holders() == [sso.user_id], "the late assignment landed after the first clean-up attempt"
    await slow.revoke(ctx_for(slow), state)  # the engine's retry
    assert sso.holders() == []
    await slow.revoke(ctx_for(slow), state)  # and a revoke of what is gone still succeeds
    assert sso.holders() == []


async def test_the_cleanup_revoke_of_a_creation_that_failed_has_nothing_to_do(sso, aws_proxy, slow):
    state = (await timed_out_grant(slow)).grant_state
    aws_proxy.fail_creations("Received a 404 status error: Not supported account.")
    await slow.revoke(ctx_for(slow), state)
    assert sso.holders() == [] and aws_proxy.count("DeleteAccountAssignment") == 0


async def test_a_cleanup_without_grant_state_still_finds_a_creation_in_flight(sso, aws_proxy, slow):
    # A grant that crashed mid-way, or an engine that stored no state: the revoke looks for one.
    await timed_out_grant(slow)
    with pytest.raises(StrategyUnavailable, match="still being created") as caught:
        await slow.revoke(ctx_for(slow), {})
    assert caught.value.retryable is True and aws_proxy.count(LIST_CREATIONS) == 1
    await aws_proxy.land_creations()
    await slow.revoke(ctx_for(slow), {})
    assert sso.holders() == []


async def test_a_search_ignores_creations_of_other_people_and_permission_sets(sso, aws_proxy, slow, aws_moto):
    other = aws_moto.client("identitystore").create_user(
        IdentityStoreId=sso.identity_store_id,
        UserName="bob",
        DisplayName="Bob",
        Name={"GivenName": "Bob", "FamilyName": "Other"},
        Emails=[{"Value": "bob@example.com", "Primary": True}],
    )["UserId"]
    sso.admin.create_account_assignment(**sso.assignment())  # Alice holds it already (straight in moto); Bob's is slow
    bob = make_strategy(sso, slow.integration, FakeTime(), poll_timeout="10s")
    with pytest.raises(StrategyUnavailable):
        await bob.grant(ctx_for(bob, "bob@example.com"))
    assert aws_proxy.held[0].params["PrincipalId"] == other
    await slow.revoke(ctx_for(slow), {})  # Alice's revoke is not held up by Bob's creation
    assert sso.holders() == []


async def test_a_cleanup_that_cannot_look_for_creations_in_flight_fails_rather_than_claim_success(sso, aws_proxy, slow):
    await timed_out_grant(slow)
    aws_proxy.script(LIST_CREATIONS, aws_error_reply("AccessDeniedException", "not allowed", 403))
    with pytest.raises(StrategyUnavailable, match="sso:ListAccountAssignmentCreationStatus"):
        await slow.revoke(ctx_for(slow), {})


async def test_an_error_while_polling_a_creation_is_also_final_with_its_state(sso, aws_proxy, slow):
    aws_proxy.script(DESCRIBE_CREATE, aws_error_reply("InternalServerException", "try later", 500), times=10)
    error = await timed_out_grant(slow)
    assert error.retryable is False and error.grant_state["creation_request_id"] == aws_proxy.held[0].request_id
