"""Shared pieces of the live tests: the on-switch, each module's environment, and safe clean-up.

A live module declares the variables it needs and marks itself with them:

    LIVE = LiveEnv("Okta", ("JITBOT_LIVE_OKTA_API_TOKEN", ("JITBOT_LIVE_OKTA_BASE_URL", "JITBOT_LIVE_OKTA_DOMAIN")))
    pytestmark = LIVE.marks()

Every test in it is then marked `live` and skipped - the reason naming what is missing - unless
JITBOT_LIVE_TESTS=1 and all its variables are set (a tuple means "any one of these"). Strategies
and integrations are built from the registered config models, exactly as the bot builds them.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from core.models import Subject
from core.strategy import GrantContext, GrantResult
from core.targets import as_target
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

LIVE_SWITCH = "JITBOT_LIVE_TESTS"
LIVE_SLACK_ID = "ULIVETEST"

Requirement = str | tuple[str, ...]
IsHeld = Callable[[], Awaitable[bool]]


def env(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class LiveEnv:
    """What one live module needs from the environment, and the skip that follows from it."""

    system: str
    required: tuple[Requirement, ...]

    def missing(self) -> list[str]:
        """The required variables (or groups of alternatives) that are not set."""
        missing = []
        for requirement in self.required:
            names = (requirement,) if isinstance(requirement, str) else requirement
            if not any(env(name) for name in names):
                missing.append(" or ".join(names))
        return missing

    def skip_reason(self) -> str | None:
        """Why this module cannot run here, or None when it can."""
        if os.environ.get(LIVE_SWITCH) != "1":
            return f"live {self.system} test: runs only with {LIVE_SWITCH}=1 (see docs/live-tests.md)"
        if missing := self.missing():
            return f"live {self.system} test: {LIVE_SWITCH}=1 but not set: {', '.join(missing)}"
        return None

    def marks(self) -> list[pytest.MarkDecorator]:
        """The module's `pytestmark`: marked live, and skipped unless switched on and configured."""
        reason = self.skip_reason()
        return [pytest.mark.live, pytest.mark.skipif(reason is not None, reason=reason or "")]

    def value(self, name: str) -> str:
        """A variable the module requires (the skip guarantees it is set when a test runs)."""
        value = env(name)
        if value is None:
            raise LookupError(f"{name} is not set")
        return value


def build_integration(name: str, raw: Mapping[str, Any]) -> Any:
    """A production integration from an `integrations:` entry, validated by its registered config model."""
    integration_class = INTEGRATION_TYPES[raw["type"]]
    return integration_class(name, integration_class.config_model.model_validate(raw))


def build_strategy(raw: Mapping[str, Any], integrations: Mapping[str, object]) -> Any:
    """A production strategy from a flow's `strategy:` block, validated by its registered config model."""
    strategy_class = STRATEGY_TYPES[raw["type"]]
    return strategy_class(strategy_class.config_model.model_validate(raw), integrations=integrations)


@asynccontextmanager
async def opened(*parts: Any) -> AsyncIterator[None]:
    """Open integrations and strategies in order; close them in reverse, whatever happens."""
    started: list[Any] = []
    try:
        for part in parts:
            await part.open()
            started.append(part)
        yield
    finally:
        for part in reversed(started):
            await part.aclose()


def live_context(strategy: Any, *, flow: str, identity: str, email: str | None = None) -> GrantContext:
    """A request for the strategy's first target with a fresh request id, as the engine would build it."""
    now = datetime.now(UTC).replace(microsecond=0)
    return GrantContext(
        request_id=f"live-{uuid.uuid4().hex[:16]}",
        flow=flow,
        target=as_target(strategy.config.targets[0]),
        subject=Subject(LIVE_SLACK_ID, email or identity, identity, "jitbot live test"),
        fields={"reason": "jitbot live test"},
        granted_at=now,
        expires_at=now + timedelta(minutes=15),
    )


class LiveCleanupError(AssertionError):
    """The clean-up revoke of a live test failed: access may be left in a real account."""


@asynccontextmanager
async def revoked_afterwards(strategy: Any, ctx: GrantContext, is_held: IsHeld | None) -> AsyncIterator[dict[str, str]]:
    """Run the block, then revoke whatever it granted - even when it failed - and check the access is gone.

    The block may put a grant's state into the dict it is given; the clean-up revokes with it (else
    with none, so the strategy looks the person up again). With `is_held`, a subject who already holds
    the access is refused up front: the clean-up would take away access the test did not give.
    Without it (webhooks) nothing can be checked, only that the revoke is accepted.
    """
    where = f"request {ctx.request_id} ({strategy.system}, target {ctx.target.name}, {ctx.subject.identity})"
    if is_held is not None and await is_held():
        pytest.fail(
            f"{where}: the test subject already holds this access; the live test would remove it. "
            "Use a test user that does not hold it."
        )
    state: dict[str, str] = {}
    try:
        yield state
    finally:
        await _revoke_for_cleanup(strategy, ctx, state, is_held, where)


async def _revoke_for_cleanup(
    strategy: Any, ctx: GrantContext, state: Mapping[str, str], is_held: IsHeld | None, where: str
) -> None:
    try:
        await strategy.revoke(ctx, state)
        still_held = is_held is not None and await is_held()
    except Exception as exc:
        raise LiveCleanupError(f"clean-up revoke of {where} failed: {exc}; remove the access by hand") from exc
    if still_held:
        raise LiveCleanupError(f"{where}: still held after the clean-up revoke; remove the access by hand")


class SettlingStrategy:
    """A strategy whose grant and revoke return once the target system shows their effect (bounded).

    IAM is eventually consistent: a read right after a write may not see it yet. Waiting here, up to
    `within` seconds, keeps the contract's checks strict (after the wait it still asserts the state)
    without making them flaky. On a system that is already consistent the first read settles it.
    """

    def __init__(self, inner: Any, is_held: IsHeld, *, within: float = 30.0) -> None:
        self.inner = inner
        self.system = inner.system
        self._is_held = is_held
        self._within = within

    @property
    def identity_key(self) -> str:
        """The wrapped strategy's identity key."""
        return self.inner.identity_key

    async def open(self) -> None:
        """Open the wrapped strategy."""
        await self.inner.open()

    async def aclose(self) -> None:
        """Close the wrapped strategy."""
        await self.inner.aclose()

    async def validate(self, ctx: GrantContext) -> list:
        """The wrapped strategy's validation."""
        return await self.inner.validate(ctx)

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Grant, then wait until the target system shows the access."""
        result = await self.inner.grant(ctx)
        await self._until(True)
        return result

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Revoke, then wait until the target system no longer shows the access."""
        await self.inner.revoke(ctx, state)
        await self._until(False)

    async def is_active(self, ctx: GrantContext) -> bool:
        """The wrapped strategy's own check."""
        return await self.inner.is_active(ctx)

    async def _until(self, held: bool) -> None:
        deadline = time.monotonic() + self._within
        pause = 0.5
        # Polling a remote system is the one wait that cannot be awaited; the contract asserts afterwards.
        while await self._is_held() != held and time.monotonic() + pause < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 4.0)


async def require_aws_credentials() -> None:
    """Skip the test when the standard AWS credential chain finds nothing."""
    credentials = await asyncio.to_thread(lambda: boto3.Session().get_credentials())
    if credentials is None:
        pytest.skip(
            "live AWS test: no credentials in the standard AWS chain "
            "(AWS_ACCESS_KEY_ID/…, AWS_PROFILE, ~/.aws, SSO, container or instance role)"
        )


def aws_integration_config() -> dict[str, Any]:
    """The `integrations:` entry of the live AWS tests: region, and the role to assume if given."""
    raw: dict[str, Any] = {"type": "aws", "region": env("JITBOT_LIVE_AWS_REGION")}
    if role_arn := env("JITBOT_LIVE_AWS_ROLE_ARN"):
        raw["role_arn"] = role_arn
    return raw
