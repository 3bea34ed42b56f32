"""The base adapters share; the strategy protocol itself and its values live in `core.strategy`.

Adapters import the protocol and its values from `core.strategy`: adapters depend on core, never the
other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from core.errors import StartupError, StrategyError, SubjectNotFound, TargetNotFound
from core.strategy import GrantContext, Integration, ValidationIssue


def issue(error: StrategyError) -> ValidationIssue:
    """The validation issue that tells the person what `error` says (its text goes to the detail)."""
    return ValidationIssue(error.user_message, detail=str(error))


class MatchedElsewhere:
    """Base of strategies whose far end (a receiver, the flow's hooks) matches the person itself.

    jitbot only needs an email or a stored identity to hand over; a subclass says where the request
    goes (`_where`) and what happens without either (`unidentified_consequence`).
    """

    unidentified_consequence: ClassVar[str]

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """The far end does its own matching: the person only needs an email or a stored identity."""
        try:
            self._require_someone(ctx)
        except SubjectNotFound as exc:
            return [issue(exc)]
        return []

    def _require_someone(self, ctx: GrantContext) -> None:
        """Raise SubjectNotFound when the requester has neither an email nor a stored identity."""
        if not (ctx.subject.email or ctx.subject.identity):
            raise SubjectNotFound(
                f"{self._where()}: subject {ctx.subject.slack_id} has no email and no identity override",
                user_message=f"Your Slack profile has no email address, so {self.unidentified_consequence}.",
            )

    def _where(self) -> str:
        raise NotImplementedError


class IntegrationStrategyConfig(Protocol):
    """What `IntegrationStrategy` reads of its config: the strategy `type` and the `integration` name."""

    @property
    def type(self) -> str: ...

    @property
    def integration(self) -> str: ...


class IntegrationStrategy:
    """Base of strategies that act through one shared `integrations:` entry.

    A subclass sets `integration_class` and `integration_type`; its config has `integration:`.
    Identity overrides are stored per integration name. The runtime opens and closes the shared
    integration; a strategy only makes sure it is open. `system` names the target system in every
    message, and `identity_noun` is what a person's identity is matched to ("an AWS IAM user").
    """

    system: ClassVar[str]
    identity_noun: ClassVar[str]
    integration_class: ClassVar[type[Integration]]
    integration_type: ClassVar[str]
    shares_access: ClassVar[bool] = True  # a membership: two grants of it to one identity are one access
    # A subclass narrows both to its own config model and integration class.
    config: IntegrationStrategyConfig
    integration: Integration

    def __init__(
        self, config: IntegrationStrategyConfig, *, integrations: Mapping[str, object], hooks: Any = None
    ) -> None:
        integration = integrations.get(config.integration)
        if not isinstance(integration, self.integration_class):
            raise StartupError(
                f"the {config.type} strategy needs integration '{config.integration}' of type {self.integration_type}"
            )
        self.config = config
        self.integration = integration

    @property
    def identity_key(self) -> str:
        """Identity overrides are stored per integration."""
        return self.config.integration

    async def open(self) -> None:
        """Make sure the shared integration is open (its owner closes it)."""
        await self.integration.open()

    async def aclose(self) -> None:
        """Nothing of its own to release: the integration is shared and closed by its owner."""

    def _no_identity_issue(self, ctx: GrantContext) -> ValidationIssue:
        return ValidationIssue(
            f"Your Slack account has no email or stored identity to match to {self.identity_noun}. "
            "Ask an admin to map it with `bot.py identities set`.",
            detail=f"subject {ctx.subject.slack_id} has no identity for {self.system}",
        )

    def _require_identity(self, ctx: GrantContext) -> str:
        """The requester's identity, or SubjectNotFound worded like the validation issue."""
        identity = ctx.subject.identity
        if not identity:
            found = self._no_identity_issue(ctx)
            raise SubjectNotFound(f"{self.system}: {found.detail}", user_message=found.user_message)
        return identity

    def _setting(self, ctx: GrantContext, key: str) -> str:
        """The target's `key` setting, or TargetNotFound when it is missing or empty."""
        value = ctx.target.settings.get(key)
        if not value:
            raise TargetNotFound(f"{self.system}: target {ctx.target.name!r} has no {key}")
        return str(value)
