"""The stand-in strategy of an approval-only flow (no `strategy:`): a deploy gate, a customer's consent.

Such a flow records a decision and the window it opens, with the same messages, hooks and audit rows
as any other flow; nothing is granted in any outside system. Putting this object where the flow's
strategy would be keeps the lifecycle one lifecycle: the approval, its end time, `after_grant`,
the end of the window on time, `after_revoke` and recovery after a restart all run as for access,
and no outside system is ever called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from core.strategy import GrantContext, GrantResult, ValidationIssue


class ApprovalOnly:
    """Implements core.strategy.Strategy without a target system: every call succeeds at once."""

    system: ClassVar[str] = "no system (approval only)"

    @property
    def identity_key(self) -> str:
        """Overrides for every system ('*') apply: the identity is only shown, never sent anywhere."""
        return "*"

    async def open(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Anyone who may ask can be approved: there is no account to match."""
        return []

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Record nothing anywhere: the approval itself, stored by the engine, is the outcome."""
        return GrantResult(state={"approval_only": "true"})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Nothing to take back: the window simply ends."""
