"""Text people send is stored as sent, or refused with the field named, the same on every database engine.

PostgreSQL cannot store the NUL character (U+0000) in text; SQLite can. JSON can carry it ("\\u0000"),
so a script could send it in a reason: the bot must answer with a form error that names the field on
both engines, never fail half-way on one of them.
"""

from __future__ import annotations

import pytest

from core.approvals import clean_reason
from tests.e2e.api_helpers import ApiBot, request_body, start_api_bot
from tests.e2e.flows import APPROVAL_CHANNEL

NUL = "\x00"


@pytest.fixture
async def api(start_webhook_bot) -> ApiBot:
    return await start_api_bot(start_webhook_bot)


async def test_a_reason_with_a_nul_character_is_refused_naming_the_field_and_nothing_is_stored(api):
    token = await api.token("U_ALICE")
    response = await api.post("/v1/requests", token=token, json=request_body(reason=f"deploy{NUL}7"))
    assert response.status_code == 422, response.text
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert errors == {"fields.reason": "Remove the NUL character (U+0000): it cannot be stored."}
    assert await api.bot.all_requests() == []


async def test_a_decision_reason_with_a_nul_character_is_refused_and_the_request_stays_pending(api):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    token = await api.token("U_BOB", scopes="decide,read")
    response = await api.post(f"/v1/requests/{request.id}/deny", token=token, json={"reason": f"no{NUL}pe"})
    assert response.status_code == 422, response.text
    assert (await api.bot.request_for(message)).status.value == "pending"


async def test_a_deny_reason_typed_in_slack_with_a_nul_character_is_refused_in_the_modal(bot):
    message = await bot.request()
    await bot.slack.click(message, text="Deny", user="U_CAROL")
    view = await bot.slack.wait_for_view("U_CAROL", contains="Deny request")
    result = await bot.slack.submit_view(view, {"deny-reason": f"not{NUL} now"})
    assert result.response_action == "errors"
    assert result.ack_payload["errors"] == {"deny-reason": "Remove the NUL character (U+0000): it cannot be stored."}
    await bot.running.idle()
    assert (await bot.running.request_for(message)).status.value == "pending"


def test_a_decision_reason_from_anywhere_else_is_stored_without_a_nul():
    # A hook or any other caller of the engine: nothing can store a NUL on PostgreSQL, so it is dropped.
    assert clean_reason(f"not{NUL} now") == "not now"


async def test_a_failed_revocation_whose_error_text_holds_a_nul_is_recorded_retried_and_ends(bot):
    bot.engine.retry_delay = 0
    message = await bot.request(duration="30m")
    await bot.running.approve(message, "U_BOB")
    bot.receiver.fail_next(1, status=503, action="revoke", body=f"upstream{NUL}down")
    bot.clock.advance(minutes=31)
    await bot.engine.sweep()
    request = await bot.running.request_for(message)
    assert request.status.value == "granted" and request.next_attempt_at is not None, "the retry was not armed"
    assert request.last_error is not None and NUL not in request.last_error

    bot.clock.advance(minutes=5)
    await bot.engine.sweep()
    assert (await bot.running.request_for(message)).status.value == "revoked"
    assert len(bot.receiver.accepted("revoke")) == 1
