"""ApprovalPolicy against real storage: earlier approvals re-checked at the last one, and a last approval
whose record failed finished by a retry. Slack is a small stand-in whose answers the test scripts."""

from datetime import timedelta

import pytest

from core.errors import NotAllowed
from core.models import RequestStatus as S
from core.ports import UserInfo
from storage.db import Store
from storage.requests import RequestRepo
from tests.core.test_engine import RecordingNotifier
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import build_engine, flows_config
from tests.fakes.strategy import FakeStrategy

FLOWS = """\
flows:
  - name: db
    label: DB
    approval_channel: C_APPROVALS
    approvers: {users: [U_BOB], usergroups: [S_OPS]}
    approvals_required: 2
    strategy: {type: fake, targets: [{name: prod, label: Prod}]}
    fields:
      - {name: duration, label: Duration, type: duration, allowed_values: [1h], required: true}
"""


class ScriptedSlack:
    """A directory whose user-group reads fail from the `fail_from`-th one on (1-based)."""

    def __init__(self) -> None:
        self.groups = {"S_OPS": {"U_CAROL", "U_DAVE"}}
        self.reads = 0
        self.fail_from: int | None = None

    async def lookup_user(self, slack_id, *, fresh=False):
        return UserInfo(slack_id, email=f"{slack_id.lower()}@example.com")

    async def usergroup_members(self, group, *, fresh=False):
        self.reads += 1
        if self.fail_from is not None and self.reads >= self.fail_from:
            raise ConnectionError("Slack is down")
        return frozenset(self.groups[group])


class FlakyRequests(RequestRepo):
    """The real repository, whose next approval transition can be made to fail once."""

    fail_next_approval = False

    async def transition(self, request_id, expected, new, **kwargs):
        if new is S.APPROVED and self.fail_next_approval:
            self.fail_next_approval = False
            raise OSError("disk I/O error")
        return await super().transition(request_id, expected, new, **kwargs)


@pytest.fixture
async def world(tmp_path, databases):
    config = flows_config(tmp_path, FLOWS)
    store = await Store.open(databases.where())
    clock, notifier, strategy, slack = FrozenClock(), RecordingNotifier(), FakeStrategy(), ScriptedSlack()
    engine = build_engine(
        store,
        config,
        strategies={"db": strategy},
        notifier=notifier,
        directory=slack,
        clock=clock,
        requests=FlakyRequests(store),
    )
    draft = await engine.prepare("db", "U_ALICE", "prod", {"duration": "1h"}, timedelta(hours=1))
    request = await engine.submit(draft)
    yield engine, request, slack, strategy
    await store.close()


async def test_slack_failing_while_rechecking_an_earlier_approver_keeps_every_approval_and_grants_nothing(world):
    engine, request, slack, strategy = world
    await engine.approve(request.id, "U_CAROL")  # read 1: Carol is in S_OPS
    slack.fail_from = slack.reads + 2  # Bob's own check reads the group; the re-check of Carol fails
    with pytest.raises(NotAllowed, match="Could not check"):
        await engine.approve(request.id, "U_BOB")
    stored = await engine.requests.get(request.id)
    assert stored.status is S.PENDING and stored.approvals == ("U_CAROL", "U_BOB")
    assert strategy.calls_of("grant") == []

    slack.fail_from = None  # Slack is back: the same last click finishes the approval
    granted = await engine.approve(request.id, "U_BOB")
    assert granted.status is S.GRANTED and len(strategy.calls_of("grant")) == 1


async def test_a_last_approval_whose_record_failed_is_finished_by_a_retry_of_the_same_click(world):
    engine, request, _slack, strategy = world
    await engine.approve(request.id, "U_CAROL")
    engine.requests.fail_next_approval = True
    with pytest.raises(OSError):
        await engine.approve(request.id, "U_DAVE")
    assert (await engine.requests.get(request.id)).approvals == ("U_CAROL", "U_DAVE")
    granted = await engine.approve(request.id, "U_DAVE")  # not "already approved": finished
    assert granted.status is S.GRANTED and granted.approvals == ("U_CAROL", "U_DAVE")
    assert len(strategy.calls_of("grant")) == 1


async def test_a_repeat_before_the_threshold_is_refused_and_changes_nothing(world):
    engine, request, _slack, _strategy = world
    await engine.approve(request.id, "U_CAROL")
    with pytest.raises(NotAllowed, match="already approved this request; it needs 1 more approval"):
        await engine.approve(request.id, "U_CAROL")
    assert (await engine.requests.get(request.id)).approvals == ("U_CAROL",)
