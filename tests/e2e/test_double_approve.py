import asyncio

from core.models import RequestStatus


async def test_the_requester_cannot_approve_their_own_request(bot):
    message = await bot.request(user="U_ALICE")
    await bot.slack.click(message, text="Approve", user="U_ALICE")
    await bot.slack.wait_for_ephemeral("U_ALICE", contains="your own request")
    assert bot.slack.message("C_APPROVALS", message.ts).buttons
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.PENDING)
    refused = [e for e in await bot.engine.audit.for_request(request.id) if e.action == "click.refused"]
    assert refused[0].actor == "U_ALICE" and refused[0].detail["action"] == "approve"
    assert bot.receiver.accepted() == []


async def test_someone_outside_the_approver_group_cannot_approve_or_deny(bot):
    bot.slack.add_user("U_MALLORY", email="mallory@example.com", name="mallory")
    message = await bot.request(user="U_ALICE")
    await bot.slack.click(message, text="Approve", user="U_MALLORY")
    await bot.slack.wait_for_ephemeral("U_MALLORY", contains="not an approver")
    await bot.running.deny(message, "U_MALLORY", reason="not on my watch")
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals_to("U_MALLORY")) == 2)
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.PENDING)
    assert [
        e.detail["action"] for e in await bot.engine.audit.for_request(request.id) if e.action == "click.refused"
    ] == ["approve", "deny"]
    assert not bot.slack.message("C_APPROVALS", message.ts).edited
    assert bot.receiver.accepted() == []


async def test_two_approvers_at_once_and_a_redelivered_envelope_grant_once(bot):
    message = await bot.request(user="U_ALICE")
    first, second = await asyncio.gather(
        bot.slack.click(message, text="Approve", user="U_BOB"),
        bot.slack.click(message, text="Approve", user="U_CAROL"),
    )
    await bot.slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    await bot.slack.wait_for_message("C_APPROVALS", contains="granted until")
    await bot.slack.wait_for(lambda: bot.slack.ephemerals_to("U_BOB") or bot.slack.ephemerals_to("U_CAROL"))
    # Every grant POST the receiver got, duplicates included, is exactly one.
    assert len([d for d in bot.receiver.deliveries if d.action == "grant"]) == 1
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.GRANTED)
    approvals = [e for e in await bot.engine.audit.for_request(request.id) if e.action == "request.approved"]
    assert len(approvals) == 1
