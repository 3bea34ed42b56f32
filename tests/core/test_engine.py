"""The engine against real storage, the FakeStrategy and recording stand-ins for Slack."""

from datetime import timedelta

import pytest

from core.config import load_config
from core.engine import SubmissionRejected
from core.errors import StrategyUnavailable
from core.expiry import revoke_backoff
from core.models import RequestStatus as S
from core.ports import UserInfo
from storage.db import Store
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import build_engine, flows_config
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES, FakeStrategy

FLOWS = """\
slack: {alerts_channel: C_ALERTS}
flows:
  - name: db
    label: DB
    approval_channel: C_APPROVALS
    strategy:
      type: fake
      targets:
        - {name: prod, label: Prod}
    fields:
      - {name: duration, label: Duration, type: duration, allowed_values: [1h], required: true}
"""


class RecordingNotifier:
    def __init__(self):
        self.published, self.notices, self.alerts = [], [], []

    async def publish(self, request):
        self.published.append(request.status)
        return request.message_ts or "1.000001"

    async def notify_requester(self, request, notice, detail=None):
        self.notices.append(notice.value)

    async def alert(self, alert):
        self.alerts.append(str(alert))


class Directory:
    async def lookup_user(self, slack_id, *, fresh=False):
        return UserInfo(slack_id, email=f"{slack_id.lower()}@example.com")

    async def usergroup_members(self, group, *, fresh=False):
        return frozenset()


@pytest.fixture
async def world(tmp_path, databases):
    config = flows_config(tmp_path, FLOWS)
    store = await Store.open(databases.where())
    clock, notifier, strategy = FrozenClock(), RecordingNotifier(), FakeStrategy()

    def build():
        return build_engine(
            store, config, strategies={"db": strategy}, notifier=notifier, directory=Directory(), clock=clock
        )

    yield build, clock, notifier, strategy
    await store.close()


async def submit(engine, user="U_ALICE"):
    draft = await engine.prepare("db", user, "prod", {"duration": "1h"}, timedelta(hours=1))
    return await engine.submit(draft)


async def crash_after_approval(engine, request, clock):
    """What a crash between the approval's commit and the strategy call leaves: an `approved` row."""
    await engine.requests.transition(
        request.id,
        S.PENDING,
        S.APPROVED,
        changes={"decided_by": "U_BOB", "decided_at": clock.now(), "expires_at": clock.now() + timedelta(hours=1)},
        audit=engine.life.event(request, "U_BOB", "request.approved"),
    )


async def test_a_retryable_grant_failure_is_retried_and_then_granted(world):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    strategy.fail_next("grant", StrategyUnavailable("503 from the target", retryable=True))
    granted = await engine.approve(request.id, "U_BOB")
    assert granted.status is S.GRANTED and len(strategy.calls_of("grant")) == 2
    assert strategy.holds("u_alice@example.com", "prod") and notifier.alerts == []


async def test_a_grant_that_keeps_failing_ends_failed_cleans_up_and_alerts(world):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    for _ in range(3):
        strategy.fail_next("grant", StrategyUnavailable("target down", retryable=True))
    failed = await engine.approve(request.id, "U_BOB")
    assert failed.status is S.FAILED and "target down" in failed.failure_reason
    assert len(strategy.calls_of("grant")) == 3 and len(strategy.calls_of("revoke")) == 1
    assert notifier.notices[-1] == "failed" and any("Grant failed" in a for a in notifier.alerts)


async def test_an_unmatched_requester_is_rejected_before_anything_is_stored(world):
    build, clock, notifier, strategy = world
    engine = build()
    strategy.unknown_identities.add("u_dave@example.com")
    with pytest.raises(SubmissionRejected) as rejected:
        await engine.prepare("db", "U_DAVE", "prod", {"duration": "1h"}, timedelta(hours=1))
    assert "Fake" in rejected.value.errors["target"]
    assert await engine.requests.list_by_status(*S) == [] and notifier.published == []


async def test_recovery_grants_a_row_left_approved_exactly_once(world):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    await crash_after_approval(engine, request, clock)
    restarted = build()
    await restarted.recover()
    await restarted.recover()
    assert (await restarted.requests.get(request.id)).status is S.GRANTED
    assert len(strategy.calls_of("grant")) == 1
    clock.advance(hours=1)
    await restarted.sweep()
    assert (await restarted.requests.get(request.id)).status is S.REVOKED


async def test_recovery_past_the_end_revokes_a_grant_in_doubt_without_granting(world):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    await crash_after_approval(engine, request, clock)
    clock.advance(hours=2)
    counts = await build().recover()
    assert counts["in_doubt_revoked"] == 1
    assert (await engine.requests.get(request.id)).status is S.REVOKED
    assert strategy.calls_of("grant") == [] and len(strategy.calls_of("revoke")) == 1
    actions = [e.action for e in await engine.audit.for_request(request.id)]
    assert actions[-2:] == ["grant.in_doubt", "access.revoked"]


async def test_a_fast_grant_edits_the_message_once_and_a_revocation_is_never_early(world):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    await engine.approve(request.id, "U_BOB")
    await engine.settle()
    assert notifier.published == [S.PENDING, S.GRANTED]
    clock.advance(minutes=59)
    assert await engine.revoke(request.id) is None
    assert (await engine.requests.get(request.id)).status is S.GRANTED


def test_revoke_backoff_starts_within_seconds_and_is_capped_at_five_minutes():
    delays = [revoke_backoff(n) for n in range(1, 12)]
    assert delays[:4] == [2, 4, 8, 16] and max(delays) == 300 and delays == sorted(delays)


async def test_a_grant_nothing_can_revoke_is_retried_and_alerted_until_its_flow_is_back(world, tmp_path):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    await engine.approve(request.id, "U_BOB")
    pending = await submit(engine, user="U_CAROL")

    (tmp_path / "renamed.yaml").write_text(FLOWS.replace("name: db", "name: other"))
    renamed = build()
    # The operator renamed the flow, and (unlike `run`) nothing rebuilt the grant's recorded strategy.
    renamed.config = load_config(
        tmp_path / "renamed.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES
    )
    renamed.strategies = {"other": strategy}
    await renamed.recover()
    assert (await renamed.requests.get(pending.id)).status is S.EXPIRED

    clock.advance(hours=1)
    await renamed.sweep()
    stuck = await renamed.requests.get(request.id)
    assert stuck.status is S.GRANTED and stuck.revoke_attempts == 1 and "restore the flow" in stuck.last_error
    assert any("Revocation failed" in a for a in notifier.alerts)

    await build().sweep()  # the flow is back: the retry, once due, revokes
    clock.advance(seconds=2)
    await build().sweep()
    assert (await engine.requests.get(request.id)).status is S.REVOKED


async def test_a_failed_grant_under_a_live_grant_is_cleaned_up_when_that_grant_ends_not_before(world):
    build, clock, notifier, strategy = world
    engine = build()
    first = await submit(engine)
    # Asked before the first was granted, so not an extension of it: a grant of its own.
    second = await submit(engine)
    await engine.approve(first.id, "U_BOB")
    clock.advance(minutes=30)
    for _ in range(3):
        strategy.fail_next("grant", StrategyUnavailable("target down", retryable=True))
    failed = await engine.approve(second.id, "U_BOB")
    # Revoking now would cut the first grant short: the clean-up waits (looking again every minute).
    first_end = (await engine.requests.get(first.id)).expires_at
    assert failed.status is S.FAILED and clock.now() < failed.next_attempt_at <= first_end
    assert strategy.calls_of("revoke") == [] and strategy.holds("u_alice@example.com", "prod")
    clock.advance(minutes=1)
    await engine.sweep()
    assert strategy.calls_of("revoke") == []  # still covered

    strategy.holdings.add(("u_alice@example.com", "prod"))  # the failed attempt landed late after all
    clock.advance(minutes=29)
    await engine.sweep()
    assert (await engine.requests.get(first.id)).status is S.REVOKED
    assert (await engine.requests.get(second.id)).next_attempt_at is None
    assert not strategy.holds("u_alice@example.com", "prod")
    deferred = [e for e in await engine.audit.for_request(second.id) if e.action == "grant.cleanup_deferred"]
    assert len(deferred) == 1  # one audit row for the deferral, not one per minute


async def test_an_approved_row_whose_target_was_removed_before_the_grant_is_never_granted_at_restart(world, tmp_path):
    build, clock, notifier, strategy = world
    engine = build()
    request = await submit(engine)
    await crash_after_approval(engine, request, clock)
    (tmp_path / "narrowed.yaml").write_text(
        FLOWS.replace("- {name: prod, label: Prod}", "- {name: staging, label: Staging}")
    )
    restarted = build()
    restarted.config = load_config(
        tmp_path / "narrowed.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES
    )
    await restarted.recover()
    settled = await restarted.requests.get(request.id)
    assert settled.status is S.FAILED and "flow changed" in settled.failure_reason
    assert strategy.calls_of("grant") == [] and len(strategy.calls_of("revoke")) == 1  # cleaned up, never granted
