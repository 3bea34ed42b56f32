"""A receiver's `grant_id` is checked when the grant answer arrives, so no stored value can block a revoke."""

from __future__ import annotations

import pytest

from core.errors import StrategyError
from strategies import webhook
from strategies.webhook import WebhookStrategy, valid_grant_id
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.strategies.test_webhook import SECRET, config, context

GRANT_ID_MAX_CHARS = 200  # the documented rule (docs/webhook-contract.md)

UNUSABLE_GRANT_IDS = [
    pytest.param("grant-José", id="non-ascii"),
    pytest.param("g-1\r\nX-Injected: yes", id="crlf"),
    pytest.param("g-1\nX-Injected: yes", id="lf"),
    pytest.param("g\x00-1", id="nul"),
    pytest.param("g 1", id="space"),
    pytest.param("g" * (GRANT_ID_MAX_CHARS + 1), id="too-long"),
    pytest.param({"nested": "object"}, id="object"),
    pytest.param(["g-1"], id="list"),
    pytest.param(1.5, id="float"),
    pytest.param(True, id="boolean"),
]


@pytest.fixture
async def receiver():
    async with WebhookReceiver(secret=SECRET) as server:
        yield server


@pytest.fixture
async def strategy(receiver, opened) -> WebhookStrategy:
    return await opened(WebhookStrategy(config(receiver.url, secret=SECRET), integrations={}))


@pytest.mark.parametrize("grant_id", UNUSABLE_GRANT_IDS)
async def test_a_grant_answered_with_an_unusable_grant_id_fails_closed_and_the_cleanup_revoke_removes_it(
    receiver, strategy, grant_id
):
    receiver.answer_next_grant({"ok": True, "grant_id": grant_id})
    with pytest.raises(StrategyError) as caught:
        await strategy.grant(context())
    error = caught.value
    # Final, so the engine records a failed grant at once and runs its clean-up revoke.
    assert error.retryable is False and "grant_id" in str(error)
    assert "grant_id" in error.user_message
    assert receiver.is_held("req-42"), "the receiver did grant: the clean-up below must take it back"

    await strategy.revoke(context(), {})  # the engine's clean-up: no grant state
    [revoke] = receiver.accepted("revoke")
    assert "X-Jitbot-Grant-Id" not in revoke.headers
    assert not receiver.is_held("req-42")


async def test_the_error_for_an_unusable_grant_id_does_not_echo_the_value(receiver, strategy):
    receiver.answer_next_grant({"grant_id": "g-1\r\nAuthorization: Bearer leaked-token"})
    with pytest.raises(StrategyError) as caught:
        await strategy.grant(context())
    assert "leaked-token" not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "grant_id", ["g-1", "grant_7f3a:prod/admin", "~!#$%&'*+-.^_`|()<>@,;\\\"[]?={}", "g" * GRANT_ID_MAX_CHARS]
)
async def test_a_grant_id_of_visible_ascii_up_to_the_limit_is_kept_and_sent_back_on_revoke(
    receiver, strategy, grant_id
):
    receiver.answer_next_grant({"grant_id": grant_id})
    result = await strategy.grant(context())
    assert result.state == {"grant_id": grant_id}
    await strategy.revoke(context(), result.state)
    [revoke] = receiver.accepted("revoke")
    assert revoke.headers["X-Jitbot-Grant-Id"] == grant_id


async def test_an_integer_grant_id_is_kept_as_its_decimal_text(receiver, strategy):
    receiver.answer_next_grant({"grant_id": 4242})
    assert (await strategy.grant(context())).state == {"grant_id": "4242"}


@pytest.mark.parametrize("answer", [{"ok": True}, {"grant_id": None}, {"grant_id": ""}, ["not", "an", "object"]])
async def test_a_grant_answer_without_a_grant_id_succeeds_with_no_state(receiver, strategy, answer):
    receiver.answer_next_grant(answer)
    assert (await strategy.grant(context())).state == {}


@pytest.mark.parametrize("stored", ["grant-José", "g-1\r\nX-Injected: yes", "g" * 500])
async def test_a_revoke_is_never_blocked_by_an_unusable_stored_grant_id(receiver, strategy, stored):
    # State written before grant ids were checked: the revoke goes out without the header.
    await strategy.grant(context())
    await strategy.revoke(context(), {"grant_id": stored})
    [revoke] = receiver.accepted("revoke")
    assert "X-Jitbot-Grant-Id" not in revoke.headers and not receiver.is_held("req-42")


def test_the_grant_id_rule_is_visible_ascii_without_spaces_up_to_200_characters():
    assert webhook.GRANT_ID_MAX_CHARS == GRANT_ID_MAX_CHARS
    assert valid_grant_id("g-1") and valid_grant_id("x" * 200)
    for bad in ("", " ", "x" * 201, "é", "a b", "a\tb", "a\x7f", "a\r\nb"):
        assert not valid_grant_id(bad), bad
