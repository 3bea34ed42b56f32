"""Claims: who may act on a request (or an access, or a periodic job) right now, across replicas.

On one process (SQLite) an `asyncio.Lock` per request is enough, and that is all `Lifecycle.lock`
uses there. With several replicas on one PostgreSQL database, each lock is also a *lease* in the
database (`LeaseStore`, the `leases` table): a row naming its owner (this process) and how long it
holds (`lease_until`). A lease is taken only when free or expired, renewed by this process's
heartbeat while held, and deleted when released. A replica killed mid-revocation stops renewing;
`ttl` later its leases are expired and any other replica takes the work over (the periodic sweep
finds the row still due). The database is the arbiter: status changes stay compare-and-set, and a
lease only keeps two replicas from doing the same work (a grant, a revocation) at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import Counter
from collections.abc import Collection
from contextvars import ContextVar
from types import TracebackType
from typing import Protocol

import structlog

from core.errors import NotAllowed
from core.metrics import NO_METRICS, Metrics

log = structlog.get_logger("jitbot.claims")

LEASE_TTL = 5.0  # seconds a lease outlives its holder's last heartbeat: the takeover delay after a crash
CLAIM_WAIT = 30.0  # seconds a click waits for another replica to finish with its request
_POLL = 0.05  # seconds between attempts on a lease another replica holds
# False in work that polls for what is due (the sweep): a request another replica holds is skipped at
# once rather than waited for, since that replica is doing it (or, if it dies, the next poll will).
WAIT_FOR_REQUESTS: ContextVar[bool] = ContextVar("jitbot_wait_for_requests", default=True)


class LeaseStore(Protocol):
    """The leases table (storage/leases.py): every call is one short transaction."""

    owner: str

    async def claim(self, names: Collection[str], ttl: float) -> set[str]:
        """Take every free, expired or already-ours lease of `names` for `ttl` seconds; return those now ours."""
        ...

    async def renew(self, names: Collection[str], ttl: float) -> set[str]:
        """Extend our leases of `names`; return those still ours."""
        ...

    async def release(self, names: Collection[str]) -> None:
        """Give up our leases of `names`."""
        ...

    async def held_elsewhere(self, names: Collection[str]) -> set[str]:
        """Those of `names` leased, unexpired, by another owner."""
        ...


def request_lease(request_id: str) -> str:
    """The lease name of one request."""
    return f"request:{request_id}"


class ClaimedElsewhere(NotAllowed):
    """Another replica is acting on this request and did not finish in time."""


class Claims:
    """This process's leases: held with a count (nested holders share one lease), renewed by a heartbeat."""

    def __init__(self, store: LeaseStore, *, ttl: float = LEASE_TTL, wait: float = CLAIM_WAIT) -> None:
        self.store = store
        self.ttl = ttl
        self.wait = wait
        self._held: Counter[str] = Counter()
        self._heartbeat: asyncio.Task[None] | None = None
        self.metrics: Metrics = NO_METRICS  # the composition root wires /metrics: each lease taken is a claimed job

    @property
    def owner(self) -> str:
        """This process's name in the leases table."""
        return self.store.owner

    def held(self) -> int:
        """How many leases this process holds now."""
        return len(self._held)

    def start(self) -> None:
        """Start renewing held leases every third of their lifetime (call inside the running loop)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="jitbot-lease-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat and give every lease back (what was unfinished is due again for the others)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        names, self._held = list(self._held), Counter()
        if names:
            try:
                await self.store.release(names)
            except Exception:
                log.exception("leases.release_failed", count=len(names))

    async def try_take(self, name: str) -> bool:
        """Take the lease `name` if nobody else holds it; True when this process now holds it."""
        if self._held[name] > 0:
            self._held[name] += 1
            return True
        if name not in await self.store.claim([name], self.ttl):
            del self._held[name]
            return False
        self._held[name] += 1
        self.metrics.lease_claimed(name.partition(":")[0])
        return True

    async def take(self, name: str) -> None:
        """Take the lease `name`, waiting while another replica holds it; ClaimedElsewhere after `wait`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while not await self.try_take(name):
            if loop.time() >= deadline:
                raise ClaimedElsewhere(
                    f"lease {name} held by another replica for over {self.wait:g}s",
                    user_message="Another jitbot replica is still working on this request: try again in a moment.",
                )
            await asyncio.sleep(_POLL)

    async def give_back(self, name: str) -> None:
        """Release one hold of `name`; the lease itself goes when the last holder here releases it."""
        self._held[name] -= 1
        if self._held[name] > 0:
            return
        del self._held[name]
        try:
            await self.store.release([name])
        except Exception:
            # Not raised: the work is done and recorded; the lease simply expires after `ttl`.
            log.exception("lease.release_failed", lease=name)

    async def busy_elsewhere(self, names: Collection[str]) -> set[str]:
        """Those of `names` another live replica holds (the sweep leaves them to it)."""
        names = [n for n in names if self._held[n] == 0]
        return await self.store.held_elsewhere(names) if names else set()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            names = list(self._held)
            if not names:
                continue
            try:
                kept = await self.store.renew(names, self.ttl)
            except Exception:
                log.exception("leases.renew_failed", count=len(names))
                continue
            lost = set(names) - kept
            if lost:
                # Another replica took them after they expired (this process stalled): it redoes the
                # work, which every strategy call tolerates (grants and revokes are idempotent).
                log.error("leases.lost", leases=sorted(lost))


class Guard:
    """`async with`: this process's lock of one name and, with claims, its lease in the database."""

    def __init__(self, local: asyncio.Lock, claims: Claims | None, name: str) -> None:
        self._local = local
        self._claims = claims
        self._name = name

    def locked(self) -> bool:
        """Whether a coroutine of this process holds it."""
        return self._local.locked()

    async def __aenter__(self) -> None:
        await self._local.acquire()
        if self._claims is None:
            return
        try:
            if self._name.startswith("request:") and not WAIT_FOR_REQUESTS.get():
                if not await self._claims.try_take(self._name):
                    raise ClaimedElsewhere(f"lease {self._name} held by another replica")
            else:
                await self._claims.take(self._name)
        except BaseException:
            self._local.release()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._claims is not None:
                await asyncio.shield(self._claims.give_back(self._name))
        finally:
            self._local.release()


class Guards:
    """One `Guard` per name, kept while in use (weakly: finished requests leave nothing behind)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.claims: Claims | None = None  # set by the composition root when replicas share the database

    def guard(self, name: str) -> Guard:
        """The guard of `name` (its local lock is shared by every guard of the same name)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        return Guard(lock, self.claims, name)

    def locked_here(self, name: str) -> bool:
        """Whether a coroutine of this process holds `name`."""
        lock = self._locks.get(name)
        return lock is not None and lock.locked()
