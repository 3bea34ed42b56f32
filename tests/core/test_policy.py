import pytest

from core.policy import may_decide

CASES = [
    dict(id="anyone-but-requester", clicker="U2", approvers=None, groups=(), self_ok=False, allowed=True),
    dict(id="requester-refused", clicker="U1", approvers=None, groups=(), self_ok=False, allowed=False),
    dict(id="self-approval-allowed", clicker="U1", approvers=None, groups=(), self_ok=True, allowed=True),
    dict(id="listed-user", clicker="U2", approvers={"U2"}, groups=(), self_ok=False, allowed=True),
    dict(id="not-listed", clicker="U3", approvers={"U2"}, groups=(), self_ok=False, allowed=False),
    dict(id="group-member", clicker="U3", approvers=set(), groups={"U3"}, self_ok=False, allowed=True),
    dict(id="self-approval-needs-listing", clicker="U1", approvers={"U2"}, groups=(), self_ok=True, allowed=False),
    dict(id="self-approval-listed", clicker="U1", approvers={"U1"}, groups=(), self_ok=True, allowed=True),
    dict(id="requester-listed-but-no-self", clicker="U1", approvers={"U1"}, groups=(), self_ok=False, allowed=False),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_may_decide(case):
    decision = may_decide(
        requester="U1",
        clicker=case["clicker"],
        allow_self_approval=case["self_ok"],
        approver_users=case["approvers"],
        approver_group_members=case["groups"],
    )
    assert decision.allowed is case["allowed"]
    assert decision.allowed or decision.reason
