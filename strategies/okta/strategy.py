"""The `okta` strategy: access is membership of an Okta group; grant adds the user, revoke removes it."""

from __future__ import annotations

from typing import Annotated, Literal, Mapping

import structlog
from pydantic import Field

from core.errors import SubjectNotFound, TargetNotFound
from core.schema import StrategyConfig, TargetConfig
from strategies.base import GrantContext, GrantResult, IntegrationStrategy, ValidationIssue
from strategies.okta.client import INACTIVE_USER_STATUSES, OktaIntegration, OktaUser

log = structlog.get_logger(__name__)


class OktaTarget(TargetConfig):
    """An Okta group to grant: `group_id` (00g…)."""

    group_id: Annotated[str, Field(min_length=1)]


class OktaStrategyConfig(StrategyConfig):
    """`strategy:` block of type okta."""

    type: Literal["okta"]
    integration: str
    targets: Annotated[list[OktaTarget], Field(min_length=1)]


class OktaStrategy(IntegrationStrategy):
    """Grants by adding the person's Okta user to the target's group; revokes by removing it."""

    system = "Okta"
    config_model = OktaStrategyConfig
    integration_type = "okta"
    integration_class = OktaIntegration

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Check the person has an active Okta user and the group can be changed."""
        identity = ctx.subject.identity
        if not identity:
            return [ValidationIssue(
                "jitbot cannot find your Okta account: your Slack profile has no email "
                "and no Okta login is stored for you.",
                detail=f"slack user {ctx.subject.slack_id} has no identity for {self.identity_key}",
            )]
        issues: list[ValidationIssue] = []
        try:
            user = await self.integration.find_user(identity)
        except SubjectNotFound as exc:
            return [ValidationIssue(exc.user_message, detail=str(exc))]
        if user is None:
            issues.append(ValidationIssue(
                f"No Okta user matches {identity}; ask an admin to store your Okta login for jitbot.",
                detail=f"Okta integration {self.identity_key}: no user with login or email {identity}",
            ))
        elif user.status in INACTIVE_USER_STATUSES:
            issues.append(ValidationIssue(
                f"Your Okta account {user.login} is {user.status.lower()}, so an Okta group would not give you access.",
                detail=f"Okta user {user.id} has status {user.status}",
            ))
        try:
            await self.integration.require_manageable_group(self._group_id(ctx))
        except TargetNotFound as exc:
            issues.append(ValidationIssue(exc.user_message, detail=str(exc)))
        return issues

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Add the user to the group (idempotent); the state keeps the Okta user id for revoke."""
        user = await self._find_user(ctx)
        if user is None:
            raise SubjectNotFound(
                f"no Okta user matches {ctx.subject.identity!r} (slack user {ctx.subject.slack_id})",
                user_message="No Okta account matches you; ask an admin to store your Okta login for jitbot.",
            )
        if user.status in INACTIVE_USER_STATUSES:
            raise SubjectNotFound(
                f"Okta user {user.id} is {user.status}", user_message=f"Your Okta account is {user.status.lower()}."
            )
        group_id = self._group_id(ctx)
        await self.integration.require_manageable_group(group_id)
        await self.integration.add_user_to_group(group_id, user.id)
        log.info(
            "okta_group_granted",
            integration=self.identity_key, group_id=group_id, okta_user_id=user.id, request_id=ctx.request_id,
        )
        return GrantResult(state={"okta_user_id": user.id, "group_id": group_id})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Remove the user from the group; already gone is success."""
        group_id = state.get("group_id") or self._group_id(ctx)
        user_id = state.get("okta_user_id")
        if not user_id:
            # A grant in doubt (crash before its state was saved) has no user id: look the person up again.
            user = await self._find_user(ctx)
            if user is None:
                log.warning(
                    "okta_revoke_without_user",
                    integration=self.identity_key, group_id=group_id, request_id=ctx.request_id,
                )
                return
            user_id = user.id
        await self.integration.remove_user_from_group(group_id, user_id)
        log.info(
            "okta_group_revoked",
            integration=self.identity_key, group_id=group_id, okta_user_id=user_id, request_id=ctx.request_id,
        )

    async def is_active(self, ctx: GrantContext) -> bool:
        """Whether the person is in the target's group in Okta right now."""
        user = await self._find_user(ctx)
        return user is not None and await self.integration.is_member(self._group_id(ctx), user.id)

    async def _find_user(self, ctx: GrantContext) -> OktaUser | None:
        """The person's Okta user, or None when there is no identity or no such user."""
        if not ctx.subject.identity:
            return None
        return await self.integration.find_user(ctx.subject.identity)

    def _group_id(self, ctx: GrantContext) -> str:
        group_id = ctx.target.settings.get("group_id")
        if not group_id:
            group_id = next((t.group_id for t in self.config.targets if t.name == ctx.target.name), None)
        if not group_id:
            raise TargetNotFound(f"target {ctx.target.name!r} has no group_id")
        return group_id
