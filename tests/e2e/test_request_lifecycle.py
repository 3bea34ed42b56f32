from datetime import timedelta

import pytest

from core.errors import NotAllowed
from core.models import RequestStatus


async def test_approve_grants_then_revokes_on_time_editing_the_same_message(bot):
    message = await bot.request(reason="incident 42", duration="30m")
    assert "Prod Admin" in message.plain and "incident 42" in message.plain
    assert {b["text"]["text"] for b in message.buttons} == {"Approve", "Deny"}
    await bot.slack.wait_for_dm("U_ALICE", contains="sent to")

    await bot.slack.click(message, text="Approve", user="U_BOB")
    (grant,) = await bot.receiver.wait_for(1, "grant")
    assert grant.body["requester"] == {
        "slack_id": "U_ALICE",
        "email": "alice@example.com",
        "identity": "alice@example.com",
    }
    assert grant.body["target"]["settings"] == {"database": "prod", "role": "admin"}
    edited = await bot.slack.wait_for_message("C_APPROVALS", contains="granted until")
    assert (
        edited.ts == message.ts
        and "U_BOB" in edited.plain
        and [b["text"]["text"] for b in edited.buttons] == ["Revoke now"]
    )
    await bot.slack.wait_for_dm("U_ALICE", contains="granted")

    bot.clock.advance(minutes=29)
    await bot.engine.sweep()
    assert bot.receiver.accepted("revoke") == []

    bot.clock.advance(minutes=1)
    await bot.engine.sweep()
    (revoke,) = await bot.receiver.wait_for(1, "revoke")
    assert revoke.body["request_id"] == grant.body["request_id"]
    ended = await bot.slack.wait_for_message("C_APPROVALS", contains="Access ended")
    assert ended.ts == message.ts
    await bot.slack.wait_for_dm("U_ALICE", contains="expired")
    request = await bot.engine.requests.get(grant.body["request_id"])
    assert request.status is RequestStatus.REVOKED


async def test_deny_updates_the_message_and_tells_the_requester(bot):
    message = await bot.request()
    await bot.running.deny(message, "U_CAROL")
    denied = await bot.slack.wait_for_message("C_APPROVALS", contains="Denied by")
    assert denied.ts == message.ts and "U_CAROL" in denied.plain and not denied.buttons
    await bot.slack.wait_for_dm("U_ALICE", contains="denied")
    assert bot.receiver.accepted() == []


async def test_an_undecided_request_expires_after_request_timeout(bot):
    message = await bot.request()
    bot.clock.advance(minutes=59)
    await bot.engine.sweep()
    assert bot.slack.message("C_APPROVALS", message.ts).buttons

    bot.clock.advance(minutes=1)
    await bot.engine.sweep()
    expired = await bot.slack.wait_for_message("C_APPROVALS", contains="Expired")
    assert expired.ts == message.ts and not expired.buttons
    await bot.slack.wait_for_dm("U_ALICE", contains="expired")

    # A stale client could still send the old button: it changes nothing.
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.EXPIRED)
    with pytest.raises(NotAllowed, match="already expired"):
        await bot.engine.approve(request.id, "U_BOB")
    assert bot.receiver.accepted() == []


async def test_a_failed_grant_is_shown_dmed_and_alerted(bot):
    bot.receiver.fail_next(1, status=400, action="grant", body="no such database role")
    message = await bot.request()
    await bot.slack.click(message, text="Approve", user="U_BOB")
    failed = await bot.slack.wait_for_message("C_APPROVALS", contains="grant failed")
    assert failed.ts == message.ts and "400" in failed.plain
    await bot.slack.wait_for_dm("U_ALICE", contains="granting it failed")
    await bot.slack.wait_for_message("C_ALERTS", contains="Grant failed")


async def test_a_failing_revocation_is_retried_with_backoff_and_alerted_until_it_succeeds(bot):
    message = await bot.request(duration="10s")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.slack.wait_for_message("C_APPROVALS", contains="granted until")
    bot.receiver.fail_next(2, status=503, action="revoke")

    bot.clock.advance(seconds=10)
    await bot.engine.sweep()
    await bot.slack.wait_for_message("C_ALERTS", contains="attempt 1")
    request_id = (await bot.engine.requests.list_by_status(RequestStatus.GRANTED))[0].id
    first = await bot.engine.requests.get(request_id)
    assert first.revoke_attempts == 1 and first.next_attempt_at == bot.clock.now() + timedelta(seconds=2)

    await bot.engine.sweep()  # not due yet: nothing happens
    assert (
        len(bot.receiver.accepted("revoke")) == 0 and (await bot.engine.requests.get(request_id)).revoke_attempts == 1
    )

    bot.clock.advance(seconds=2)
    await bot.engine.sweep()
    await bot.slack.wait_for_message("C_ALERTS", contains="attempt 2")
    second = await bot.engine.requests.get(request_id)
    assert second.next_attempt_at == bot.clock.now() + timedelta(seconds=4)

    bot.clock.advance(seconds=4)
    await bot.engine.sweep()
    await bot.receiver.wait_for(1, "revoke")
    assert (await bot.engine.requests.get(request_id)).status is RequestStatus.REVOKED
    await bot.slack.wait_for_message("C_APPROVALS", contains="Access ended")
    actions = [e.action for e in await bot.runtime.engine.audit.for_request(request_id)]
    assert actions.count("revoke.failed") == 2 and actions[-1] == "access.revoked"
