"""The `aptible` strategy: access is membership of an Aptible role; grant adds it, revoke deletes it.

Revoking a user's last role in an organization also removes them from the organization (Aptible
derives organization membership from role memberships). jitbot still revokes - access must end -
but logs `aptible_revoked_last_role` so an admin can restore a baseline role. Give every user a
baseline role outside jitbot and this never happens.
"""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from pydantic import Field

from core.errors import SubjectNotFound, TargetNotFound
from core.models import Target
from core.schema import StrategyConfig, TargetConfig
from core.strategy import GrantContext, GrantResult, Holder
from strategies.aptible.client import AptibleIntegration, AptibleUser
from strategies.membership import MembershipStrategy

log = structlog.get_logger(__name__)


class AptibleTarget(TargetConfig):
    """An Aptible role to grant: `role_id`."""

    role_id: Annotated[str, Field(min_length=1)]


class AptibleStrategyConfig(StrategyConfig):
    """`strategy:` block of type aptible."""

    type: Literal["aptible"]
    integration: str
    targets: Annotated[list[AptibleTarget], Field(min_length=1)]


class AptibleStrategy(MembershipStrategy):
    """Grants by adding the person to the target's Aptible role; revokes by deleting that membership."""

    system = "Aptible"
    identity_noun = "an Aptible user"
    config_model = AptibleStrategyConfig
    integration_type = "aptible"
    integration_class = AptibleIntegration
    target_key = "role_id"
    user_key = "aptible_user_id"
    config: AptibleStrategyConfig
    integration: AptibleIntegration

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Add the user to the role unless they already hold it; the state keeps user and membership ids."""
        user = await self._require_user(ctx)
        role = await self.integration.get_role(self._target_id(ctx))
        existing = [m for m in await self.integration.role_memberships(role.id) if m.user_id == user.id]
        membership = existing[0] if existing else await self.integration.add_membership(role.id, user.href)
        log.info(
            "aptible_role_granted",
            integration=self.identity_key,
            role_id=role.id,
            aptible_user_id=user.id,
            already_held=bool(existing),
            request_id=ctx.request_id,
        )
        return GrantResult(state={"aptible_user_id": user.id, "role_id": role.id, "membership_id": membership.id})

    def access_key(self, target: Target) -> str:
        """The role, in this integration's organization."""
        return f"aptible:{self.config.integration}:{target.settings.get('role_id', '')}"

    async def holders(self, target: Target) -> list[Holder]:
        """Every user with a membership of the target's role, named by email; TargetNotFound if it is gone."""
        role = await self.integration.get_role(str(target.settings.get("role_id") or ""))
        memberships = await self.integration.role_memberships(role.id)
        emails = {u.id: u.email for u in await self.integration.organization_users()} if memberships else {}
        users = dict.fromkeys(m.user_id for m in memberships)  # one holder per user, in listing order
        return [Holder(id=user_id, name=emails.get(user_id) or user_id) for user_id in users]

    async def remove_holder(self, target: Target, holder: Holder) -> None:
        """Delete the user's memberships of the target's role; none left is done."""
        role_id = str(target.settings.get("role_id") or "")
        for membership in await self.integration.role_memberships(role_id):
            if membership.user_id == holder.id:
                await self.integration.delete_membership(membership.id)
        log.info("aptible_holder_removed", integration=self.identity_key, role_id=role_id, aptible_user_id=holder.id)

    async def _remove(self, ctx: GrantContext, target_id: str, user_id: str) -> None:
        """Delete the user's memberships of the role; none left is success. See the module note on last roles."""
        try:
            mine = [m for m in await self.integration.role_memberships(target_id) if m.user_id == user_id]
        except TargetNotFound:
            log.info("aptible_role_already_gone", integration=self.identity_key, role_id=target_id)
            return
        if not mine:
            return
        if not any(role.id != target_id for role in await self.integration.user_roles(user_id)):
            log.warning(
                "aptible_revoked_last_role",
                integration=self.identity_key,
                role_id=target_id,
                aptible_user_id=user_id,
                request_id=ctx.request_id,
                note="this was the user's only role, so Aptible removes them from the organization; "
                "give them a baseline role to keep them in it",
            )
        for membership in mine:
            await self.integration.delete_membership(membership.id)
        log.info(
            "aptible_role_revoked",
            integration=self.identity_key,
            role_id=target_id,
            aptible_user_id=user_id,
            request_id=ctx.request_id,
        )

    async def _holds(self, target_id: str, user_id: str) -> bool:
        return any(m.user_id == user_id for m in await self.integration.role_memberships(target_id))

    async def _lookup_user(self, identity: str) -> AptibleUser | None:
        return await self.integration.find_user_by_email(identity)

    def _no_user(self, identity: str) -> SubjectNotFound:
        return SubjectNotFound(
            f"Aptible organization {self.integration.config.organization_id} has no user {identity}",
            user_message=f"No Aptible user with {identity} is in the organization; ask an Aptible admin to invite you.",
        )

    async def _check_target(self, target_id: str) -> None:
        await self.integration.get_role(target_id)
