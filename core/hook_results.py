"""What each hook may return, and how its result is checked (`RESULT_RULES`).

Each rule is (what the hook may return, in words; a check that takes the returned value and the
decision recorded with evt.approve/deny/ignore, and gives the value the engine gets or raises
BadResult). `core.hooks.HookModule` checks every result with these rules and turns BadResult into
HookResultError. They are apart from `core.hooks` because a hook process (`core.hook_worker`)
needs them too: it does not send back results the bot ignores, and `core.hooks` imports the process
modules, so the rules cannot live in either without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.hook_events import Approve, Deny, Ignore


class BadResult(Exception):
    """A check refused `value`: the hook returned (or recorded) something it may not."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _decision(*kinds: type) -> Callable[[Any, Any], Any]:
    def check(result: Any, recorded: Any) -> Any:
        chosen = result if result is not None else recorded
        if chosen is None or isinstance(chosen, kinds):
            return chosen
        raise BadResult(chosen)

    return check


def _approvers(result: Any, recorded: Any) -> list[str] | None:
    if result is None:
        return None
    if isinstance(result, (list, tuple, set, frozenset)) and result and all(isinstance(u, str) and u for u in result):
        return list(dict.fromkeys(result))  # de-duplicated, order kept
    raise BadResult(result)


def _channel(result: Any, recorded: Any) -> str | None:
    if result is None or (isinstance(result, str) and result.strip()):
        return result.strip() if result else None
    raise BadResult(result)


def _grant_state(result: Any, recorded: Any) -> dict[str, str]:
    if result is None:
        return {}
    if isinstance(result, dict) and all(isinstance(key, str) for key in result):
        return {key: "" if value is None else str(value) for key, value in result.items()}
    raise BadResult(result)


def ignored_result(result: Any, recorded: Any) -> None:
    """The rule of hooks whose result the bot ignores (a hook process does not send it back)."""
    return None


RESULT_RULES: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "on_request": ("evt.approve(...), evt.deny(...) or None", _decision(Approve, Deny)),
    "on_approve": ("evt.ignore(...) or None", _decision(Ignore)),
    "on_deny": ("evt.ignore(...) or None", _decision(Ignore)),
    "get_approvers": ("a non-empty list of Slack user IDs (str) or None", _approvers),
    "get_approval_channel": ("a channel ID (str) or None", _channel),
    "grant": ("a dict of str keys (stored as the grant's state) or None", _grant_state),
    "revoke": ("anything (ignored)", ignored_result),
    "after_grant": ("anything (ignored)", ignored_result),
    "after_revoke": ("anything (ignored)", ignored_result),
}
