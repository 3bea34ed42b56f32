"""Fail closed: every failure path refuses access, and every grant stays accounted for.

Each test reproduces one way the bot used to open access or lose track of it, through the Slack
emulator and the webhook receiver exactly as people and target systems meet the bot.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from core.engine import SubmissionRejected
from core.errors import NotAllowed, StartupError
from core.models import RequestStatus
from tests.db_faults import fail_updates, heal, stored_text
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, standard_flow, webhook_flows
from tests.e2e.flows import (
    ALERTS_CHANNEL,
    APPROVAL_CHANNEL,
    PROD_ADMIN,
    SECOPS,
    STAGING_RO,
    db_access_flow,
    flows_file,
    okta_integration,
    okta_strategy,
    reason_and_duration,
    target,
)
from tests.e2e.flows import flow as flow_entry
from tests.e2e.harness import command_answer
from tests.fakes.okta_api import OktaFake

OKTA_TOKEN = "00okta-fail-closed-token"

PARSE_TICKET_HOOK = """\
    def get_approvers(evt):
        # Breaks on a reason without '#': the requester controls whether this hook fails.
        ticket = evt.fields["reason"].split("#", 1)[1]
        return ["U_" + ticket.upper()]
    """


def open_flow(receiver_url: str, *, hooks: str | None = None, **keys) -> str:
    """The webhook flow with no static approvers (anyone but the requester), and options."""
    flow = standard_flow(receiver_url, **{"approvers": None, **keys})
    if hooks:
        flow["hooks"] = hooks
    return flows_file(flow)


async def refused(bot, message, user: str, text: str = "Approve", contains: str = "") -> None:
    """`user` clicks `text`; they are told why it was refused, and the message keeps its state."""
    before = len(bot.slack.ephemerals_to(user))
    await bot.slack.click(message, text=text, user=user)
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals_to(user)) > before, description="a refusal")
    assert contains.lower() in bot.slack.ephemerals_to(user)[-1].text.lower()


# ── 1. a failing approval rule never opens the flow ───────────────────────────────────────────────


async def test_when_get_approvers_fails_and_the_flow_names_nobody_no_one_may_approve(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write("hooks.py", PARSE_TICKET_HOOK)
    bot = await launch.start(open_flow(receiver.url, hooks="hooks.py"))
    bot.slack.add_user("U_MALLORY", email="mallory@example.com")
    message = await bot.request(
        "U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", reason="no ticket here", duration="30m"
    )

    assert "Nobody may approve" in message.plain and not message.buttons
    alert = await bot.slack.wait_for_message(ALERTS_CHANNEL, contains="Nobody may approve")
    assert "get_approvers" in alert.plain
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.PENDING and request.approvers == ()
    # Even a click that reaches the engine without a button is refused.
    with pytest.raises(NotAllowed, match="Nobody may decide"):
        await bot.engine.approve(request.id, "U_MALLORY")
    assert receiver.accepted("grant") == []


async def test_when_get_approvers_fails_the_flows_static_approvers_decide(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write("hooks.py", PARSE_TICKET_HOOK)
    bot = await launch.start(open_flow(receiver.url, hooks="hooks.py", approvers=SECOPS))
    bot.slack.add_user("U_MALLORY", email="mallory@example.com")
    message = await bot.request(
        "U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", reason="no ticket here", duration="30m"
    )

    await refused(bot, message, "U_MALLORY", contains="not an approver")
    assert receiver.accepted("grant") == []
    await bot.approve(message, "U_BOB")
    assert len(receiver.accepted("grant")) == 1


# ── 7. a hook's verdict comes before the buttons ──────────────────────────────────────────────────


async def test_an_on_request_deny_is_applied_before_anything_with_buttons_is_posted(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write(
        "hooks.py",
        """\
        def on_request(evt):
            return evt.deny("production is frozen")
        """,
    )
    bot = await launch.start(open_flow(receiver.url, hooks="hooks.py", approvers=SECOPS))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")

    assert "Denied" in message.plain and "production is frozen" in message.plain
    # No version of the message ever carried a button, and the requester never heard "sent".
    assert not message.buttons and all(
        not version.blocks or "Approve" not in str(version.blocks) for version in message.history
    )
    dms = [m.plain for m in bot.slack.dms_to("U_ALICE")]
    assert any("denied" in text for text in dms) and not any("sent to" in text for text in dms)


# ── 8. group membership is read fresh for a decision ──────────────────────────────────────────────


async def test_someone_removed_from_the_approver_group_can_no_longer_approve(bot):
    bot.slack.add_user("U_MALLORY", email="mallory@example.com")
    message = await bot.request(user="U_ALICE")
    await refused(bot, message, "U_MALLORY", contains="not an approver")  # the group was read just now
    bot.slack.workspace.usergroups["S_SECOPS"].users.remove("U_BOB")

    await refused(bot, message, "U_BOB", contains="not an approver")
    assert bot.receiver.accepted("grant") == []


# ── 9. alert text is text ─────────────────────────────────────────────────────────────────────────


async def test_an_alert_quoting_a_requesters_words_cannot_ping_the_channel_or_carry_a_link(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write(
        "hooks.py",
        """\
        def get_approvers(evt):
            raise ValueError("cannot parse " + evt.fields["reason"])
        """,
    )
    bot = await launch.start(open_flow(receiver.url, hooks="hooks.py", approvers=SECOPS))
    await bot.request(
        "U_ALICE",
        "db_access",
        APPROVAL_CHANNEL,
        target="Prod Admin",
        reason="<!channel> log in at <https://evil.example/login|Okta>",
    )

    alert = await bot.slack.wait_for_message(ALERTS_CHANNEL, contains="cannot parse")
    assert "<!channel>" not in alert.text and "<https://evil.example" not in alert.text
    assert "&lt;!channel&gt;" in alert.text


# ── 14. an approval checks the present ────────────────────────────────────────────────────────────


async def test_an_approval_after_the_request_timed_out_is_refused_and_the_request_expires(bot):
    message = await bot.request(user="U_ALICE")
    bot.clock.advance(hours=2)  # request_timeout is 1h; the expiry timer has not fired yet

    await refused(bot, message, "U_BOB", contains="expired")
    (request,) = await bot.running.all_requests()
    assert request.status is RequestStatus.EXPIRED
    assert bot.receiver.accepted("grant") == []
    await bot.slack.wait_for_dm("U_ALICE", contains="expired")


async def test_an_approval_for_a_target_removed_from_the_config_is_refused(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    first = await launch.start(webhook_flows(receiver.url))
    message = await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Staging read-only")
    await first.stop()
    flow = standard_flow(receiver.url, targets=(PROD_ADMIN,))
    second = await launch.start(flows_file(flow))

    await refused(second, message, "U_BOB", contains="no longer")
    assert receiver.accepted("grant") == []


async def test_an_approval_for_a_duration_the_flow_no_longer_allows_is_refused(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    first = await launch.start(webhook_flows(receiver.url))
    message = await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="1h")
    await first.stop()
    flow = standard_flow(receiver.url, ("10s", "30m"))
    second = await launch.start(flows_file(flow))

    await refused(second, message, "U_BOB", contains="duration")
    assert receiver.accepted("grant") == []


async def test_an_approval_for_a_requester_deactivated_since_is_refused(bot):
    message = await bot.request(user="U_ALICE")
    bot.slack.workspace.users["U_ALICE"].deleted = True

    await refused(bot, message, "U_BOB", contains="deactivated")
    assert bot.receiver.accepted("grant") == []


async def test_a_click_carrying_another_requests_id_is_refused(bot):
    bot.slack.add_user("U_DAVE", email="dave@example.com")
    alice = await bot.request(user="U_ALICE")
    dave = await bot.request(user="U_DAVE")
    # Bob's approval of Alice's message, with Dave's request id swapped into the button.
    click = await bot.slack.click(alice, text="Deny", user="U_ALICE")  # the requester's own deny: refused
    forged = copy.deepcopy(click.payload)
    forged["user"] = {**forged["user"], "id": "U_BOB"}
    forged["actions"][0]["value"] = dave.buttons[0]["value"]
    forged["actions"][0]["action_id"] = dave.buttons[0]["action_id"]
    before = len(bot.slack.ephemerals_to("U_BOB"))
    await bot.slack.send_envelope("interactive", forged)
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals_to("U_BOB")) > before, description="a refusal")

    assert "does not belong" in bot.slack.ephemerals_to("U_BOB")[-1].text
    assert bot.receiver.accepted("grant") == []


# ── 15. overlapping grants never cut each other short ─────────────────────────────────────────────


def _okta_groups_flow(group: str) -> dict:
    return flow_entry(
        "okta_groups",
        "Okta groups",
        okta_strategy("okta_main", target("sre", "SRE", group_id=group)),
        reason_and_duration("30m", "1h"),
        approvers=SECOPS,
    )


async def test_a_second_request_for_held_okta_membership_extends_it_without_a_gap(launch):
    async with OktaFake(api_token=OKTA_TOKEN) as okta:
        group, alice = okta.add_group("SRE"), okta.add_user("alice@example.com")
        bot = await launch.start(
            flows_file(_okta_groups_flow(group), integrations={"okta_main": okta_integration(okta.url, OKTA_TOKEN)})
        )
        first = await bot.request("U_ALICE", "okta_groups", APPROVAL_CHANNEL, target="SRE", duration="30m")
        await bot.approve(first, "U_BOB")
        bot.clock.advance(minutes=10)
        second = await bot.request("U_ALICE", "okta_groups", APPROVAL_CHANNEL, target="SRE", duration="1h")
        assert "Extends request" in second.plain  # a request for held access is an extension of it
        calls = len(okta.calls)
        await bot.approve(second, "U_BOB")
        assert len(okta.calls) == calls  # no second grant call: the end moved

        ended, live = await bot.request_for(first), await bot.request_for(second)
        assert ended.status is RequestStatus.REVOKED and live.status is RequestStatus.GRANTED
        assert live.expires_at == ended.expires_at + timedelta(hours=1)
        bot.clock.advance(minutes=21)  # the first grant's own end passes: nothing happens
        await bot.engine.sweep()
        assert okta.members[group] == {alice}

        bot.clock.advance(minutes=60)  # 30 + 60 minutes after the first approval
        await bot.engine.sweep()
        assert okta.members[group] == set()
        assert (await bot.request_for(second)).status is RequestStatus.REVOKED


async def test_two_okta_grants_asked_at_once_keep_the_membership_until_the_last_one_ends(launch):
    async with OktaFake(api_token=OKTA_TOKEN) as okta:
        group, alice = okta.add_group("SRE"), okta.add_user("alice@example.com")
        bot = await launch.start(
            flows_file(_okta_groups_flow(group), integrations={"okta_main": okta_integration(okta.url, OKTA_TOKEN)})
        )
        # Both asked before either was granted: two grants of one membership, not an extension.
        first = await bot.request("U_ALICE", "okta_groups", APPROVAL_CHANNEL, target="SRE", duration="30m")
        second = await bot.request("U_ALICE", "okta_groups", APPROVAL_CHANNEL, target="SRE", duration="1h")
        assert "Extends request" not in second.plain
        await bot.approve(first, "U_BOB")
        bot.clock.advance(minutes=10)
        await bot.approve(second, "U_BOB")

        bot.clock.advance(minutes=21)  # the first has ended, the second runs until +70 min
        await bot.engine.sweep()
        ended, live = await bot.request_for(first), await bot.request_for(second)
        assert ended.status is RequestStatus.REVOKED and live.status is RequestStatus.GRANTED
        assert okta.members[group] == {alice}  # nothing took Alice's membership away
        revoked = [e for e in await bot.audit(ended.id) if e.action == "access.revoked"]
        assert revoked[0].detail["access_kept_by"] == live.id
        await bot.slack.wait_for_dm("U_ALICE", contains=f"continues under request {live.id}")

        bot.clock.advance(minutes=40)
        await bot.engine.sweep()
        assert okta.members[group] == set()
        assert (await bot.request_for(second)).status is RequestStatus.REVOKED


async def test_each_webhook_grant_gets_its_own_revoke_because_receivers_key_grants_by_request(bot):
    # Both asked before either was granted (a request for held access would extend it instead).
    first = await bot.request(user="U_ALICE", duration="30m")
    second = await bot.request(user="U_ALICE", duration="1h")
    await bot.running.approve(first, "U_BOB")
    await bot.running.approve(second, "U_BOB")

    bot.clock.advance(minutes=31)
    await bot.engine.sweep()
    ended = await bot.running.request_for(first)
    assert [d.body["request_id"] for d in bot.receiver.accepted("revoke")] == [ended.id]
    assert bot.receiver.is_held((await bot.running.request_for(second)).id)


# ── 16. a request that could not be posted ────────────────────────────────────────────────────────


async def test_a_request_that_cannot_be_posted_is_alerted_retried_and_the_requester_told_the_truth(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    closed = launch.slack.add_channel("C_CLOSED", name="closed-approvals", bot_is_member=False)
    flow = db_access_flow(receiver.url, "30m", secret_env=SECRET_ENV, approvers=SECOPS)
    flow["approval_channel"] = "C_CLOSED"
    bot = await launch.start(flows_file(flow))
    await bot.submit("U_ALICE", "db_access", target="Prod Admin", duration="30m")
    await bot.idle()

    alert = await bot.slack.wait_for_message(ALERTS_CHANNEL, contains="could not be posted")
    assert "keeps trying" in alert.plain
    dm = await bot.slack.wait_for_dm("U_ALICE", contains="could not be posted")
    assert "operators have been alerted" in dm.plain

    closed.bot_is_member = True
    bot.clock.advance(minutes=1)
    await bot.engine.sweep()
    posted = await bot.slack.wait_for_message("C_CLOSED", contains="Prod Admin")
    assert posted.buttons
    await bot.slack.wait_for_dm("U_ALICE", contains="sent to")


# ── 17. a removed flow's pending requests end visibly ─────────────────────────────────────────────


async def test_pending_requests_of_a_removed_flow_expire_with_their_message_updated_and_the_requester_told(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    first = await launch.start(webhook_flows(receiver.url))
    message = await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await first.stop()
    second = await launch.start(flows_file(other_flow(receiver.url)))

    updated = second.slack.message(APPROVAL_CHANNEL, message.ts)
    assert updated.edited and not updated.buttons and "Expired" in updated.plain
    await second.slack.wait_for_dm("U_ALICE", contains="expired")
    (request,) = await second.all_requests()
    assert request.status is RequestStatus.EXPIRED


# ── 19. guests and other organisations ────────────────────────────────────────────────────────────


async def test_guests_and_people_from_other_organisations_can_neither_approve_nor_request(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_GUEST", email="guest@contractor.example", guest="multi")
    launch.slack.add_user("U_PARTNER", email="eve@partner.example", guest="external")
    bot = await launch.start(open_flow(receiver.url))  # no approvers: anyone but the requester…
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")

    await refused(bot, message, "U_GUEST", contains="guests")  # …but never a guest
    await refused(bot, message, "U_PARTNER", contains="other organisations")
    assert receiver.accepted("grant") == []
    # The command refuses them before any form opens; a submission is refused too (read fresh).
    assert "Guests" in await command_answer(bot.slack, "U_GUEST", "db_access")
    assert not bot.slack.open_views("U_GUEST")
    with pytest.raises(SubmissionRejected, match="Guests"):
        await bot.engine.prepare("db_access", "U_PARTNER", "prod_admin", {"reason": "x"}, timedelta(minutes=30))


async def test_a_flow_that_allows_guests_lets_a_guest_approve(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_GUEST", email="guest@contractor.example", guest="single")
    bot = await launch.start(open_flow(receiver.url, allow_guests=True))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.approve(message, "U_GUEST")
    assert len(receiver.accepted("grant")) == 1


# ── 2 and 5. failed clean-ups are retried; a failing alerts channel stops nothing ────────────────


async def test_a_failed_grants_cleanup_is_retried_until_it_succeeds_even_when_alerts_fail(bot):
    bot.slack.workspace.channels[ALERTS_CHANNEL].is_archived = True  # every alert now fails
    # The grant's own back-off (1 s, 2 s) is not what this test is about; on a loaded machine it
    # pushed the failure past the message wait below.
    bot.engine.granting.grant_retry_delay = 0.01
    message = await bot.request(user="U_ALICE")
    bot.receiver.fail_next(3, status=503, action="grant")
    bot.receiver.fail_next(2, status=503, action="revoke")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="grant failed", where=lambda m: m.ts == message.ts)
    await bot.slack.wait_for_dm("U_ALICE", contains="granting it failed")

    for _ in range(3):
        bot.clock.advance(minutes=5)
        await bot.engine.sweep()
    assert len(bot.receiver.accepted("revoke")) == 1
    request = await bot.running.request_for(message)
    assert request.status is RequestStatus.FAILED and request.next_attempt_at is None
    actions = [e.action for e in await bot.running.audit(request.id)]
    assert actions.count("revoke.failed") == 2 and actions[-1] == "grant.cleaned_up"


# ── 3. a grant whose record could not be written ─────────────────────────────────────────────────


def break_grant_writes(db_path) -> None:
    """A real database error for the approved → granted write, from a second connection."""
    fail_updates(db_path, "test_fail_grant", column="status", when="NEW.status = 'granted'")


def heal_grant_writes(db_path) -> None:
    """Drop the injected fault."""
    heal(db_path, "test_fail_grant")


async def test_a_grant_whose_record_write_failed_is_still_revoked_on_time_by_the_sweep(bot):
    bot.engine.retry_delay = 0
    message = await bot.request(user="U_ALICE", duration="30m")
    break_grant_writes(bot.running.db_path)
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.running.idle()
    assert len(bot.receiver.accepted("grant")) == 1
    assert (await bot.running.request_for(message)).status is RequestStatus.APPROVED
    await bot.slack.wait_for_message(ALERTS_CHANNEL, contains="refused to record")
    heal_grant_writes(bot.running.db_path)

    bot.clock.advance(minutes=31)
    await bot.engine.sweep()  # no restart: the sweep finishes what recovery would
    assert len(bot.receiver.accepted("revoke")) == 1
    assert (await bot.running.request_for(message)).status is RequestStatus.REVOKED


async def test_a_grant_whose_record_write_failed_is_recorded_by_the_next_sweep_before_its_end(bot):
    bot.engine.retry_delay = 0
    message = await bot.request(user="U_ALICE", duration="30m")
    break_grant_writes(bot.running.db_path)
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.running.idle()
    heal_grant_writes(bot.running.db_path)

    bot.clock.advance(minutes=1)
    await bot.engine.sweep()
    request = await bot.running.request_for(message)
    assert request.status is RequestStatus.GRANTED
    assert request.expires_at == request.decided_at + timedelta(minutes=30)  # the original end, never extended


# ── 20. editing the config never strands access ───────────────────────────────────────────────────


def other_flow(receiver_url: str) -> dict:
    """A flow that is not db_access, so a flows file without db_access is still valid."""
    other = db_access_flow(receiver_url, "30m", secret_env=SECRET_ENV, approvers=SECOPS)
    other["name"] = "other_access"
    return other


async def test_a_removed_flows_live_grant_is_revoked_on_time_with_the_strategy_and_target_it_recorded(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    first = await launch.start(webhook_flows(receiver.url))
    message = await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
    await first.approve(message, "U_BOB")
    await first.stop()

    second = await launch.start(flows_file(other_flow(receiver.url)), clock=first.clock)
    assert (await second.request_for(message)).status is RequestStatus.GRANTED
    second.clock.advance(minutes=31)
    await second.engine.sweep()

    (revoke,) = receiver.accepted("revoke")  # signed with the secret, as the receiver checks
    assert revoke.body["flow"] == "db_access" and revoke.body["target"]["settings"] == PROD_ADMIN["settings"]
    assert (await second.request_for(message)).status is RequestStatus.REVOKED
    await second.slack.wait_for_dm("U_ALICE", contains="expired and was removed")


async def test_grants_of_several_people_on_a_removed_flow_share_one_rebuilt_strategy(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_DAVE", email="dave@example.com")
    first = await launch.start(webhook_flows(receiver.url))
    messages = [
        await first.request(user, "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
        for user in ("U_ALICE", "U_DAVE")
    ]
    for message in messages:
        await first.approve(message, "U_BOB")
    await first.stop()

    second = await launch.start(flows_file(other_flow(receiver.url)), clock=first.clock)
    # How to revoke does not depend on who: one strategy is rebuilt (and opened) for both grants.
    assert len(second.runtime.retired.strategies) == 1 and len(second.runtime.retired.by_request) == 2
    second.clock.advance(minutes=31)
    await second.engine.sweep()
    assert len(receiver.accepted("revoke")) == 2


async def test_a_target_whose_settings_changed_is_revoked_with_the_settings_it_was_granted_with(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    first = await launch.start(webhook_flows(receiver.url))
    message = await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
    await first.approve(message, "U_BOB")
    await first.stop()
    moved = {**PROD_ADMIN, "settings": {"database": "prod-replica", "role": "admin"}}
    flow = standard_flow(receiver.url, targets=(moved, STAGING_RO))

    second = await launch.start(flows_file(flow), clock=first.clock)
    second.clock.advance(minutes=31)
    await second.engine.sweep()
    (revoke,) = receiver.accepted("revoke")
    assert revoke.body["target"]["settings"] == {"database": "prod", "role": "admin"}


async def test_run_refuses_to_start_when_a_live_grants_integration_is_gone_too(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    async with OktaFake(api_token=OKTA_TOKEN) as okta:
        group = okta.add_group("SRE")
        okta.add_user("alice@example.com")
        okta_flow = flow_entry(
            "okta_groups",
            "Okta groups",
            okta_strategy("okta_main", target("sre", "SRE", group_id=group)),
            reason_and_duration("30m"),
            approvers=SECOPS,
        )
        first = await launch.start(
            flows_file(okta_flow, integrations={"okta_main": okta_integration(okta.url, OKTA_TOKEN)})
        )
        message = await first.request("U_ALICE", "okta_groups", APPROVAL_CHANNEL, target="SRE", duration="30m")
        await first.approve(message, "U_BOB")
        request = await first.request_for(message)
        await first.stop()

        with pytest.raises(StartupError) as refused:
            await launch.start(flows_file(other_flow(receiver.url)), clock=first.clock)
        text = str(refused.value)
        assert "okta_groups" in text and "okta_main" in text and request.id in text


# ── 5. a failing alert stops nothing at start-up ──────────────────────────────────────────────────


async def test_start_up_revokes_what_is_due_even_with_a_removed_flow_and_a_broken_alerts_channel(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    first = await launch.start(
        flows_file(
            db_access_flow(receiver.url, "30m", "1h", secret_env=SECRET_ENV, approvers=SECOPS), other_flow(receiver.url)
        )
    )
    due = await first.request("U_ALICE", "other_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
    await first.approve(due, "U_BOB")
    removed = await first.request("U_CAROL", "db_access", APPROVAL_CHANNEL, target="Staging read-only", duration="1h")
    await first.approve(removed, "U_BOB")
    await first.stop()
    launch.slack.workspace.channels[ALERTS_CHANNEL].is_archived = True
    receiver.fail_next(1, status=503, action="revoke")  # the first revocation fails and must alert
    first.clock.advance(minutes=31)

    second = await launch.start(flows_file(other_flow(receiver.url)), clock=first.clock)
    request = await second.request_for(due)
    assert request.status is RequestStatus.GRANTED and request.next_attempt_at is not None  # retry armed
    second.clock.advance(seconds=5)
    await second.engine.sweep()
    assert (await second.request_for(due)).status is RequestStatus.REVOKED
    second.clock.advance(minutes=30)
    await second.engine.sweep()
    assert (await second.request_for(removed)).status is RequestStatus.REVOKED


# ── found by review: the gaps between steps ───────────────────────────────────────────────────────


async def test_a_hooked_request_whose_routing_was_never_stored_is_posted_as_nobody_may_approve(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write(
        "hooks.py",
        """\
        def get_approvers(evt):
            return ["U_SECURITY"]
        """,
    )
    bot = await launch.start(open_flow(receiver.url, hooks="hooks.py"))  # no static approvers
    fail_updates(bot.db_path, "test_fail_routing", column="approvers")  # the write that stores the hook's answer
    await bot.submit("U_ALICE", "db_access", target="Prod Admin")
    await bot.idle()
    heal(bot.db_path, "test_fail_routing")

    bot.clock.advance(minutes=1)
    await bot.engine.sweep()  # posts what was stored: a request nobody may decide
    (request,) = await bot.all_requests()
    posted = bot.slack.message(APPROVAL_CHANNEL, request.message_ts)
    assert "Nobody may approve" in posted.plain and not posted.buttons
    with pytest.raises(NotAllowed):
        await bot.engine.approve(request.id, "U_BOB")
    assert receiver.accepted("grant") == []


async def test_a_literal_secret_in_the_flow_never_reaches_the_database(launch, receiver):
    literal = "whsec-literal-0123456789abcdef"
    flow = db_access_flow(receiver.url, "30m", secret_env=SECRET_ENV, approvers=SECOPS)
    flow["strategy"]["secret"] = literal
    receiver.secret = literal
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="30m")
    await bot.approve(message, "U_BOB")

    request = await bot.request_for(message)
    assert request.grant_spec.get("literal_secrets") is True
    assert literal.encode() not in stored_text(bot.db_path)
