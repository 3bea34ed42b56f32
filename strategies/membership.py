"""What the membership strategies share: access is the person's user being a member of one thing.

The `okta` strategy (a group) and the `aptible` strategy (a role) find the person's user by their
identity, check the target, and record the user's id in the grant state; a revoke without that id
(a grant in doubt after a crash) looks the person up again, and one that finds nobody has nothing
to take back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import structlog

from core.errors import SubjectNotFound, TargetNotFound
from core.strategy import GrantContext, ValidationIssue
from strategies.base import IntegrationStrategy, issue


class MembershipStrategy(IntegrationStrategy):
    """Base of strategies whose access is a membership; a subclass supplies the look-ups and changes.

    `target_key` is the target setting naming the thing (group_id, role_id) and `user_key` the
    grant-state key of the user's id. A subclass implements `grant` and the hooks below.
    """

    target_key: ClassVar[str]
    user_key: ClassVar[str]

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Check that the person has a usable user and that the target exists; every problem is reported."""
        issues: list[ValidationIssue] = []
        if not ctx.subject.identity:
            issues.append(self._no_identity_issue(ctx))
        else:
            try:
                await self._require_user(ctx)
            except SubjectNotFound as exc:
                issues.append(issue(exc))
        try:
            await self._check_target(self._target_id(ctx))
        except TargetNotFound as exc:
            issues.append(issue(exc))
        return issues

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Take the user's membership back; a user or membership already gone is success."""
        target_id = state.get(self.target_key) or self._target_id(ctx)
        user_id = state.get(self.user_key)
        if not user_id:
            # A grant in doubt (crash before its state was saved) has no user id: look the person up again.
            user = await self._find_user(ctx)
            if user is None:
                structlog.get_logger(type(self).__module__).warning(
                    f"{self.config.type}_revoke_without_user",
                    integration=self.identity_key,
                    request_id=ctx.request_id,
                    **{self.target_key: target_id},
                )
                return
            user_id = user.id
        await self._remove(ctx, target_id, user_id)

    async def is_active(self, ctx: GrantContext) -> bool:
        """Whether the person holds the target's membership in the target system right now."""
        user = await self._find_user(ctx)
        return user is not None and await self._holds(self._target_id(ctx), user.id)

    async def _require_user(self, ctx: GrantContext) -> Any:
        """The person's user, or SubjectNotFound saying why there is none that can be given access."""
        identity = self._require_identity(ctx)
        user = await self._lookup_user(identity)
        if user is None:
            raise self._no_user(identity)
        self._check_user(user)
        return user

    async def _find_user(self, ctx: GrantContext) -> Any:
        """The person's user, or None when there is no identity or no such user."""
        return await self._lookup_user(ctx.subject.identity) if ctx.subject.identity else None

    def _target_id(self, ctx: GrantContext) -> str:
        return self._setting(ctx, self.target_key)

    # ── what a subclass supplies ──────────────────────────────────────────────────────────────────

    async def _lookup_user(self, identity: str) -> Any:
        """The user (with `.id`) matching `identity`, or None."""
        raise NotImplementedError

    def _no_user(self, identity: str) -> SubjectNotFound:
        """The error for an identity that matches no user."""
        raise NotImplementedError

    def _check_user(self, user: Any) -> None:
        """Raise SubjectNotFound when this user cannot be given access (by default any user can)."""

    async def _check_target(self, target_id: str) -> None:
        """Raise TargetNotFound when the target cannot be granted."""
        raise NotImplementedError

    async def _remove(self, ctx: GrantContext, target_id: str, user_id: str) -> None:
        """Remove the membership (already gone is success)."""
        raise NotImplementedError

    async def _holds(self, target_id: str, user_id: str) -> bool:
        """Whether the user is a member now."""
        raise NotImplementedError
