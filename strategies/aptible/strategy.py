"""The `aptible` strategy: access is membership of an Aptible role; grant adds it, revoke deletes it.

Revoking a user's last role in an organization also removes them from the organization (Aptible
derives organization membership from role memberships). jitbot still revokes - access must end -
but logs `aptible_revoked_last_role` so an admin can restore a baseline role. Give every user a
baseline role outside jitbot and this never happens.
"""

from __future__ import annotations

from typing import Annotated, Literal, Mapping

import structlog
from pydantic import Field

from core.errors import SubjectNotFound, TargetNotFound
from core.schema import StrategyConfig, TargetConfig
from strategies.aptible.client import AptibleIntegration, AptibleUser
from strategies.base import GrantContext, GrantResult, IntegrationStrategy, ValidationIssue

log = structlog.get_logger(__name__)


class AptibleTarget(TargetConfig):
    """An Aptible role to grant: `role_id`."""

    role_id: Annotated[str, Field(min_length=1)]


class AptibleStrategyConfig(StrategyConfig):
    """`strategy:` block of type aptible."""

    type: Literal["aptible"]
    integration: str
    targets: Annotated[list[AptibleTarget], Field(min_length=1)]


class AptibleStrategy(IntegrationStrategy):
    """Grants by adding the person to the target's Aptible role; revokes by deleting that membership."""

    system = "Aptible"
    config_model = AptibleStrategyConfig
    integration_type = "aptible"
    integration_class = AptibleIntegration

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Check the person is a user of the organization and the role belongs to it."""
        issues: list[ValidationIssue] = []
        if not ctx.subject.identity:
            issues.append(ValidationIssue(
                "jitbot cannot find your Aptible user: your Slack profile has no email "
                "and no Aptible identity is stored for you.",
                detail=f"slack user {ctx.subject.slack_id} has no identity for {self.identity_key}",
            ))
        elif await self._find_user(ctx) is None:
            issues.append(ValidationIssue(
                f"No Aptible user with {ctx.subject.identity} is in the organization; "
                "ask an Aptible admin to invite you.",
                detail=f"Aptible organization {self.integration.config.organization_id} "
                f"has no user {ctx.subject.identity}",
            ))
        try:
            await self.integration.get_role(self._role_id(ctx))
        except TargetNotFound as exc:
            issues.append(ValidationIssue(exc.user_message, detail=str(exc)))
        return issues

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Add the user to the role unless they already hold it; the state keeps user and membership ids."""
        user = await self._find_user(ctx)
        if user is None:
            raise SubjectNotFound(
                f"no Aptible user {ctx.subject.identity!r} in organization {self.integration.config.organization_id}",
                user_message="No Aptible user in the organization matches you.",
            )
        role = await self.integration.get_role(self._role_id(ctx))
        existing = [m for m in await self.integration.role_memberships(role.id) if m.user_id == user.id]
        membership = existing[0] if existing else await self.integration.add_membership(role.id, user.href)
        log.info("aptible_role_granted", integration=self.identity_key, role_id=role.id, aptible_user_id=user.id,
                 already_held=bool(existing), request_id=ctx.request_id)
        return GrantResult(state={"aptible_user_id": user.id, "role_id": role.id, "membership_id": membership.id})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Delete the user's membership of the role; none left is success. See the module note on last roles."""
        role_id = state.get("role_id") or self._role_id(ctx)
        user_id = state.get("aptible_user_id")
        if not user_id:
            # A grant in doubt (crash before its state was saved) has no user id: look the person up again.
            user = await self._find_user(ctx)
            if user is None:
                log.warning("aptible_revoke_without_user", integration=self.identity_key, role_id=role_id,
                            request_id=ctx.request_id)
                return
            user_id = user.id
        try:
            mine = [m for m in await self.integration.role_memberships(role_id) if m.user_id == user_id]
        except TargetNotFound:
            log.info("aptible_role_already_gone", integration=self.identity_key, role_id=role_id)
            return
        if not mine:
            return
        if not any(role.id != role_id for role in await self.integration.user_roles(user_id)):
            log.warning(
                "aptible_revoked_last_role", integration=self.identity_key, role_id=role_id, aptible_user_id=user_id,
                request_id=ctx.request_id,
                note="this was the user's only role, so Aptible removes them from the organization; "
                     "give them a baseline role to keep them in it",
            )
        for membership in mine:
            await self.integration.delete_membership(membership.id)
        log.info("aptible_role_revoked", integration=self.identity_key, role_id=role_id, aptible_user_id=user_id,
                 request_id=ctx.request_id)

    async def is_active(self, ctx: GrantContext) -> bool:
        """Whether the person holds the target's role in Aptible right now."""
        user = await self._find_user(ctx)
        if user is None:
            return False
        return any(m.user_id == user.id for m in await self.integration.role_memberships(self._role_id(ctx)))

    async def _find_user(self, ctx: GrantContext) -> AptibleUser | None:
        """The person's Aptible user, or None when there is no identity or no such user."""
        if not ctx.subject.identity:
            return None
        return await self.integration.find_user_by_email(ctx.subject.identity)

    def _role_id(self, ctx: GrantContext) -> str:
        role_id = ctx.target.settings.get("role_id")
        if not role_id:
            role_id = next((t.role_id for t in self.config.targets if t.name == ctx.target.name), None)
        if not role_id:
            raise TargetNotFound(f"target {ctx.target.name!r} has no role_id")
        return role_id
