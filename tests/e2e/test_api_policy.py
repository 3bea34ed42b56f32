"""A token acting beyond what its user may do: guests, others' grants, approvals counted per person,
and answers that never carry a stack or a secret."""

from __future__ import annotations

import pytest

from core.models import RequestStatus
from tests.e2e.api_helpers import ApiBot, request_body, start_api_bot
from tests.e2e.conftest import standard_flow
from tests.e2e.flows import APPROVAL_CHANNEL


@pytest.fixture
async def api(start_webhook_bot) -> ApiBot:
    return await start_api_bot(start_webhook_bot)


def detail(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body["detail"]


async def test_a_guests_token_may_neither_ask_nor_decide(api):
    api.bot.slack.add_user("U_GUEST", email="guest@example.com", name="guest", guest="multi")
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    guest = await api.token("U_GUEST", name="guest-token")

    asked = await api.post("/v1/requests", token=guest, json=request_body())
    assert asked.status_code == 403 and "Guests" in detail(asked)
    approved = await api.post(f"/v1/requests/{request.id}/approve", token=guest)
    assert approved.status_code == 403 and "Guests" in detail(approved)
    assert (await api.bot.engine.requests.get(request.id)).status is RequestStatus.PENDING
    listed = await api.get("/v1/flows", token=guest)
    assert listed.status_code == 200 and listed.json()["flows"] == []


async def test_someone_else_cannot_extend_or_cancel_a_grant_and_nothing_is_created(api, receiver):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
    held = await api.bot.request_for(message)
    await api.bot.approve(message, "U_BOB")
    await receiver.wait_for(1, "grant")
    carol = await api.token("U_CAROL", name="carol-all")  # an approver, not the requester

    extended = await api.post(f"/v1/requests/{held.id}/extend", token=carol, json={"duration": "30m"})
    assert extended.status_code == 403, extended.text
    detail(extended)
    cancelled = await api.post(f"/v1/requests/{held.id}/cancel", token=carol)
    assert cancelled.status_code in (403, 409), cancelled.text
    assert (await api.bot.engine.requests.get(held.id)).status is RequestStatus.GRANTED
    mine = (await api.get("/v1/requests?mine=true", token=carol)).json()["requests"]
    assert mine == []

    # Someone who may not see the grant at all learns nothing of it, not even its flow's durations.
    api.bot.slack.add_user("U_DAVE", email="dave@example.com", name="dave")
    dave = await api.token("U_DAVE", name="dave-all")
    probing = await api.post(f"/v1/requests/{held.id}/extend", token=dave, json={"duration": "99d"})
    assert probing.status_code == 404, probing.text
    detail(probing)


async def test_two_approvals_needed_one_token_counts_once(start_webhook_bot, receiver):
    api = await start_api_bot(
        start_webhook_bot, {**standard_flow(receiver.url, approvals_required=2), "name": "two_keys"}
    )
    alice = await api.token("U_ALICE", name="alice-ci")
    body = {**request_body(), "flow": "two_keys"}
    created = await api.post("/v1/requests", token=alice, json=body)
    assert created.status_code == 201, created.text
    bob = await api.token("U_BOB", scopes="decide", name="bob-decides")
    first = await api.post(f"/v1/requests/{created.json()['id']}/approve", token=bob)
    assert first.status_code == 200 and first.json()["status"] == "pending", first.text
    again = await api.post(f"/v1/requests/{created.json()['id']}/approve", token=bob)
    assert again.status_code in (403, 409), again.text
    detail(again)
    assert (await api.bot.engine.requests.get(created.json()["id"])).status is RequestStatus.PENDING


async def test_unknown_ids_on_every_action_are_404_not_500(api):
    token = await api.token("U_BOB", name="bob-all")
    for action, body in (
        ("approve", None),
        ("deny", None),
        ("cancel", None),
        ("revoke", None),
        ("extend", {"duration": "30m"}),
    ):
        response = await api.post(f"/v1/requests/nope-{action}/{action}", token=token, json=body)
        assert response.status_code == 404, (action, response.text)
        detail(response)


async def test_a_body_over_the_cap_is_413_before_it_is_read_even_without_a_length(api):
    token = await api.token("U_ALICE", name="alice-ci")

    async def chunks():
        for _ in range(40):
            yield b"x" * 4096

    response = await api.post(
        "/v1/requests", token=token, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    detail(response)
    big = await api.post(
        "/v1/requests", token=token, content=b"[" * (70 * 1024), headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 413
    detail(big)


async def test_an_unknown_id_of_any_length_leaves_at_most_a_short_id_in_the_audit_trail(api):
    token = await api.token("U_ALICE", name="alice-ci")
    long_id = "x" * 4000
    for action in ("cancel", "revoke"):
        response = await api.post(f"/v1/requests/{long_id}/{action}", token=token)
        assert response.status_code == 404, response.text
        detail(response)
    assert await api.bot.audit(long_id) == []
    noted = [e for e in await api.bot.engine.audit.list(limit=50) if e.action == "api.call"]
    assert [(e.detail["action"], e.request_id) for e in noted] == [("cancel", "x" * 64), ("revoke", "x" * 64)]


async def test_an_extension_past_max_total_duration_is_refused_through_the_api_as_in_slack(start_webhook_bot, receiver):
    api = await start_api_bot(
        start_webhook_bot, {**standard_flow(receiver.url, max_total_duration="1h"), "name": "capped"}
    )
    alice = await api.token("U_ALICE", name="alice-ci")
    created = await api.post("/v1/requests", token=alice, json={**request_body(duration="30m"), "flow": "capped"})
    assert created.status_code == 201, created.text
    message = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="deploy 7")
    await api.bot.approve(message, "U_BOB")
    await receiver.wait_for(1, "grant")

    too_long = await api.post(f"/v1/requests/{created.json()['id']}/extend", token=alice, json={"duration": "1h"})
    assert too_long.status_code in (403, 422), too_long.text
    assert "30m" in detail(too_long) or "at most" in detail(too_long)
    fits = await api.post(f"/v1/requests/{created.json()['id']}/extend", token=alice, json={"duration": "30m"})
    assert fits.status_code == 201, fits.text
