"""The strategy contract, run against every strategy: validate → grant → grant → revoke → revoke, and
"extend keeps access" (`run_extend_contract`).

Each strategy's test module builds a `Harness` against its target system (moto, a local fake API,
a webhook receiver, a hooks file) and calls `run_contract(harness)`. `is_held()` must ask the
*target system*, never the strategy's own memory, so the suite proves real effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from core.strategy import GrantContext, GrantResult, Strategy, SupportsIsActive


@dataclass
class Harness:
    """A strategy opened against its target system, one request context, and a way to check it."""

    strategy: Strategy
    ctx: GrantContext
    is_held: Callable[[], Awaitable[bool]]
    # For targets keyed by request (a webhook receiver): is the grant of this other context held?
    is_held_for: Callable[[GrantContext], Awaitable[bool]] | None = None


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


async def run_extend_contract(h: Harness) -> None:
    """Extend keeps access: granted, then extended while live, the target system keeps the access with no
    strategy call at all, and the one revoke at the new end (as the engine makes it: the first grant's
    request id and state, the extension's end and fields) takes it away."""
    assert not await h.is_held(), "precondition: access is not held before the grant"
    first = await h.strategy.grant(h.ctx)
    assert await h.is_held(), "grant must give access in the target system"

    # The extension is approved while the grant is live: the engine moves the end and calls nothing.
    end = (h.ctx.expires_at or h.ctx.granted_at or datetime.now(UTC)) + timedelta(hours=1)
    extended = replace(h.ctx, expires_at=end, fields={**dict(h.ctx.fields), "duration": "1h", "reason": "more time"})
    assert await h.is_held(), "moving the end must take nothing away in the target system"
    if isinstance(h.strategy, SupportsIsActive):
        assert await h.strategy.is_active(extended)

    await h.strategy.revoke(extended, first.state)
    assert not await h.is_held(), "the revoke at the new end must remove the access the first grant made"

    # Approved after the access ended, an extension is an ordinary grant of its own.
    again = replace(extended, request_id=f"{h.ctx.request_id}-ext")
    second = await h.strategy.grant(again)
    assert await h.is_held() or await _held_for(h, again), "an extension after the end grants access again"
    await h.strategy.revoke(again, second.state)
    assert not await h.is_held() and not await _held_for(h, again)


async def _held_for(h: Harness, ctx: GrantContext) -> bool:
    """Whether `ctx`'s own grant is held, for harnesses whose is_held looks at one request id."""
    return await h.is_held_for(ctx) if h.is_held_for is not None else False
