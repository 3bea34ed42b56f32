"""Slack throttles message edits: revocations still end on time, and every message is edited eventually.

An in-process bot (the production Runtime, the fake strategy, a FrozenClock) holds 1,000 grants that
end at the same instant. While Slack answers every `chat.update` with 429, the sweep revokes all of
them: a revocation never waits for its message edit, and every holder is told by DM while the edits
are still refused (DMs are limited apart from edits). Then `chat.update` is limited as Slack's tiers
limit it (a sliding window, 429 + Retry-After beyond it) and every message is edited, through the
Slack client's Retry-After waits, in the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.models import AccessRequest, AuditEvent, RequestStatus
from core.secrets import SecretRegistry
from runtime import Runtime, Settings
from storage.db import Store
from storage.requests import RequestRepo
from tests.e2e.flows import APPROVAL_CHANNEL, duration_field, flow, flows_file, reason_field, target
from tests.fakes.clock import FrozenClock
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES, FakeStrategy

GRANTS = 1_000
HOLDERS = 50
EDITS_PER_SECOND = 250  # chat.update's limit here: Slack's Tier 3 shape, scaled from a minute to a second


@dataclass(frozen=True)
class Seeded:
    requests: list[AccessRequest]
    ends_at: object


async def seed_grants(slack, db_path, clock: FrozenClock) -> Seeded:
    """1,000 live grants of the `fast` flow ending together, each with its channel message."""
    channel = slack.workspace.channels[APPROVAL_CHANNEL]
    for i in range(HOLDERS):
        slack.add_user(f"U_HOLDER{i:02d}", email=f"holder{i}@example.com")
    now, ends_at = clock.now(), clock.now() + timedelta(minutes=30)
    rows = []
    for i in range(GRANTS):
        holder = i % HOLDERS
        message = slack.workspace.post_message(channel, text=f"grant {i}", blocks=[], attachments=[])
        request = AccessRequest(
            id=f"burst-{i:04d}",
            flow="fast",
            target="prod",
            requester=f"U_HOLDER{holder:02d}",
            created_at=now,
            duration_seconds=1800,
            status=RequestStatus.GRANTED,
            requester_email=f"holder{holder}@example.com",
            fields={"reason": "incident 42", "duration": "30m"},
            approval_channel=APPROVAL_CHANNEL,
            message_ts=message.ts,
            decided_by="U_BOB",
            decided_at=now,
            granted_at=now,
            expires_at=ends_at,
            grant_state={"identity": f"holder{holder}@example.com-{i}", "target": "prod"},
        )
        rows.append((request, AuditEvent(at=now, actor="test", action="request.created", request_id=request.id)))
    store = await Store.open(str(db_path))
    try:
        await RequestRepo(store).create_many(rows)
    finally:
        await store.close()
    return Seeded([r for r, _ in rows], ends_at)


async def test_a_burst_of_1000_revocations_ends_on_time_while_slack_throttles_the_message_edits(
    slack, tmp_path, databases
):
    clock = FrozenClock()
    seeded = await seed_grants(slack, databases.where(), clock)
    config = tmp_path / "flows.yaml"
    strategy = {"type": "fake", "targets": [target("prod", "Prod")]}
    config.write_text(
        flows_file(flow("fast", "Fast", strategy, [reason_field(), duration_field("30m")]), alerts_channel=None)
    )
    settings = Settings(
        bot_token=slack.bot_token,
        app_token=slack.app_token,
        config_path=config,
        db_path=str(databases.where()),
        slack_api_url=slack.api_url,
    )
    runtime = Runtime(
        settings,
        clock=clock,
        strategy_types=TEST_STRATEGY_TYPES,
        integration_types=TEST_INTEGRATION_TYPES,
        start_timers=False,
        secrets=SecretRegistry(),
    )
    await runtime.start()
    try:
        fake = runtime.strategies["fast"]
        assert isinstance(fake, FakeStrategy)
        fake.holdings.update((r.grant_state["identity"], "prod") for r in seeded.requests)
        engine = runtime.engine

        # Slack refuses every edit while the grants end: the revocations must not wait for it.
        slack.rate_limit("chat.update", times=None, retry_after=1)
        clock.set(seeded.ends_at)
        counts = await engine.sweep()
        assert counts["revoked_due"] == GRANTS
        assert fake.holdings == set() and len(fake.calls_of("revoke")) == GRANTS
        rows = await engine.requests.list_by_status(*RequestStatus)
        assert {r.status for r in rows} == {RequestStatus.REVOKED}
        assert {r.ended_at for r in rows} == {seeded.ends_at}  # each at its end, none later
        assert [c for c in slack.calls("chat.update") if c.status == 200] == []  # not one edit got through

        # Slack limits DMs apart from edits: every holder is told while the edits are still refused.
        def told() -> int:
            return sum(len(slack.dms_to(f"U_HOLDER{i:02d}")) for i in range(HOLDERS))

        await slack.wait_for(lambda: told() == GRANTS, 60, description=f"{GRANTS} 'ended' DMs")
        assert [c for c in slack.calls("chat.update") if c.status == 200] == []  # still refused

        # Slack's limit from now on: a window of edits per second, 429 + Retry-After beyond it.
        slack.clear_faults("chat.update")
        throttle = slack.throttle("chat.update", limit=EDITS_PER_SECOND, per=1.0)
        assert await engine.settle(timeout=60) == 0
        for request in seeded.requests:
            assert "Access ended" in slack.message(APPROVAL_CHANNEL, request.message_ts).plain, request.id
        assert throttle.refused > 0  # the limit was hit, and waited out
        assert len(slack.calls("chat.update")) > GRANTS
        assert told() == GRANTS  # once each
    finally:
        await runtime.stop()


async def ended_grant(bot) -> object:
    """A request granted through Slack, whose end has come; returns its channel message."""
    message = await bot.request(reason="incident 42", duration="30m")
    await bot.running.approve(message)
    await bot.running.idle()
    bot.clock.advance(minutes=30)
    return message


async def test_an_edit_slack_refuses_for_good_is_not_retried_and_holds_nothing_up(bot):
    message = await ended_grant(bot)
    edits_before = len(bot.slack.calls("chat.update"))
    bot.slack.fail("chat.update", error="message_not_found", times=None)  # someone deleted the message
    await bot.engine.sweep()
    assert await bot.engine.settle(timeout=5) == 0
    assert (await bot.running.request_for(message)).status is RequestStatus.REVOKED
    assert len(bot.slack.calls("chat.update")) == edits_before + 1  # tried once: it would fail every time
    await bot.slack.wait_for_dm("U_ALICE", contains="expired")  # the DM still follows


async def test_an_edit_that_failed_while_slack_was_down_is_made_once_slack_answers_again(bot):
    message = await ended_grant(bot)
    # Slack answers ok: false, internal_error (HTTP 200, which the client does not retry) three times:
    # the follow-up tries again on its back-off (2 s, then 4 s) until the edit goes through.
    bot.slack.fail("chat.update", error="internal_error", times=3)
    await bot.engine.sweep()
    assert (await bot.running.request_for(message)).status is RequestStatus.REVOKED
    assert await bot.engine.settle(timeout=15) == 0
    ended = bot.slack.message(APPROVAL_CHANNEL, message.ts)
    assert "Access ended" in ended.plain
    answers = [c.response.get("error") for c in bot.slack.calls("chat.update")][-4:]
    assert answers == ["internal_error", "internal_error", "internal_error", None]
