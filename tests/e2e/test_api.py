"""The HTTP API end to end: a real aiohttp server in the running bot, the Slack emulator on the other side.

A token acts as its Slack user under the same policy as a click; requests made through the API are
posted for approval like any other, and decisions made through it edit the same Slack message.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.models import RequestStatus
from tests.e2e.api_helpers import ApiBot, free_port, request_body, start_api_bot
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, standard_flow
from tests.e2e.flows import APPROVAL_CHANNEL, flows_file


@pytest.fixture
async def api(start_webhook_bot) -> ApiBot:
    return await start_api_bot(start_webhook_bot)


def problem(response) -> dict:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == response.status_code and body["type"] == "about:blank"
    return body


async def test_a_request_made_through_the_api_is_posted_for_approval_and_approved_by_a_click(api, receiver):
    token = await api.token("U_ALICE", scopes="request,read", name="alice-ci")
    response = await api.post("/v1/requests", token=token, json=request_body(ticket="OPS-1"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "pending" and created["requester"] == "U_ALICE"
    assert response.headers["location"] == f"/v1/requests/{created['id']}"

    message = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="deploy 7")
    assert {b["text"]["text"] for b in message.buttons} == {"Approve", "Deny"}
    await api.bot.slack.wait_for_dm("U_ALICE", contains="sent to")
    await api.bot.approve(message, "U_BOB")
    await receiver.wait_for(1, "grant")

    read = await api.get(f"/v1/requests/{created['id']}", token=token)
    assert read.status_code == 200 and read.json()["status"] == "granted" and read.json()["decided_by"] == "U_BOB"
    (made,) = [e for e in await api.bot.audit(created["id"]) if e.action == "request.created"]
    assert made.actor == "U_ALICE" and made.detail["via"] == "api" and made.detail["token"] == "alice-ci"
    (approved,) = [e for e in await api.bot.audit(created["id"]) if e.action == "request.approved"]
    assert approved.detail["via"] == "slack" and "token" not in approved.detail


async def test_a_request_made_in_slack_is_approved_through_the_api_and_its_message_updated(api, receiver):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    token = await api.token("U_BOB", scopes="decide", name="bob-deploys")

    response = await api.post(f"/v1/requests/{request.id}/approve", token=token, json={"reason": "looks fine"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "granted" and response.json()["decision_reason"] == "looks fine"
    await receiver.wait_for(1, "grant")
    edited = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="granted until")
    assert edited.ts == message.ts and [b["text"]["text"] for b in edited.buttons] == ["Revoke now"]
    await api.bot.slack.wait_for_dm("U_ALICE", contains="granted")
    (approved,) = [e for e in await api.bot.audit(request.id) if e.action == "request.approved"]
    assert approved.actor == "U_BOB" and approved.detail == {
        "reason": "looks fine",
        "via": "api",
        "token": "bob-deploys",
    }

    again = await api.post(f"/v1/requests/{request.id}/deny", token=token)
    assert again.status_code == 409 and problem(again)["request_status"] == "granted"


async def test_a_non_approvers_token_is_refused_with_the_reason_and_audited(api):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    api.bot.slack.add_user("U_DAVE", email="dave@example.com", name="dave")
    token = await api.token("U_DAVE", scopes="decide", name="dave-token")

    response = await api.post(f"/v1/requests/{request.id}/approve", token=token)
    assert response.status_code == 403
    assert problem(response)["detail"] == "You are not an approver for this request."
    assert (await api.bot.engine.requests.get(request.id)).status is RequestStatus.PENDING
    assert not api.bot.slack.message(APPROVAL_CHANNEL, message.ts).edited
    (refused,) = [e for e in await api.bot.audit(request.id) if e.action == "click.refused"]
    assert refused.actor == "U_DAVE" and refused.detail == {
        "action": "approve",
        "reason": "You are not an approver for this request.",
        "via": "api",
        "token": "dave-token",
    }


async def test_a_token_cannot_approve_its_own_users_request(api):
    token = await api.token("U_BOB", name="bob-all")  # Bob is an approver, but this is his own request
    created = (await api.post("/v1/requests", token=token, json=request_body())).json()
    response = await api.post(f"/v1/requests/{created['id']}/approve", token=token)
    assert response.status_code == 403 and "your own request" in problem(response)["detail"]
    assert (await api.bot.engine.requests.get(created["id"])).status is RequestStatus.PENDING


async def test_expired_revoked_unknown_and_missing_tokens_get_401(api):
    expiring = await api.token("U_ALICE", scopes="read", name="short", expires=timedelta(hours=1))
    revoked = await api.token("U_ALICE", scopes="read", name="gone")
    assert (await api.get("/v1/flows", token=expiring)).status_code == 200
    assert (await api.get("/v1/flows", token=revoked)).status_code == 200
    await api.tokens.revoke("gone", actor="test")
    api.bot.clock.advance(hours=1)

    for token, words in ((expiring, "valid until"), (revoked, "revoked"), (revoked[:-1] + "x", "not valid")):
        response = await api.get("/v1/flows", token=token)
        assert response.status_code == 401 and words in problem(response)["detail"], response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await api.get("/v1/flows")).status_code == 401
    assert (await api.get("/v1/flows", headers={"Authorization": "Basic dXNlcjpwYXNz"})).status_code == 401


async def test_a_token_in_the_query_string_is_refused(api):
    token = await api.token("U_ALICE", scopes="read")
    response = await api.get("/v1/flows", params={"access_token": token})
    assert response.status_code == 400 and "query strings" in problem(response)["detail"]
    response = await api.get("/v1/requests", token=token, params={"status": token})
    assert response.status_code == 400


async def test_a_missing_scope_is_refused_and_audited(api):
    token = await api.token("U_BOB", scopes="read", name="bob-read")
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    response = await api.post(f"/v1/requests/{request.id}/approve", token=token)
    assert response.status_code == 403 and "decide" in problem(response)["detail"]
    refused = [e for e in await api.bot.engine.audit.list() if e.action == "api.refused"]
    assert [(e.actor, e.request_id, e.detail["token"], e.detail["via"]) for e in refused] == [
        ("U_BOB", request.id, "bob-read", "api")
    ]


async def test_bodies_are_checked_by_the_form_rules_with_the_field_named(api):
    token = await api.token("U_ALICE")
    cases = [
        (request_body(duration="5h"), "fields.duration", "Choose one of the listed durations."),
        (request_body(reason="   "), "fields.reason", "This field is required."),
        (request_body(reason="r" * 3001), "fields.reason", "At most 3000 characters."),
        (request_body(target="nope"), "target", "Choose one of the listed targets."),
        ({**request_body(), "flow": "nope"}, "flow", None),
        (request_body(color="red"), "fields.color", None),
    ]
    for body, field, message in cases:
        response = await api.post("/v1/requests", token=token, json=body)
        assert response.status_code == 422, (body, response.text)
        errors = {e["field"]: e["message"] for e in problem(response)["errors"]}
        assert field in errors, errors
        assert message is None or errors[field] == message
    assert await api.bot.all_requests() == []


async def test_malformed_oversized_and_mistyped_bodies(api):
    token = await api.token("U_ALICE")
    headers = {"Content-Type": "application/json"}
    assert (await api.post("/v1/requests", token=token, content=b"{nope", headers=headers)).status_code == 400
    assert (await api.post("/v1/requests", token=token, content=b"[" * 60_000, headers=headers)).status_code == 400
    big = await api.post("/v1/requests", token=token, content=b"x" * (65 * 1024), headers=headers)
    assert big.status_code == 413 and problem(big)
    text = await api.post(
        "/v1/requests", token=token, content=b"flow=db_access", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    assert (await api.post("/v1/requests", token=token, json=[1, 2])).status_code == 422
    assert (await api.get("/v1/nothing-here", token=token)).status_code == 404
    assert problem(await api.call("DELETE", "/v1/flows", token=token))["status"] == 405


async def test_unknown_requests_and_other_peoples_requests_are_404(api):
    alice = await api.token("U_ALICE")
    created = (await api.post("/v1/requests", token=alice, json=request_body())).json()
    api.bot.slack.add_user("U_DAVE", email="dave@example.com", name="dave")
    dave = await api.token("U_DAVE", scopes="read")
    assert (await api.get(f"/v1/requests/{created['id']}", token=dave)).status_code == 404
    assert (await api.get("/v1/requests/0000000000000000", token=alice)).status_code == 404
    carol = await api.token("U_CAROL", scopes="read")  # @secops: may decide it, so may see it
    assert (await api.get(f"/v1/requests/{created['id']}", token=carol)).status_code == 200


async def test_listing_requests_by_status_and_mine(api):
    alice = await api.token("U_ALICE")
    bob = await api.token("U_BOB")
    mine = (await api.post("/v1/requests", token=alice, json=request_body())).json()
    theirs = (await api.post("/v1/requests", token=bob, json=request_body(reason="bob's"))).json()

    listed = (await api.get("/v1/requests", token=alice, params={"mine": "true"})).json()["requests"]
    assert [r["id"] for r in listed] == [mine["id"]]
    seen_by_bob = (await api.get("/v1/requests", token=bob, params={"status": "pending"})).json()["requests"]
    assert {r["id"] for r in seen_by_bob} == {mine["id"], theirs["id"]}  # his own, and one he may decide
    assert (await api.get("/v1/requests", token=bob, params={"status": "granted"})).json()["requests"] == []
    bad = await api.get("/v1/requests", token=bob, params={"status": "sideways"})
    assert bad.status_code == 422 and problem(bad)["errors"][0]["field"] == "status"


async def test_the_flows_list_shows_targets_and_fields(api):
    token = await api.token("U_ALICE", scopes="read")
    (flow,) = (await api.get("/v1/flows", token=token)).json()["flows"]
    assert flow["name"] == "db_access" and flow["targets"][0]["name"] == "prod_admin"
    assert [f["name"] for f in flow["fields"]] == ["reason", "ticket", "duration"]


async def test_calls_are_limited_per_token_with_retry_after(start_webhook_bot):
    api = await start_api_bot(start_webhook_bot)
    assert api.bot.runtime.settings.api_rate_limit == 120  # the default: 120 a minute, in bursts of 120
    token = await api.token("U_ALICE", scopes="read")
    other = await api.token("U_BOB", scopes="read")
    for _ in range(120):
        assert (await api.get("/v1/flows", token=token)).status_code == 200
    limited = await api.get("/v1/flows", token=token)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1 and problem(limited)
    assert (await api.get("/v1/flows", token=other)).status_code == 200  # per token
    api.bot.clock.advance(seconds=1)  # two calls a second come back
    assert (await api.get("/v1/flows", token=token)).status_code == 200


async def test_the_openapi_document_describes_each_flows_request_body(api):
    document = (await api.get("/v1/openapi.json")).json()
    body = document["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["mapping"] == {"db_access": "#/components/schemas/DbAccessRequest"}
    fields = document["components"]["schemas"]["DbAccessFields"]
    assert fields["properties"]["duration"]["enum"] == ["10s", "30m", "1h"]
    assert fields["properties"]["reason"]["maxLength"] == 3000 and fields["required"] == ["reason", "duration"]
    extend = document["paths"]["/v1/requests/{id}/extend"]["post"]["requestBody"]
    assert extend["required"] and extend["content"]["application/json"]["schema"]["$ref"].endswith("/ExtendBody")
    approve = document["paths"]["/v1/requests/{id}/approve"]["post"]["requestBody"]
    assert not approve["required"] and approve["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DecisionBody"
    )
    assert set(document["paths"]) == {
        "/v1/flows",
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/requests/{id}/approve",
        "/v1/requests/{id}/deny",
        "/v1/requests/{id}/cancel",
        "/v1/requests/{id}/revoke",
        "/v1/requests/{id}/extend",
    }


async def test_requesters_apply_to_tokens_the_flow_is_hidden_and_a_request_refused_with_the_reason(
    start_webhook_bot, receiver
):
    restricted = {**standard_flow(receiver.url), "name": "restricted", "requesters": {"users": ["U_BOB"]}}
    api = await start_api_bot(start_webhook_bot, restricted)
    alice = await api.token("U_ALICE", name="alice-ci")
    assert [f["name"] for f in (await api.get("/v1/flows", token=alice)).json()["flows"]] == ["db_access"]
    response = await api.post("/v1/requests", token=alice, json={**request_body(), "flow": "restricted"})
    assert response.status_code == 403 and "not one of the people who may request" in problem(response)["detail"]
    assert await api.bot.all_requests() == []
    (refused,) = [e for e in await api.bot.engine.audit.list() if e.action == "api.refused"]
    assert refused.actor == "U_ALICE" and refused.detail["token"] == "alice-ci" and refused.detail["via"] == "api"
    bob = await api.token("U_BOB")
    assert (await api.post("/v1/requests", token=bob, json={**request_body(), "flow": "restricted"})).status_code == 201


async def test_hooks_see_that_a_request_came_through_the_api(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    hooks = launch.write(
        "hooks.py",
        """
        async def on_request(evt):
            if evt.via == "api" and evt.fields.get("ticket") is None:
                return evt.deny("scripts must name a ticket")
        """,
    )
    port = free_port()
    bot = await launch.start(
        flows_file(standard_flow(receiver.url, hooks=str(hooks))), health_address=f"127.0.0.1:{port}"
    )
    api = ApiBot(bot, f"http://127.0.0.1:{port}")
    token = await api.token("U_ALICE")
    denied = (await api.post("/v1/requests", token=token, json=request_body())).json()
    assert denied["status"] == "denied" and denied["decision_reason"] == "scripts must name a ticket"
    kept = (await api.post("/v1/requests", token=token, json=request_body(ticket="OPS-9"))).json()
    assert kept["status"] == "pending"
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")  # from Slack: no ticket
    assert (await bot.request_for(message)).status is RequestStatus.PENDING


# ── after approval: cancel, revoke now, extend ────────────────────────────────────────────────────


async def test_the_requester_cancels_a_pending_request_through_the_api(api):
    alice = await api.token("U_ALICE", name="alice-ci")
    bob = await api.token("U_BOB", name="bob-all")
    created = (await api.post("/v1/requests", token=alice, json=request_body())).json()
    message = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="deploy 7")

    refused = await api.post(f"/v1/requests/{created['id']}/cancel", token=bob)
    assert refused.status_code == 403 and "Only the person who asked" in problem(refused)["detail"]
    response = await api.post(f"/v1/requests/{created['id']}/cancel", token=alice, json={"reason": "not needed"})
    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text
    cancelled = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="Cancelled", where=lambda m: m.edited)
    assert cancelled.ts == message.ts and not cancelled.buttons
    again = await api.post(f"/v1/requests/{created['id']}/cancel", token=alice)
    assert again.status_code == 409 and problem(again)["request_status"] == "cancelled"

    trail = await api.bot.audit(created["id"])
    (row,) = [e for e in trail if e.action == "request.cancelled"]
    assert row.actor == "U_ALICE" and row.detail["via"] == "api"
    noted = [
        (e.actor, e.detail["action"], e.detail["outcome"], e.detail["token"]) for e in trail if e.action == "api.call"
    ]
    assert noted == [
        ("U_BOB", "cancel", "refused: Only the person who asked can cancel this request.", "bob-all"),
        ("U_ALICE", "cancel", "cancelled", "alice-ci"),
        ("U_ALICE", "cancel", "refused: This request is already cancelled.", "alice-ci"),
    ]


async def test_a_live_grant_is_revoked_now_through_the_api_by_an_approver(api, receiver):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    await api.bot.approve(message, "U_BOB")
    await receiver.wait_for(1, "grant")
    api.bot.slack.add_user("U_DAVE", email="dave@example.com", name="dave")
    dave = await api.token("U_DAVE", scopes="decide")
    assert (await api.post(f"/v1/requests/{request.id}/revoke", token=dave)).status_code == 403

    carol = await api.token("U_CAROL", scopes="decide", name="carol-ops")
    response = await api.post(f"/v1/requests/{request.id}/revoke", token=carol)
    assert response.status_code == 200 and response.json()["status"] == "revoked", response.text
    assert response.json()["revoked_by"] == "U_CAROL"
    await receiver.wait_for(1, "revoke")
    ended = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="early", where=lambda m: m.ts == message.ts)
    assert "U_CAROL" in ended.plain and not ended.buttons
    (row,) = [e for e in await api.bot.audit(request.id) if e.action == "access.revoke_requested"]
    assert row.actor == "U_CAROL" and row.detail["via"] == "api"
    assert (await api.post(f"/v1/requests/{request.id}/revoke", token=carol)).status_code == 409


async def test_a_live_grant_is_extended_through_the_api_and_approved_like_any_request(api, receiver):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
    held = await api.bot.request_for(message)
    await api.bot.approve(message, "U_BOB")
    alice = await api.token("U_ALICE", name="alice-ci")
    bob = await api.token("U_BOB", scopes="decide", name="bob-decides")

    bad = await api.post(f"/v1/requests/{held.id}/extend", token=alice, json={"duration": "5h"})
    assert bad.status_code == 422 and problem(bad)["errors"][0]["field"] == "duration"
    someone_else = await api.token("U_BOB", scopes="request")
    refused = await api.post(f"/v1/requests/{held.id}/extend", token=someone_else, json={"duration": "1h"})
    assert refused.status_code == 403 and "Only the person who holds" in problem(refused)["detail"]

    response = await api.post(f"/v1/requests/{held.id}/extend", token=alice, json={"duration": "1h"})
    assert response.status_code == 201, response.text
    extension = response.json()
    assert extension["status"] == "pending" and extension["fields"]["duration"] == "1h"
    assert extension["extends"] == held.id
    (made,) = [e for e in await api.bot.audit(extension["id"]) if e.action == "request.created"]
    assert made.detail["extends"] == held.id and made.detail["via"] == "api" and made.detail["token"] == "alice-ci"

    approved = await api.post(f"/v1/requests/{extension['id']}/approve", token=bob)
    assert approved.status_code == 200 and approved.json()["status"] == "granted", approved.text
    assert len(receiver.accepted("grant")) == 1  # the live access was taken over: no second grant call
