"""The `okta` strategy: access is membership of an Okta group; grant adds the user, revoke removes it."""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from pydantic import Field

from core.errors import SubjectNotFound
from core.models import Target
from core.schema import StrategyConfig, TargetConfig
from core.strategy import GrantContext, GrantResult, Holder
from strategies.membership import MembershipStrategy
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


class OktaStrategy(MembershipStrategy):
    """Grants by adding the person's Okta user to the target's group; revokes by removing it."""

    system = "Okta"
    identity_noun = "an Okta user"
    config_model = OktaStrategyConfig
    integration_type = "okta"
    integration_class = OktaIntegration
    target_key = "group_id"
    user_key = "okta_user_id"
    config: OktaStrategyConfig
    integration: OktaIntegration

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Add the user to the group (idempotent); the state keeps the Okta user id for revoke."""
        user = await self._require_user(ctx)
        group_id = self._target_id(ctx)
        await self.integration.require_manageable_group(group_id)
        await self.integration.add_user_to_group(group_id, user.id)
        log.info(
            "okta_group_granted",
            integration=self.identity_key,
            group_id=group_id,
            okta_user_id=user.id,
            request_id=ctx.request_id,
        )
        return GrantResult(state={"okta_user_id": user.id, "group_id": group_id})

    def access_key(self, target: Target) -> str:
        """The group, in this integration's org."""
        return f"okta:{self.config.integration}:{target.settings.get('group_id', '')}"

    async def holders(self, target: Target) -> list[Holder]:
        """Every member of the target's group (all pages); TargetNotFound when the group is gone."""
        members = await self.integration.group_members(str(target.settings.get("group_id") or ""))
        return [Holder(id=u.id, name=u.login, aliases=frozenset({u.email or ""} - {""})) for u in members]

    async def remove_holder(self, target: Target, holder: Holder) -> None:
        """Remove the member from the target's group; already gone is done."""
        group_id = str(target.settings.get("group_id") or "")
        await self.integration.remove_user_from_group(group_id, holder.id)
        log.info("okta_holder_removed", integration=self.identity_key, group_id=group_id, okta_user_id=holder.id)

    async def _remove(self, ctx: GrantContext, target_id: str, user_id: str) -> None:
        await self.integration.remove_user_from_group(target_id, user_id)
        log.info(
            "okta_group_revoked",
            integration=self.identity_key,
            group_id=target_id,
            okta_user_id=user_id,
            request_id=ctx.request_id,
        )

    async def _holds(self, target_id: str, user_id: str) -> bool:
        return await self.integration.is_member(target_id, user_id)

    async def _lookup_user(self, identity: str) -> OktaUser | None:
        return await self.integration.find_user(identity)

    def _no_user(self, identity: str) -> SubjectNotFound:
        return SubjectNotFound(
            f"Okta integration {self.identity_key}: no user with login or email {identity}",
            user_message=f"No Okta user matches {identity}; ask an admin to store your Okta login for jitbot.",
        )

    def _check_user(self, user: OktaUser) -> None:
        if user.status in INACTIVE_USER_STATUSES:
            raise SubjectNotFound(
                f"Okta user {user.id} has status {user.status}",
                user_message=f"Your Okta account {user.login} is {user.status.lower()}, "
                "so an Okta group would not give you access.",
            )

    async def _check_target(self, target_id: str) -> None:
        await self.integration.require_manageable_group(target_id)
