"""Fault-injecting fakes for the engine's ports: target systems, the store, Slack and the timers.

Each fake does its job faithfully until a test arms a fault, and every armed fault fires once:

    strategy.script("grant", LATE_FATAL)       # the next grant reports a time-out, then lands later
    store.fail_write(skip=2, count=3)          # after two good writes, three writes raise, writing nothing
    notifier.fail_next("alert")                # the next alert raises like an unreachable Slack
    heal(strategy, store, notifier, directory) # forget every armed fault (in-flight grants still land)

`FaultyStrategy` is `tests.fakes.strategy.FakeStrategy` (holdings keyed by (identity, target)) plus
scripted faults, queued per strategy or in a `TargetFaults` shared by several (then the next grant
in any of those systems takes the next grant fault), and grants that "land late": the call fails
(a time-out), but the target system applies it afterwards, at `landing_delay` on the injected
clock, like an AWS SSO assignment left in progress. While such a grant is in flight, a revoke of
that access fails with a retryable error (the target refuses to delete what it is still creating),
so only an engine that retries its clean-up can take it back.
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import NotAllowed, StrategyUnavailable
from core.ports import UserInfo
from core.strategy import GrantContext, GrantResult
from tests.fakes.strategy import FakeStrategy

# ── target systems ────────────────────────────────────────────────────────────────────────────────

RETRYABLE = "retryable"  # StrategyUnavailable(retryable=True) before any effect (a 503)
FATAL = "fatal"  # StrategyUnavailable(retryable=False) before any effect (a 403)
BUG = "bug"  # a non-StrategyError exception before any effect (an adapter bug)
AFTER_EFFECT = "after_effect"  # the operation takes effect, then the call raises (the reply was lost)
LATE_RETRYABLE = "late_retryable"  # grant only: times out (retryable), lands at landing_delay
LATE_FATAL = "late_fatal"  # grant only: times out (not retryable), lands at landing_delay

GRANT_FAULTS = (RETRYABLE, FATAL, BUG, AFTER_EFFECT, LATE_RETRYABLE, LATE_FATAL)
REVOKE_FAULTS = (RETRYABLE, FATAL, BUG, AFTER_EFFECT)


class AdapterBug(RuntimeError):
    """What a strategy with a bug raises: not a StrategyError."""


@dataclass
class InFlightGrant:
    """A grant the target system accepted but has not applied yet."""

    operation: str
    key: tuple[str, str]  # (identity, target)
    lands_at: datetime
    request_id: str


class TargetFaults:
    """Scripted faults for the next grants / revokes, queued per operation; shareable by several strategies."""

    def __init__(self) -> None:
        self._scripts: dict[str, deque[str]] = defaultdict(deque)

    def script(self, op: str, fault: str) -> None:
        """Make the next call of `op` ('grant' or 'revoke') misbehave as `fault` (queued per op)."""
        allowed = GRANT_FAULTS if op == "grant" else REVOKE_FAULTS if op == "revoke" else ()
        if fault not in allowed:
            raise ValueError(f"{fault!r} is not a fault of {op!r} (known: {', '.join(allowed)})")
        self._scripts[op].append(fault)

    def next(self, op: str) -> str | None:
        return self._scripts[op].popleft() if self._scripts[op] else None

    def heal(self) -> None:
        """Forget every scripted fault."""
        self._scripts.clear()


class FaultyStrategy(FakeStrategy):
    """A FakeStrategy whose next grants / revokes can fail in scripted ways, including landing late."""

    _operations = itertools.count(1)

    def __init__(
        self,
        config: Any = None,
        *,
        clock,
        faults: TargetFaults | None = None,
        landing_delay: timedelta = timedelta(seconds=30),
        integrations: Mapping[str, object] | None = None,
        hooks: Any = None,
    ) -> None:
        super().__init__(config, integrations=integrations, hooks=hooks)
        self.clock = clock
        self.faults = faults or TargetFaults()
        self.landing_delay = landing_delay
        self.in_flight: list[InFlightGrant] = []

    # scripting

    def script(self, op: str, fault: str) -> None:
        """Make the next call of `op` ('grant' or 'revoke') misbehave as `fault` (queued per op)."""
        self.faults.script(op, fault)

    def heal(self) -> None:
        """Forget every scripted fault (grants already in flight still land)."""
        self.faults.heal()
        self._failures.clear()

    def land(self, *, everything: bool = False) -> int:
        """Apply the in-flight grants that are due on the clock (all of them with everything=True)."""
        now = self.clock.now()
        due = [g for g in self.in_flight if everything or g.lands_at <= now]
        for grant in due:
            self.in_flight.remove(grant)
            self.holdings.add(grant.key)
        return len(due)

    def next_landing(self) -> datetime | None:
        """When the next in-flight grant lands, if any."""
        return min((g.lands_at for g in self.in_flight), default=None)

    # the strategy

    async def grant(self, ctx: GrantContext) -> GrantResult:
        fault = self.faults.next("grant")
        key = (ctx.subject.identity, ctx.target.name)
        if fault in (LATE_RETRYABLE, LATE_FATAL):
            self._record("grant", ctx)
            operation = f"op-{next(self._operations)}"
            self.in_flight.append(InFlightGrant(operation, key, self.clock.now() + self.landing_delay, ctx.request_id))
            error = StrategyUnavailable(
                f"grant of {ctx.target.name} timed out; the target may still apply it",
                retryable=fault == LATE_RETRYABLE,
            )
            # What a clean-up needs to find the assignment still in progress (core.errors.StrategyError).
            error.grant_state = {"identity": str(key[0]), "target": key[1], "operation": operation}
            raise error
        self._before(fault)
        result = await super().grant(ctx)
        if fault == AFTER_EFFECT:
            raise StrategyUnavailable("the target applied the grant but the reply was lost", retryable=False)
        return result

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        fault = self.faults.next("revoke")
        identity = state.get("identity", ctx.subject.identity)
        key = (identity, state.get("target", ctx.target.name))
        if any(g.key == key for g in self.in_flight):
            self._record("revoke", ctx)
            raise StrategyUnavailable(
                "a grant of this access is still in progress at the target; try again later", retryable=True
            )
        self._before(fault)
        await super().revoke(ctx, state)
        if fault == AFTER_EFFECT:
            raise StrategyUnavailable("the target removed the access but the reply was lost", retryable=False)

    def _before(self, fault: str | None) -> None:
        if fault == RETRYABLE:
            raise StrategyUnavailable("503 from the target", retryable=True)
        if fault == FATAL:
            raise StrategyUnavailable("403 from the target", retryable=False)
        if fault == BUG:
            raise AdapterBug("the adapter crashed")


# ── the store ─────────────────────────────────────────────────────────────────────────────────────


class FaultyStore:
    """Wraps storage.db.Store: reads pass through; an armed write raises before writing anything."""

    def __init__(self, store) -> None:
        self.inner = store
        self._skip: int | None = None
        self._count = 0
        self.writes = 0
        self.failed_writes = 0

    @classmethod
    async def open(cls, path, **kwargs) -> FaultyStore:
        from storage.db import Store

        return cls(await Store.open(path, **kwargs))

    def fail_write(self, skip: int = 0, count: int = 1) -> None:
        """After `skip` good writes, make the next `count` writes raise sqlite3.OperationalError (an outage).

        Replaces any armed fault.
        """
        self._skip, self._count = skip, count

    def heal(self) -> None:
        """Disarm the write fault."""
        self._skip, self._count = None, 0

    @property
    def armed(self) -> bool:
        return self._skip is not None

    async def read(self, fn):
        return await self.inner.read(fn)

    async def write(self, fn):
        self.writes += 1
        if self._skip is not None:
            if self._skip == 0:
                self._count -= 1
                if self._count <= 0:
                    self._skip = None
                self.failed_writes += 1
                raise sqlite3.OperationalError("disk I/O error (injected)")
            self._skip -= 1
        return await self.inner.write(fn)

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:  # path, closed, and whatever Store grows
        return getattr(self.inner, name)


# ── Slack ─────────────────────────────────────────────────────────────────────────────────────────


class FakeSlackError(ConnectionError):
    """What an unreachable or failing Slack API looks like to the engine."""


class _OneShotFaults:
    def __init__(self, ops: tuple[str, ...]) -> None:
        self._ops = ops
        self._pending: dict[str, int] = defaultdict(int)

    def fail_next(self, op: str, times: int = 1) -> None:
        """Make the next `times` calls of `op` raise FakeSlackError."""
        if op not in self._ops:
            raise ValueError(f"unknown operation {op!r} (known: {', '.join(self._ops)})")
        self._pending[op] += times

    def heal(self) -> None:
        """Forget every armed fault."""
        self._pending.clear()

    def _maybe_fail(self, op: str) -> None:
        if self._pending[op] > 0:
            self._pending[op] -= 1
            raise FakeSlackError(f"slack {op} failed (injected)")


class FaultyNotifier(_OneShotFaults):
    """core.ports.Notifier: records messages, DMs and alerts; `fail_next(op)` for publish/notify_requester/alert."""

    OPS = ("publish", "notify_requester", "alert")

    def __init__(self) -> None:
        super().__init__(self.OPS)
        self.published: list[tuple[str, str]] = []  # (request id, status)
        self.notices: list[tuple[str, str]] = []  # (request id, notice)
        self.alerts: list[str] = []
        self._ts = itertools.count(1)

    async def publish(self, request) -> str:
        self._maybe_fail("publish")
        self.published.append((request.id, request.status.value))
        return request.message_ts or f"1700000000.{next(self._ts):06d}"

    async def notify_requester(self, request, notice, detail: str | None = None) -> None:
        self._maybe_fail("notify_requester")
        self.notices.append((request.id, str(notice)))

    async def alert(self, text: str, request=None) -> None:
        self._maybe_fail("alert")
        self.alerts.append(text)


_USERINFO_FIELDS = frozenset(f.name for f in dataclasses.fields(UserInfo))


def user_info(slack_id: str, *, email: str | None, name: str | None = None, guest: bool = False) -> UserInfo:
    """A UserInfo; `guest` is set only where the port has that field (older engines cannot see it)."""
    extra = {"guest": guest} if "guest" in _USERINFO_FIELDS else {}
    return UserInfo(slack_id, email=email, name=name, **extra)


class FakeDirectory(_OneShotFaults):
    """core.ports.Directory over a fixed table of people and user groups; `fail_next('lookup_user')` etc.

    `people` maps Slack id to (email, kind) with kind 'member', 'guest' or 'external' (a Slack
    Connect user from another organisation); guests and externals come back with `guest=True`
    where UserInfo has that field. Unknown ids raise NotAllowed, as SlackDirectory does.
    """

    OPS = ("lookup_user", "usergroup_members")
    name = "slack"

    def __init__(self, people: Mapping[str, tuple[str, str]], groups: Mapping[str, frozenset[str]]) -> None:
        super().__init__(self.OPS)
        self.people = dict(people)
        self.groups = {k: frozenset(v) for k, v in groups.items()}

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def lookup_user(self, slack_id: str, *, fresh: bool = False, **_: Any) -> UserInfo:
        self._maybe_fail("lookup_user")
        if slack_id not in self.people:
            raise NotAllowed(f"Slack user {slack_id} was not found.")
        email, kind = self.people[slack_id]
        return user_info(slack_id, email=email, name=slack_id.title(), guest=kind != "member")

    async def usergroup_members(self, usergroup_id: str, *, fresh: bool = False, **_: Any) -> frozenset[str]:
        self._maybe_fail("usergroup_members")
        return self.groups.get(usergroup_id, frozenset())

    async def is_in_usergroup(self, user, usergroup_id: str) -> bool:
        slack_id = user if isinstance(user, str) else user.slack_id
        return slack_id in await self.usergroup_members(usergroup_id)


# ── timers ────────────────────────────────────────────────────────────────────────────────────────


class FakeTimers:
    """core.engine.Timers that only records; `due(now)` pops what a scheduler would fire by now.

    Unknown `arm_<kind>(request_id, when)` methods are recorded too, so an engine that grows a new
    kind of timer is not broken by this fake; `due` returns (kind, request_id) pairs.
    """

    def __init__(self) -> None:
        self.armed: dict[tuple[str, str], datetime] = {}

    def arm_revoke(self, request_id: str, when: datetime) -> None:
        self.armed[("revoke", request_id)] = when

    def arm_expire(self, request_id: str, when: datetime) -> None:
        self.armed[("expire", request_id)] = when

    def disarm(self, request_id: str) -> None:
        for key in [k for k in self.armed if k[1] == request_id]:
            del self.armed[key]

    def clear(self) -> None:
        self.armed.clear()

    def due(self, now: datetime) -> list[tuple[str, str]]:
        fired = sorted((when, key) for key, when in self.armed.items() if when <= now)
        for _, key in fired:
            del self.armed[key]
        return [key for _, key in fired]

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("arm_"):
            kind = name[4:]

            def arm(request_id: str, when: datetime, *_: Any, **__: Any) -> None:
                self.armed[(kind, request_id)] = when

            return arm
        raise AttributeError(name)


def heal(*fakes: Any) -> None:
    """Disarm every armed fault of these fakes."""
    for fake in fakes:
        fake.heal()
