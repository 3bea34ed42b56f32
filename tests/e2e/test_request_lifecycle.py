from datetime import timedelta

from core.models import RequestStatus


async def test_approve_grants_then_revokes_on_time_editing_the_same_message(bot):
    message = await bot.request(reason="incident 42", duration="30m")
    assert "Prod Admin" in message.plain and "incident 42" in message.plain
    assert {b["text"]["text"] for b in message.buttons} == {"Approve", "Deny"}
    await bot.slack.wait_for_dm("U_ALICE", contains="sent to")

    await bot.slack.click(message, text="Approve", user="U_BOB")
    (grant,) = await bot.receiver.wait_for(1, "grant")
    assert grant.body["requester"] == {"slack_id": "U_ALICE", "email": "alice@example.com"}
    assert grant.body["target"]["settings"] == {"database": "prod", "role": "admin"}
    edited = await bot.slack.wait_for_message("C_APPROVALS", contains="granted until")
    assert edited.ts == message.ts and "U_BOB" in edited.plain and not edited.buttons
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
