"""Leases on both engines: one holder at a time, taken over only once expired, renewed while held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.leases import LeaseRepo

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_a_lease_has_one_holder_until_it_expires_then_another_replica_takes_it_over(store):
    wall = Wall()
    a, b = LeaseRepo(store, "replica-a", wall=wall), LeaseRepo(store, "replica-b", wall=wall)
    assert await a.claim(["request:r1", "request:r2"], ttl=5) == {"request:r1", "request:r2"}
    assert await b.claim(["request:r1", "request:r3"], ttl=5) == {"request:r3"}
    assert await b.held_elsewhere(["request:r1", "request:r2", "request:r3"]) == {"request:r1", "request:r2"}
    wall.now += timedelta(seconds=4.9)
    assert await b.claim(["request:r1"], ttl=5) == set()  # still a's
    wall.now += timedelta(seconds=0.2)  # a stopped renewing 5.1 s ago: it died
    assert await b.claim(["request:r1"], ttl=5) == {"request:r1"}
    assert await a.renew(["request:r1", "request:r2"], ttl=5) == {"request:r2"}  # a learns it lost r1
    assert await a.held_elsewhere(["request:r1"]) == {"request:r1"}


async def test_renewing_keeps_a_lease_past_its_first_lifetime(store):
    wall = Wall()
    a, b = LeaseRepo(store, "replica-a", wall=wall), LeaseRepo(store, "replica-b", wall=wall)
    await a.claim(["job:sweep"], ttl=3)
    for _ in range(5):
        wall.now += timedelta(seconds=1)
        assert await a.renew(["job:sweep"], ttl=3) == {"job:sweep"}
    assert await b.claim(["job:sweep"], ttl=3) == set()
    assert await b.holders() == {"replica-a": 1}


async def test_a_released_lease_is_free_at_once_and_release_never_frees_another_owners(store):
    wall = Wall()
    a, b = LeaseRepo(store, "replica-a", wall=wall), LeaseRepo(store, "replica-b", wall=wall)
    await a.claim(["access:x"], ttl=30)
    await b.release(["access:x"])  # not b's to release
    assert await b.claim(["access:x"], ttl=30) == set()
    await a.release(["access:x"])
    assert await b.claim(["access:x"], ttl=30) == {"access:x"}
    assert await a.held_elsewhere([]) == set() and await a.claim([], ttl=1) == set()


async def test_claiming_again_what_is_already_ours_extends_it(store):
    wall = Wall()
    a, b = LeaseRepo(store, "replica-a", wall=wall), LeaseRepo(store, "replica-b", wall=wall)
    await a.claim(["request:r1"], ttl=2)
    wall.now += timedelta(seconds=1.5)
    assert await a.claim(["request:r1"], ttl=2) == {"request:r1"}
    wall.now += timedelta(seconds=1.5)  # 3 s after the first claim, 1.5 s after the second
    assert await b.claim(["request:r1"], ttl=2) == set()


async def test_many_names_are_asked_about_in_chunks(store):
    wall = Wall()
    a, b = LeaseRepo(store, "replica-a", wall=wall), LeaseRepo(store, "replica-b", wall=wall)
    names = [f"request:r{i}" for i in range(1200)]
    assert len(await a.claim(names, ttl=10)) == 1200
    assert await b.held_elsewhere([*names, "request:free"]) == set(names)
