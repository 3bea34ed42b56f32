from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.hook_events import HookEvent, HookUser, Ignore
from core.hook_loading import DEFAULT_HOOK_TIMEOUT
from core.hooks import load_hooks
from core.hooks_lint import KNOWN_HOOKS, check_hooks
from core.models import Subject, Target

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "hooks"


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "hooks.py"
    path.write_text(textwrap.dedent(source))
    return path


def make_event(**overrides) -> HookEvent:
    values = dict(
        request_id="req-1",
        flow="prod_access",
        target=Target("prod_admin", "Prod Admin"),
        user=Subject("U1", "ann@example.com"),
        fields={"reason": "incident"},
    )
    values.update(overrides)
    return HookEvent(**values)


# ── linting ───────────────────────────────────────────────────────────────────────────────────────


def test_check_finds_misspelt_hooks_with_their_lines(tmp_path):
    path = write(
        tmp_path,
        """
        import asyncio


        async def on_requst(evt):
            pass


        def get_approver(evt):
            return []


        def On_Deny(evt):
            pass


        def on_submit(evt):
            pass
    """,
    )
    issues = check_hooks(path)
    assert [(i.line, i.message) for i in issues] == [
        (5, "on_requst is not a hook jitbot calls: did you mean on_request?"),
        (9, "get_approver is not a hook jitbot calls: did you mean get_approvers?"),
        (13, "On_Deny is not a hook (names are case-sensitive): did you mean on_deny?"),
        (17, f"on_submit looks like a hook but jitbot never calls it (hooks: {', '.join(sorted(KNOWN_HOOKS))})"),
    ]


def test_check_accepts_helpers_and_unrelated_names(tmp_path):
    path = write(
        tmp_path,
        """
        def _on_requst(evt):
            pass

        def is_production(target):
            return target.name.startswith("prod_")

        def grant_database_role(user, role):
            pass

        async def on_request(evt):
            return None
    """,
    )
    assert check_hooks(path) == []


def test_check_reports_wrong_arity(tmp_path):
    path = write(
        tmp_path,
        """
        def on_request():
            pass

        async def get_approvers(evt, flow):
            pass

        def on_deny(evt, *, strict):
            pass

        def after_grant(evt, verbose=False):
            pass

        def after_revoke(*args):
            pass
    """,
    )
    assert [(i.line, i.message) for i in check_hooks(path)] == [
        (2, "on_request must take exactly one argument (evt), it takes no arguments"),
        (5, "get_approvers must take exactly one argument (evt), it takes (evt, flow)"),
        (8, "on_deny must take exactly one argument (evt), it takes (evt, strict)"),
    ]


def test_check_flags_a_sync_hook_that_uses_an_integration(tmp_path):
    path = write(
        tmp_path,
        """
        def on_request(evt):
            if evt.integrations.pagerduty.is_on_call(evt.user):
                return evt.approve("on call")

        async def on_approve(evt):
            await evt.integrations.slack.is_in_usergroup(evt.actor, "S1")
    """,
    )
    [issue] = check_hooks(path)
    assert issue.line == 3 and issue.message.startswith("on_request is a plain def, so it runs in a hook process")
    assert "make this hook `async def`" in issue.message


def test_check_reports_syntax_errors_with_line(tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    return evt.approve('x'\n\ndef on_deny(evt):\n    pass\n")
    [issue] = check_hooks(path)
    assert issue.line in (2, 4) and issue.message.startswith("syntax error")


def test_check_never_runs_the_file(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, f"open({str(marker)!r}, 'w').close()\ndef on_requst(evt):\n    pass\n")
    assert [i.line for i in check_hooks(path)] == [2]
    assert not marker.exists()


def test_check_extra_names_and_required_hooks(tmp_path):
    path = write(tmp_path, "def grant(evt):\n    pass\n\ndef grant(evt):\n    pass\n\ndef escalate(evt):\n    pass\n")
    issues = check_hooks(path, allowed=KNOWN_HOOKS | {"escalate"}, required=("grant", "revoke"))
    assert [(i.line, i.message) for i in issues] == [
        (None, "revoke(evt) is required here but not defined"),
        (4, "grant is defined again (first on line 1); the last one wins"),
    ]


def test_check_counts_imported_hooks_as_defined(tmp_path):
    path = write(tmp_path, "from shared_access import grant, revoke as revoke\n")
    assert check_hooks(path, required=("grant", "revoke")) == []


def test_check_missing_file(tmp_path):
    [issue] = check_hooks(tmp_path / "absent.py")
    assert issue.line is None and "cannot read hooks file" in issue.message


# ── the shipped examples ──────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "name", ["oncall_fasttrack.py", "route_production.py", "restrict_approvers.py", "deploy_gate.py"]
)
def test_examples_lint_clean_and_load(name):
    assert check_hooks(EXAMPLES / name) == []
    assert load_hooks(EXAMPLES / name).defined_hooks


def test_custom_grant_example_lints_clean_and_gives_up_on_http_before_its_hook_limit():
    assert check_hooks(EXAMPLES / "custom_grant.py", required=("grant", "revoke")) == []
    client = load_hooks(EXAMPLES / "custom_grant.py").module._client()
    try:
        phases = client.timeout
        # connect, then read the answer: both must end before the 5 s limit kills the hook.
        assert phases.connect + phases.read < DEFAULT_HOOK_TIMEOUT
    finally:
        client.close()


async def test_route_production_example():
    hooks = load_hooks(EXAMPLES / "route_production.py")
    prod = make_event(target=Target("db_rw", "DB", {"environment": "production"}))
    legacy = make_event(target=Target("prod_admin", "Prod Admin", {}))
    staging = make_event(target=Target("staging_admin", "Staging", {"environment": "staging"}))
    try:
        assert await hooks.call("get_approval_channel", prod) == "C0PRODAPPROVALS"
        assert await hooks.call("get_approval_channel", legacy) == "C0PRODAPPROVALS"
        assert await hooks.call("get_approval_channel", staging) is None
    finally:
        await hooks.aclose()


class UsergroupDirectory:
    """Stands in for the `slack` integration the bot provides: the same coroutine, fixed memberships."""

    def __init__(self, members: dict[str, set[str]]) -> None:
        self.members = members
        self.asked: list[tuple[str, str]] = []

    async def is_in_usergroup(self, user, usergroup_id: str) -> bool:
        self.asked.append((user.slack_id, usergroup_id))
        return user.slack_id in self.members.get(usergroup_id, set())


async def test_restrict_approvers_example():
    hooks = load_hooks(EXAMPLES / "restrict_approvers.py")
    slack = UsergroupDirectory({"S0SECOPS": {"USEC"}})
    outsider = await hooks.call("on_approve", make_event(actor=HookUser("UDEV"), integrations={"slack": slack}))
    insider = await hooks.call("on_approve", make_event(actor=HookUser("USEC"), integrations={"slack": slack}))
    assert isinstance(outsider, Ignore) and "@secops" in outsider.message
    assert insider is None
    assert slack.asked == [("UDEV", "S0SECOPS"), ("USEC", "S0SECOPS")]
