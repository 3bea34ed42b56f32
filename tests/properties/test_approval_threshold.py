"""Property: `approvals_required: N` grants exactly when N distinct allowed people approved before any deny.

Hypothesis drives the real AccessEngine on a real SQLite file (the real ApprovalRepo) through random
click sequences: approvers, the requester (listed as an approver, with allow_self_approval), someone
who may not decide, repeats, Approve and Deny in any order, and bursts of clicks at once. Checked:

1. In a sequence of single clicks, the outcome is exactly the model's: the request is granted once
   N distinct approvers other than the requester (the requester counts only when N is 1) approved
   before any allowed Deny; denied by the first allowed Deny before that; else still pending.
2. Whatever arrives at once: at most one grant call, approvals are distinct, never the requester
   when N > 1, and a granted request has at least N approvals; a denied one has fewer.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import load_config
from core.errors import NotAllowed
from core.models import MessageRef
from core.models import RequestStatus as S
from storage.db import Store
from strategies.registry import INTEGRATION_TYPES
from tests.databases import DatabaseSource
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import build_engine
from tests.fakes.faulty import FakeDirectory, FakeTimers, FaultyNotifier
from tests.fakes.strategy import TEST_STRATEGY_TYPES, FakeStrategy
from tests.properties.conftest import property_settings

REQUESTER = "U_ALICE"
APPROVERS = ("U_A1", "U_A2", "U_A3", "U_A4")
OUTSIDER = "U_X"
PEOPLE = {p: (f"{p.lower()}@example.com", "member") for p in (REQUESTER, *APPROVERS, OUTSIDER)}
CLICKERS = (REQUESTER, *APPROVERS, OUTSIDER)

# Each example builds a database and an engine (~30 ms): a smaller budget than the big stateful test.
SETTINGS = settings(property_settings(), max_examples=min(property_settings().max_examples, 80))

click = st.tuples(st.sampled_from(("approve", "deny")), st.sampled_from(CLICKERS))


def flows_yaml(required: int) -> str:
    flow = {
        "name": "db",
        "label": "DB",
        "approval_channel": "C_APPROVALS",
        "approvers": {"users": [REQUESTER, *APPROVERS]},
        "allow_self_approval": True,
        "approvals_required": required,
        "strategy": {"type": "fake", "targets": [{"name": "prod", "label": "Prod"}]},
        "fields": [{"name": "duration", "label": "Duration", "type": "duration", "allowed_values": ["1h"]}],
    }
    flow["fields"][0]["required"] = True
    return yaml.safe_dump({"flows": [flow]}, sort_keys=False)


async def run(
    engine_source: DatabaseSource, required: int, groups: list[list[tuple[str, str]]]
) -> tuple[S, tuple[str, ...], int]:
    """Submit one request, play the click groups (each group at once), return (status, approvals, grants)."""
    folder = Path(tempfile.mkdtemp(prefix="jitbot-threshold-"))
    try:
        (folder / "flows.yaml").write_text(flows_yaml(required))
        config = load_config(
            folder / "flows.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=INTEGRATION_TYPES
        )
        where = engine_source.new(folder, "jit.db")
        store = await Store.open(where)
        clock, directory, notifier = FrozenClock(), FakeDirectory(PEOPLE, {}), FaultyNotifier()
        strategy = FakeStrategy()
        engine = build_engine(
            store,
            config,
            strategies={"db": strategy},
            notifier=notifier,
            directory=directory,
            clock=clock,
            timers=FakeTimers(),
        )
        try:
            draft = await engine.prepare("db", REQUESTER, "prod", {}, timedelta(hours=1))
            request = await engine.submit(draft)
            source = MessageRef(request.approval_channel, request.message_ts)

            async def one(action: str, actor: str) -> None:
                try:
                    await getattr(engine, action)(request.id, actor, source=source)
                except NotAllowed:
                    pass

            for group in groups:
                await asyncio.gather(*(one(action, actor) for action, actor in group))
            final = await engine.requests.get(request.id)
            return final.status, final.approvals, len(strategy.calls_of("grant"))
        finally:
            await store.close()
            engine_source.drop(where)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def model(required: int, clicks: list[tuple[str, str]]) -> tuple[S, tuple[str, ...]]:
    counted: list[str] = []
    for action, actor in clicks:
        if actor == OUTSIDER:
            continue  # not an approver: refused, nothing changes
        if action == "deny":  # the requester's own Deny withdraws the request (docs/slack-behaviour.md)
            return (S.CANCELLED if actor == REQUESTER else S.DENIED), tuple(counted)
        if actor == REQUESTER and required > 1:
            continue  # the requester's approval never counts towards several
        if actor not in counted:
            counted.append(actor)
        if len(counted) >= required:
            return S.GRANTED, tuple(counted) if required > 1 else ()
    return S.PENDING, tuple(counted)


@SETTINGS
@given(required=st.integers(1, 3), clicks=st.lists(click, max_size=8))
def test_single_clicks_grant_exactly_when_the_model_says(database_source, required, clicks):
    status, approvals, grants = asyncio.run(run(database_source, required, [[c] for c in clicks]))
    expected_status, expected_approvals = model(required, clicks)
    assert status is expected_status
    assert grants == (1 if status is S.GRANTED else 0)
    if required > 1:
        assert approvals == expected_approvals


@SETTINGS
@given(required=st.integers(2, 3), groups=st.lists(st.lists(click, min_size=1, max_size=4), max_size=4))
def test_clicks_at_once_never_grant_twice_nor_count_anyone_twice(database_source, required, groups):
    status, approvals, grants = asyncio.run(run(database_source, required, groups))
    assert grants <= 1 and len(set(approvals)) == len(approvals) and REQUESTER not in approvals
    assert (status is S.GRANTED) == (grants == 1)
    if status is S.GRANTED:
        assert len(approvals) >= required
    else:
        assert len(approvals) < required
