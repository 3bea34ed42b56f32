"""What the engine needs from the outside world, as protocols; handlers/ implements them for Slack."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.models import AccessRequest


@dataclass(frozen=True)
class UserInfo:
    """A chat user as the directory knows them."""

    slack_id: str
    email: str | None = None
    name: str | None = None
    is_bot: bool = False
    deleted: bool = False
    guest: bool = False  # a guest account, or someone from another organisation (shared channels)


class RequesterNotice(StrEnum):
    """The moments the requester hears about their request."""

    SUBMITTED = "submitted"
    GRANTED = "granted"
    DENIED = "denied"
    FAILED = "failed"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_POSTED = "not_posted"
    SUPERSEDED = "superseded"  # this grant ended, but another live grant keeps the same access


class Directory(Protocol):
    """Looks people and groups up in the chat workspace.

    `fresh=True` bypasses any cache: decisions read the present, a cache may only speed up display.
    """

    async def lookup_user(self, slack_id: str, *, fresh: bool = False) -> UserInfo: ...

    async def usergroup_members(self, usergroup_id: str, *, fresh: bool = False) -> frozenset[str]: ...


class Notifier(Protocol):
    """Shows requests to people: the approval-channel message, DMs, and operator alerts."""

    async def publish(self, request: AccessRequest) -> str:
        """Post the request's channel message, or update it in place when it has one; return its ts."""
        ...

    async def notify_requester(self, request: AccessRequest, notice: RequesterNotice, detail: str | None = None) -> None:
        """DM the requester about `notice`; `detail` is extra text such as a strategy's instructions."""
        ...

    async def alert(self, text: str, request: AccessRequest | None = None) -> None:
        """Tell the operators; `text` is plain text (the notifier escapes it), never markup."""
        ...
