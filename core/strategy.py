"""The strategy protocol every adapter implements, and the values that cross it (owned by core).

A strategy grants and revokes one target for one person in one system. The engine calls:

    issues = await strategy.validate(ctx)      # at submit time: can this person be matched?
    result = await strategy.grant(ctx)         # after approval; result.state is persisted
    await strategy.revoke(ctx, result.state)   # at the end time, with the persisted state

Rules every strategy keeps:
- `grant` of something already held and `revoke` of something already gone both succeed
  (idempotency is what makes crash recovery and retried envelopes safe).
- Failures raise `core.errors.StrategyError` subclasses: `SubjectNotFound`, `TargetNotFound`,
  or `StrategyUnavailable(retryable=…)`. A failure after which the grant may still land carries
  `grant_state` for the clean-up. Messages never contain secrets.
- Construction does no I/O: `__init__(config, *, integrations, hooks)` only stores; `open()` builds
  clients; `aclose()` releases them.
- The class attribute `config_model` is the pydantic model of the flow's `strategy:` block, and
  `system` is the human name of the target system ("Okta", "AWS IAM") used in user-facing errors.
- `identity_key` names whose identity overrides apply (an integration name, or the strategy type).

Optional capabilities are separate runtime-checkable protocols, probed with isinstance():
`SupportsIsActive` (used by the contract suite and live checks), `SupportsInstructions`, and
`SupportsHolders` (list who holds a target and take it from one of them: drift reconciliation).
Adapters live in `strategies/`; core depends on this protocol only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from core.models import Subject, Target


@dataclass(frozen=True)
class GrantContext:
    """Everything a strategy needs to act on one request."""

    request_id: str
    flow: str
    target: Target
    subject: Subject
    fields: Mapping[str, Any] = field(default_factory=dict)
    granted_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class GrantResult:
    """What a grant produced: `state` is persisted and handed back to `revoke`."""

    state: Mapping[str, str] = field(default_factory=dict)
    instructions: str | None = None


@dataclass(frozen=True)
class ValidationIssue:
    """A reason a request cannot be served: `user_message` for the person, `detail` for logs."""

    user_message: str
    detail: str = ""


@runtime_checkable
class Strategy(Protocol):
    """Grants and revokes one target for one person; both operations are idempotent."""

    system: ClassVar[str]

    @property
    def identity_key(self) -> str: ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]: ...

    async def grant(self, ctx: GrantContext) -> GrantResult: ...

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None: ...


@runtime_checkable
class SupportsIsActive(Protocol):
    """A strategy that can tell whether the access is currently held in the target system."""

    async def is_active(self, ctx: GrantContext) -> bool: ...


@runtime_checkable
class SharesAccess(Protocol):
    """A strategy whose grants of one target to one identity are one and the same access (a group
    membership, a role): a grant that ends while another live grant of exactly the same access runs
    is closed without a revoke call. Strategies whose receivers key grants per request (webhook,
    custom) do not declare it, so each of their grants gets its own revoke."""

    shares_access: ClassVar[bool]


@runtime_checkable
class SupportsInstructions(Protocol):
    """A strategy that can tell the requester how to use the access (shown in the DM)."""

    def instructions(self, ctx: GrantContext) -> str | None: ...


@dataclass(frozen=True)
class Holder:
    """Someone who holds a target in its system: their `id` there, the `name` people know them by,
    other names they go by (`aliases`: an email, a login), and `kind` ("user", or "group" where a
    whole group is assigned)."""

    id: str
    name: str
    aliases: frozenset[str] = frozenset()
    kind: str = "user"

    @property
    def names(self) -> frozenset[str]:
        """Every name of this holder, case-folded, for matching identities and exemptions."""
        return frozenset(n.casefold() for n in (self.name, *self.aliases) if n)


@runtime_checkable
class SupportsHolders(Protocol):
    """A strategy that can list everyone holding a target in the target system, and remove one.

    `holders` lists every page and raises a `StrategyError` when it cannot (never an empty list for
    a listing that failed, nor for a target that does not exist). `access_key` names the access in
    the target system (two flows granting the same group share it), so a live grant of any flow
    covers its holder.
    """

    def access_key(self, target: Target) -> str: ...

    async def holders(self, target: Target) -> list[Holder]: ...

    async def remove_holder(self, target: Target, holder: Holder) -> None: ...


@runtime_checkable
class Integration(Protocol):
    """A named connection from `integrations:` that strategies and hooks share (one client each)."""

    name: str

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...
