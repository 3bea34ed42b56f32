"""The one exception tree of jitbot.

    JitError                      base of everything we raise on purpose; `user_message` is safe to show
    ├── ConfigError               the flows file is unreadable or invalid (carries every ConfigIssue)
    ├── SecretResolutionError     a ${env:…}/${file:…}/${aws_secret:…} reference could not be resolved
    ├── StartupError              a token, the database or an integration is unusable at start
    ├── InvalidTransition         a compare-and-set on a request's status lost (already decided, …)
    ├── RequestNotFound           no request with that id
    ├── NotAllowed                a click or submission refused by policy (shown ephemerally)
    ├── InvalidInput              bad input (an extension beyond max_total_duration…); `errors` by field
    ├── HookError                 a policy hook raised, timed out or returned something it should not
    ├── ChatUnavailable           the chat system throttled or failed for now; a later try may succeed
    └── StrategyError             a strategy could not do its job
        ├── SubjectNotFound       the requester has no identity in the target system
        ├── TargetNotFound        the group / role / permission set does not exist
        └── StrategyUnavailable   the target system failed or throttled; `retryable` says if a retry may help

Messages never contain a resolved secret: the values are wrapped in `core.secrets.Secret`, whose
str() is redacted, and the logging pipeline scrubs registered secret values as a second guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config_lines import ConfigIssue


class JitError(Exception):
    """Base of every error jitbot raises on purpose; `user_message` is safe to show a person."""

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message or message


class ConfigError(JitError):
    """The flows file is unreadable or invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue], message: str | None = None) -> None:
        self.issues = list(issues)
        super().__init__(message or "\n".join(str(i) for i in self.issues))


class SecretResolutionError(JitError):
    """A secret reference could not be resolved; the message names the key path, never a value."""


class StartupError(JitError):
    """Something needed to start (a token, the database, an integration) is unusable."""


class InvalidTransition(JitError):
    """A status compare-and-set lost: the request is no longer in the expected state."""

    def __init__(self, request_id: str, current: str, requested: str) -> None:
        self.request_id, self.current, self.requested = request_id, current, requested
        super().__init__(
            f"request {request_id} is {current}, cannot become {requested}",
            user_message=f"This request is already {current}.",
        )


class RequestNotFound(JitError):
    """No request with that id exists."""


class NotAllowed(JitError):
    """A person may not do what they tried; the message says why and is shown to them."""


class InvalidInput(JitError):
    """Input that cannot be acted on; `errors` maps the field it concerns ('duration', …) to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(
            "; ".join(f"{k}: {v}" for k, v in self.errors.items()), user_message=" ".join(self.errors.values())
        )


class HookError(JitError):
    """A policy hook raised, timed out, or returned a value it may not return."""

    line: int | None = None  # the line in the hooks file, when the failure points at one

    def __init__(self, path: str, hook: str, message: str) -> None:
        self.path, self.hook = path, hook
        super().__init__(f"{path}: {hook}: {message}")


class ChatUnavailable(JitError):
    """The chat system (Slack) throttled the call or failed for now; the same call may succeed later.
    Raised by the notifier so core can retry a message edit without knowing Slack's errors."""


class StrategyError(JitError):
    """A strategy could not grant, revoke or validate; `retryable` says whether trying again may help.

    `grant_state`, when a failed grant may still land (an AWS SSO assignment left in progress), is
    what the clean-up revoke needs to find and remove it; the engine stores it with the failure.
    """

    retryable = False
    grant_state: dict[str, str] | None = None


class SubjectNotFound(StrategyError):
    """The requester cannot be matched to a user of the target system."""


class TargetNotFound(StrategyError):
    """The group, role or permission set named by the target does not exist."""


class StrategyUnavailable(StrategyError):
    """The target system failed, timed out or throttled us; usually worth retrying."""

    def __init__(self, message: str, *, retryable: bool = True, user_message: str | None = None) -> None:
        super().__init__(message, user_message=user_message)
        self.retryable = retryable
