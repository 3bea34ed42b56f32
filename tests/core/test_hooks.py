from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import HookError
from core.hook_events import Approve, Deny, HookEvent, HookUser, Ignore
from core.hook_loading import HookLoadError, HookResultError, HookTimeout
from core.hooks import load_hooks
from core.models import Subject, Target
from core.secrets import Secret, SecretRegistry


def write(tmp_path: Path, source: str, name: str = "hooks.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def make_event(**overrides) -> HookEvent:
    values = dict(
        request_id="req-1",
        flow="db_access",
        target=Target("prod_admin", "Prod Admin", {"database": "prod", "tags": ["a", "b"], "nested": {"k": "v"}}),
        user=Subject("U1", "ann@example.com", name="Ann"),
        fields={"reason": "incident 42", "duration": "1h"},
        integrations={},
    )
    values.update(overrides)
    return HookEvent(**values)


# ── loading ───────────────────────────────────────────────────────────────────────────────────────


def test_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(HookLoadError) as caught:
        load_hooks(tmp_path / "nope.py")
    assert "nope.py" in str(caught.value) and "cannot read" in str(caught.value)


def test_syntax_error_reports_file_and_line(tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    return None\n\ndef broken(:\n    pass\n")
    with pytest.raises(HookLoadError) as caught:
        load_hooks(path)
    assert caught.value.line == 4
    assert f"{path}:4: syntax error" in str(caught.value)


def test_exception_at_import_time_reports_its_line(tmp_path):
    path = write(tmp_path, "import os\n\nTEAM = os.environ['JITBOT_SURELY_UNSET_VARIABLE']\n")
    with pytest.raises(HookLoadError) as caught:
        load_hooks(path)
    assert caught.value.line == 3
    assert "KeyError at import time" in str(caught.value)
    assert not [
        m
        for m in sys.modules
        if m.startswith("_jitbot_hooks_hooks_") and sys.modules[m].__file__ == str(path.resolve())
    ]


def test_two_loads_of_one_file_are_separate_and_never_shadow_real_modules(tmp_path):
    path = write(tmp_path, "CALLS = []\ndef on_request(evt):\n    CALLS.append(1)\n", name="json.py")
    first, second = load_hooks(path), load_hooks(path)
    assert first.module is not second.module
    assert first.module.__name__ != second.module.__name__
    assert first.module.__name__.startswith("_jitbot_hooks_json_")
    import json

    assert sys.modules["json"] is json and hasattr(json, "dumps")


def test_dataclasses_work_inside_a_hooks_file(tmp_path):
    path = write(
        tmp_path,
        """
        from __future__ import annotations
        from dataclasses import dataclass

        @dataclass
        class Rule:
            team: str

        RULE = Rule("secops")

        def get_approval_channel(evt):
            return "C0" + RULE.team.upper()
    """,
    )
    hooks = load_hooks(path)
    assert hooks.has("get_approval_channel") and not hooks.has("on_request")
    assert hooks.defined_hooks == {"get_approval_channel"}


# ── calling ───────────────────────────────────────────────────────────────────────────────────────


async def test_sync_hook_runs_in_a_process_of_its_own(load, tmp_path):
    path = write(
        tmp_path,
        """
        import os
        def get_approvers(evt):
            return ["U" + str(os.getpid()), "U2"]
    """,
    )
    hooks = load(path)
    approvers = await hooks.call("get_approvers", make_event())
    assert approvers[0] != f"U{os.getpid()}" and approvers[1] == "U2"
    assert approvers[0] == f"U{next(iter(hooks.process_ids))}"


async def test_async_hook_is_awaited(load, tmp_path):
    path = write(
        tmp_path,
        """
        import asyncio
        async def get_approval_channel(evt):
            await asyncio.sleep(0)
            return "C0" + evt.target.settings["database"].upper()
    """,
    )
    assert await load(path).call("get_approval_channel", make_event()) == "C0PROD"


async def test_async_hook_that_never_finishes_times_out(load, tmp_path):
    path = write(
        tmp_path,
        """
        import asyncio
        async def on_request(evt):
            await asyncio.Event().wait()
    """,
    )
    with pytest.raises(HookTimeout) as caught:
        await load(path).call("on_request", make_event(), timeout=0.2)
    assert str(caught.value).endswith("on_request: timed out after 0.2s")
    assert isinstance(caught.value, HookError)


async def test_blocking_sync_hook_times_out_without_freezing_the_loop(load, tmp_path):
    path = write(
        tmp_path,
        """
        import threading
        GATE = threading.Event()
        def on_approve(evt):
            GATE.wait()
    """,
    )
    hooks = load(path)
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(HookTimeout, match="timed out after 0.2s"):
            await hooks.call("on_approve", make_event(), timeout=0.2)
    finally:
        ticker.cancel()
    assert ticks >= 5, "the event loop kept running while the hook blocked"


async def test_module_default_timeout_applies(load, tmp_path):
    path = write(tmp_path, "import asyncio\nasync def after_grant(evt):\n    await asyncio.Event().wait()\n")
    with pytest.raises(HookTimeout, match="after 0.2s"):
        await load(path, timeout=0.2).call("after_grant", make_event())


@pytest.mark.parametrize("is_async", [False, True])
async def test_exception_names_type_text_and_line_in_the_hooks_file(load, tmp_path, is_async):
    path = write(
        tmp_path,
        f"""
        def _lookup(settings):
            return settings["missing_key"]

        {"async " if is_async else ""}def on_request(evt):
            return _lookup(evt.target.settings)
    """,
    )
    with pytest.raises(HookError) as caught:
        await load(path).call("on_request", make_event())
    error = caught.value
    assert error.hook == "on_request" and error.path == str(path.resolve())
    assert "KeyError: 'missing_key'" in str(error)
    assert "(at hooks.py:3)" in str(error)
    assert isinstance(error.__cause__, KeyError)


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_hook_timeout_error_is_not_mistaken_for_our_time_limit(load, tmp_path, is_async):
    path = write(
        tmp_path, f"{'async ' if is_async else ''}def on_request(evt):\n    raise TimeoutError('upstream slow')\n"
    )
    with pytest.raises(HookError) as caught:
        await load(path).call("on_request", make_event(), timeout=5)
    assert not isinstance(caught.value, HookTimeout)
    assert "TimeoutError: upstream slow (at hooks.py:2)" in str(caught.value)


async def test_sys_exit_in_a_hook_is_a_hook_error_not_a_shutdown(load, tmp_path):
    path = write(tmp_path, "import sys\ndef after_revoke(evt):\n    sys.exit(3)\n")
    with pytest.raises(HookError, match="SystemExit: 3"):
        await load(path).call("after_revoke", make_event())


async def test_secret_values_are_scrubbed_from_hook_errors(load, tmp_path):
    token = Secret("hook-secret-value-123")
    secrets = SecretRegistry()
    secrets.register(token.reveal())
    path = write(tmp_path, f"def on_request(evt):\n    raise ValueError('token {token.reveal()} rejected')\n")
    with pytest.raises(HookError) as caught:
        await load(path, secrets=secrets).call("on_request", make_event())
    assert "hook-secret-value-123" not in str(caught.value) and "token *** rejected" in str(caught.value)


async def test_calling_an_undefined_hook_is_an_error(load, tmp_path):
    hooks = load(write(tmp_path, "def on_request(evt):\n    pass\n"))
    with pytest.raises(HookError, match="get_approvers: is not defined"):
        await hooks.call("get_approvers", make_event())


@pytest.mark.parametrize(
    ("hook", "body", "expected"),
    [
        ("get_approvers", "return ['U1', 'U2', 'U1']", ["U1", "U2"]),
        ("get_approvers", "return ('U3',)", ["U3"]),
        ("get_approvers", "return None", None),
        ("get_approval_channel", "return ' C0SEC '", "C0SEC"),
        ("get_approval_channel", "return None", None),
        ("after_grant", "return 'whatever'", None),
        ("revoke", "return {'x': 1}", None),
        ("grant", "return {'grant_id': 42, 'note': None}", {"grant_id": "42", "note": ""}),
        ("grant", "return None", {}),
    ],
)
async def test_valid_results_are_normalised(load, tmp_path, hook, body, expected):
    path = write(tmp_path, f"def {hook}(evt):\n    {body}\n")
    assert await load(path).call(hook, make_event()) == expected


@pytest.mark.parametrize(
    ("hook", "body", "complaint"),
    [
        ("get_approvers", "return 'U1'", "list of Slack user IDs"),
        ("get_approvers", "return [1, 2]", "list of Slack user IDs"),
        ("get_approvers", "return []", "non-empty list"),
        ("get_approval_channel", "return ['C1']", "a channel ID"),
        ("get_approval_channel", "return ''", "a channel ID"),
        ("on_request", "return True", "evt.approve"),
        ("on_request", "return evt.ignore('no')", "evt.approve"),
        ("on_approve", "return evt.approve('ok')", "evt.ignore"),
        ("on_deny", "return False", "evt.ignore"),
        ("grant", "return ['g-1']", "dict"),
    ],
)
async def test_invalid_results_are_hook_errors(load, tmp_path, hook, body, complaint):
    path = write(tmp_path, f"def {hook}(evt):\n    {body}\n")
    with pytest.raises(HookResultError) as caught:
        await load(path).call(hook, make_event())
    assert complaint in str(caught.value) and f"{hook}: must return" in str(caught.value)


# ── decisions ─────────────────────────────────────────────────────────────────────────────────────


async def test_returned_approve_is_the_decision(load, tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    return evt.approve('on call')\n")
    assert await load(path).call("on_request", make_event()) == Approve("on call")


async def test_recorded_decision_counts_without_return(load, tmp_path):
    path = write(tmp_path, "async def on_request(evt):\n    evt.deny('outside business hours')\n")
    decision = await load(path).call("on_request", make_event())
    assert decision == Deny("outside business hours") and decision.kind == "deny"


async def test_returned_decision_wins_over_a_recorded_one(load, tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    evt.approve('maybe')\n    return evt.deny('no after all')\n")
    assert await load(path).call("on_request", make_event()) == Deny("no after all")


async def test_no_decision_is_none(load, tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    pass\n")
    assert await load(path).call("on_request", make_event()) is None


async def test_ignore_refuses_a_click(load, tmp_path):
    path = write(
        tmp_path,
        """
        def on_approve(evt):
            if evt.actor.slack_id != "UBOSS":
                return evt.ignore("only the boss approves")
    """,
    )
    hooks = load(path)
    refused = await hooks.call("on_approve", make_event(actor=HookUser("U9")))
    assert refused == Ignore("only the boss approves") and refused.reason == "only the boss approves"
    assert await hooks.call("on_approve", make_event(actor=HookUser("UBOSS"))) is None


async def test_a_reused_event_does_not_carry_an_old_decision_into_the_next_hook(load, tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    evt.approve('fast')\ndef on_approve(evt):\n    pass\n")
    hooks, evt = load(path), make_event()
    assert await hooks.call("on_request", evt) == Approve("fast")
    assert await hooks.call("on_approve", evt) is None


# ── the event ─────────────────────────────────────────────────────────────────────────────────────


def test_event_exposes_the_request_read_only():
    evt = make_event(actor=Subject("U2", "bob@example.com"), expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert (evt.request_id, evt.flow, evt.target.name, evt.target.label) == (
        "req-1",
        "db_access",
        "prod_admin",
        "Prod Admin",
    )
    assert evt.user == HookUser("U1", "ann@example.com", "Ann") and evt.actor.email == "bob@example.com"
    assert evt.fields["reason"] == "incident 42" and evt.expires_at.year == 2030
    with pytest.raises(AttributeError):
        evt.flow = "other"
    with pytest.raises(AttributeError):
        evt.user.email = "mallory@example.com"
    with pytest.raises(TypeError):
        evt.fields["reason"] = "changed"
    with pytest.raises(TypeError):
        evt.target.settings["database"] = "staging"
    with pytest.raises(TypeError):
        evt.target.settings["nested"]["k"] = "changed"
    assert evt.target.settings["tags"] == ("a", "b")


def test_event_copies_so_later_changes_to_the_source_do_not_leak_in():
    fields = {"reason": "first"}
    evt = make_event(fields=fields)
    fields["reason"] = "second"
    assert evt.fields["reason"] == "first"


def test_integrations_by_attribute_and_a_clear_error_for_unknown_names():
    pagerduty = object()
    evt = make_event(integrations={"pagerduty": pagerduty, "okta_main": object()})
    assert evt.integrations.pagerduty is pagerduty and evt.integrations["pagerduty"] is pagerduty
    assert "okta_main" in evt.integrations
    with pytest.raises(AttributeError, match=r"no integration named 'pagerdutty' \(known: okta_main, pagerduty\)"):
        _ = evt.integrations.pagerdutty
    with pytest.raises(AttributeError):
        evt.integrations.pagerduty = object()
