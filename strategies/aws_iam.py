"""The `aws_iam` strategy: access is membership of an IAM group; grant adds the user, revoke removes it.

The identity is the IAM user name. By default that is the requester's Slack email, so this strategy
fits accounts whose IAM users are named by email; otherwise store the IAM user name as an override
with `bot.py identities set` (it applies to the strategy's `integration`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import structlog
from pydantic import Field

from core.errors import SubjectNotFound, TargetNotFound
from core.models import Target
from core.schema import Name, StrategyConfig, TargetConfig
from core.strategy import GrantContext, GrantResult, Holder, ValidationIssue
from strategies.aws import AwsStrategyBase, mapped_call

log = structlog.get_logger(__name__)

SYSTEM = "AWS IAM"
_NO_SUCH_ENTITY = "NoSuchEntity"


class AwsIamTarget(TargetConfig):
    """A target of an `aws_iam` flow: the IAM group whose membership is the access."""

    group_name: Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,128}$")]


class AwsIamStrategyConfig(StrategyConfig):
    """The `strategy:` block of an `aws_iam` flow."""

    type: Literal["aws_iam"]
    integration: Name
    targets: Annotated[list[AwsIamTarget], Field(min_length=1)]


class AwsIamStrategy(AwsStrategyBase):
    """Grants a target by adding the requester's IAM user to the target's IAM group."""

    system = SYSTEM
    identity_noun = "an AWS IAM user"
    config_model = AwsIamStrategyConfig
    config: AwsIamStrategyConfig

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Check that the IAM user and the target's group both exist."""
        issues: list[ValidationIssue] = []
        user = ctx.subject.identity
        if not user:
            issues.append(self._no_identity_issue(ctx))
        elif not await self._user_exists(user):
            issues.append(
                ValidationIssue(
                    f"No AWS IAM user named '{user}' was found. Ask an admin to create it, or to map "
                    "your Slack account to your IAM user name with `bot.py identities set`.",
                    detail=f"iam:GetUser(UserName={user!r}) -> NoSuchEntity (identity key {self.identity_key!r})",
                )
            )
        group = self._setting(ctx, "group_name")
        if not await self._group_exists(group):
            issues.append(
                ValidationIssue(
                    f"The AWS IAM group '{group}' behind '{ctx.target.label}' does not exist; "
                    "ask an admin to fix this flow.",
                    detail=f"TargetNotFound: iam:GetGroup(GroupName={group!r}) -> NoSuchEntity",
                )
            )
        return issues

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Add the user to the group; IAM accepts adding a member twice, so retries are harmless."""
        user = self._require_identity(ctx)
        group = self._setting(ctx, "group_name")
        if await self._iam("add_user_to_group", GroupName=group, UserName=user) is None:
            # NoSuchEntity names either the user or the group; ask which one is missing.
            if not await self._group_exists(group):
                raise TargetNotFound(
                    f"{SYSTEM}: group {group!r} does not exist",
                    user_message=f"The AWS IAM group behind '{ctx.target.label}' does not exist.",
                )
            raise SubjectNotFound(
                f"{SYSTEM}: no IAM user named {user!r}",
                user_message=f"No AWS IAM user named '{user}' was found.",
            )
        return GrantResult(state={"user_name": user, "group_name": group})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Remove the user from the group; a membership, user or group already gone counts as done."""
        user = state.get("user_name") or ctx.subject.identity
        group = state.get("group_name") or self._setting(ctx, "group_name")
        if not user:
            raise SubjectNotFound(f"{SYSTEM}: nothing recorded to revoke for {ctx.subject.slack_id}")
        if await self._iam("remove_user_from_group", GroupName=group, UserName=user) is None:
            log.info("aws_iam.revoke.already_gone", user=user, group=group)

    async def is_active(self, ctx: GrantContext) -> bool:
        """Ask IAM whether the user is in the target's group right now."""
        user = ctx.subject.identity
        if not user:
            return False
        wanted = self._setting(ctx, "group_name").lower()  # IAM names are unique regardless of case
        pages = await mapped_call(
            lambda: self.integration.paginate("iam", "list_groups_for_user", UserName=user),
            system=SYSTEM,
            client_name="iam",
            missing=_NO_SUCH_ENTITY,
        )
        if pages is None:
            return False
        return any(g["GroupName"].lower() == wanted for page in pages for g in page.get("Groups", []))

    def access_key(self, target: Target) -> str:
        """The group, in this integration's account (IAM group names are unique regardless of case)."""
        return f"aws_iam:{self.config.integration}:{str(target.settings.get('group_name', '')).lower()}"

    async def holders(self, target: Target) -> list[Holder]:
        """Every IAM user in the target's group (iam:GetGroup, all pages); TargetNotFound if it is gone."""
        group = str(target.settings.get("group_name") or "")
        pages = await mapped_call(
            lambda: self.integration.paginate("iam", "get_group", GroupName=group),
            system=SYSTEM,
            client_name="iam",
            missing=_NO_SUCH_ENTITY,
        )
        if pages is None:
            raise TargetNotFound(f"{SYSTEM}: group {group!r} does not exist, so its members cannot be listed")
        return [
            Holder(id=u["UserName"], name=u["UserName"], aliases=frozenset({u.get("UserId", "")} - {""}))
            for page in pages
            for u in page.get("Users", [])
        ]

    async def remove_holder(self, target: Target, holder: Holder) -> None:
        """Remove the user from the target's group; already gone is done."""
        group = str(target.settings.get("group_name") or "")
        if await self._iam("remove_user_from_group", GroupName=group, UserName=holder.id) is None:
            log.info("aws_iam.remove_holder.already_gone", user=holder.id, group=group)

    async def _iam(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """One IAM call with retries; None when IAM answers NoSuchEntity, other errors mapped."""
        return await self._call("iam", method, missing=_NO_SUCH_ENTITY, **kwargs)

    async def _user_exists(self, user: str) -> bool:
        return await self._iam("get_user", UserName=user) is not None

    async def _group_exists(self, group: str) -> bool:
        return await self._iam("get_group", GroupName=group, MaxItems=1) is not None
