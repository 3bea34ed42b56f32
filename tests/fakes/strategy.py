"""FakeStrategy: an in-memory target system for engine, handler and e2e tests (type `fake`).

It is registered only in `TEST_STRATEGY_TYPES`, never in production, because an unknown `type` is
a validation error (docs/configuration.md). It keeps holdings keyed by (identity, target name),
records every call, can script the next failure of an operation, and treats some identities as
unknown.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from core.errors import SubjectNotFound, TargetNotFound
from core.schema import StrategyConfig, TargetConfig
from core.strategy import GrantContext, GrantResult, ValidationIssue
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

OPERATIONS = ("validate", "grant", "revoke", "is_active")


class FakeTarget(TargetConfig):
    """A fake target: name, label and free-form settings."""

    settings: dict[str, Any] = {}


class FakeStrategyConfig(StrategyConfig):
    """The `strategy:` block of a fake flow; `integration` is optional and only checked for existence."""

    type: Literal["fake"]
    targets: Annotated[list[FakeTarget], Field(min_length=1)]
    integration: str | None = None


@dataclass(frozen=True)
class FakeCall:
    """One call the strategy received."""

    op: str
    request_id: str
    identity: str | None
    target: str


class FakeStrategy:
    """Grants and revokes in memory; idempotent like a real strategy, scriptable like a test double."""

    system = "Fake"
    config_model = FakeStrategyConfig
    shares_access = True  # holdings are (identity, target): two grants of one are one access

    def __init__(
        self,
        config: FakeStrategyConfig | None = None,
        *,
        integrations: Mapping[str, object] | None = None,
        hooks: Any = None,
    ) -> None:
        self.config = config
        self.integrations = dict(integrations or {})
        self.hooks = hooks
        self.holdings: set[tuple[str, str]] = set()
        self.calls: list[FakeCall] = []
        self.unknown_identities: set[str] = set()
        self.opened = False
        self.closed = False
        self._failures: dict[str, deque[BaseException]] = defaultdict(deque)

    @property
    def identity_key(self) -> str:
        """Overrides apply per integration when one is named, else per strategy type."""
        return self.config.integration if self.config is not None and self.config.integration else "fake"

    async def open(self) -> None:
        """Mark the strategy opened (a real one would build its clients here)."""
        self.opened = True

    async def aclose(self) -> None:
        """Mark the strategy closed."""
        self.closed = True

    def fail_next(self, op: str, exc: BaseException) -> None:
        """Make the next call of `op` raise `exc` before it has any effect (queued per operation)."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown operation {op!r} (known: {', '.join(OPERATIONS)})")
        self._failures[op].append(exc)

    def calls_of(self, op: str) -> list[FakeCall]:
        """The recorded calls of one operation, oldest first."""
        return [call for call in self.calls if call.op == op]

    def holds(self, identity: str, target: str) -> bool:
        """Whether `identity` currently holds `target` in the fake system."""
        return (identity, target) in self.holdings

    async def validate(self, ctx: GrantContext) -> list[ValidationIssue]:
        """Issues when the subject has no identity or is not known to the fake system."""
        self._record("validate", ctx)
        return self._issues(ctx)

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Add the holding (already held is fine); SubjectNotFound / TargetNotFound like a real system."""
        self._record("grant", ctx)
        issues = self._issues(ctx)
        if issues:
            raise SubjectNotFound(issues[0].detail, user_message=issues[0].user_message)
        self._check_target(ctx)
        self.holdings.add((ctx.subject.identity, ctx.target.name))
        return GrantResult(state={"identity": ctx.subject.identity, "target": ctx.target.name})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Remove the holding named by the grant's state (already gone is fine)."""
        self._record("revoke", ctx)
        identity = state.get("identity", ctx.subject.identity)
        self.holdings.discard((identity, state.get("target", ctx.target.name)))

    async def is_active(self, ctx: GrantContext) -> bool:
        """Whether the subject holds the target right now."""
        self._record("is_active", ctx)
        return (ctx.subject.identity, ctx.target.name) in self.holdings

    def _record(self, op: str, ctx: GrantContext) -> None:
        self.calls.append(FakeCall(op, ctx.request_id, ctx.subject.identity, ctx.target.name))
        if self._failures[op]:
            raise self._failures[op].popleft()

    def _issues(self, ctx: GrantContext) -> list[ValidationIssue]:
        identity = ctx.subject.identity
        if identity is None:
            return [
                ValidationIssue(
                    f"{self.system} needs your email address, and Slack did not give one.",
                    f"subject {ctx.subject.slack_id} has no identity",
                )
            ]
        if identity in self.unknown_identities:
            return [
                ValidationIssue(
                    f"You have no {self.system} account ({identity}). Ask an admin to create one.",
                    f"{identity} is unknown to {self.system}",
                )
            ]
        return []

    def _check_target(self, ctx: GrantContext) -> None:
        if self.config is not None and ctx.target.name not in {t.name for t in self.config.targets}:
            raise TargetNotFound(f"{self.system} has no target {ctx.target.name!r}")


TEST_STRATEGY_TYPES: dict[str, type] = {**STRATEGY_TYPES, "fake": FakeStrategy}
"""The production registry plus `fake`: tests load flows files with `strategy_types=TEST_STRATEGY_TYPES`."""
TEST_INTEGRATION_TYPES: dict[str, type] = dict(INTEGRATION_TYPES)
"""The production integrations, passed with TEST_STRATEGY_TYPES (core never picks a registry itself)."""
