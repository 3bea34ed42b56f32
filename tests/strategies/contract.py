"""The strategy contract, run against every strategy: validate → grant → grant → revoke → revoke.

Each strategy's test module builds a `Harness` against its target system (moto, a local fake API,
a webhook receiver, a hooks file) and calls `run_contract(harness)`. `is_held()` must ask the
*target system*, never the strategy's own memory, so the suite proves real effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.strategy import GrantContext, GrantResult, Strategy, SupportsIsActive


@dataclass
class Harness:
    """A strategy opened against its target system, one request context, and a way to check it."""

    strategy: Strategy
    ctx: GrantContext
    is_held: Callable[[], Awaitable[bool]]


async def run_contract(h: Harness) -> None:
    """Validate, grant twice, revoke twice, checking the target system after every step."""
    assert await h.strategy.validate(h.ctx) == [], "a known subject must validate cleanly"
    assert not await h.is_held(), "precondition: access is not held before the grant"

    first = await h.strategy.grant(h.ctx)
    assert isinstance(first, GrantResult)
    assert await h.is_held(), "grant must give access in the target system"
    if isinstance(h.strategy, SupportsIsActive):
        assert await h.strategy.is_active(h.ctx)

    second = await h.strategy.grant(h.ctx)  # a retried envelope or crash recovery grants again
    assert isinstance(second, GrantResult)
    assert await h.is_held(), "granting what is already held must succeed and keep access"

    await h.strategy.revoke(h.ctx, first.state)
    assert not await h.is_held(), "revoke must remove access in the target system"
    if isinstance(h.strategy, SupportsIsActive):
        assert not await h.strategy.is_active(h.ctx)

    await h.strategy.revoke(h.ctx, first.state)  # revoking what is already gone must succeed
    assert not await h.is_held()
