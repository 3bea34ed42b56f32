"""Stateful property test: random lifecycles with injected faults must never leave access unaccounted for.

Hypothesis drives the real AccessEngine (revoke / expire / recover / sweep included) on the real
store (a SQLite file), the real HookRunner with a real hooks file, fake target systems, a fake Slack
and a frozen clock, through steps a busy day produces: submits by several people into flows with and
without static approvers and with a hooks file that can raise, hang past hook_timeout, return
nonsense or []; the same person asking again (overlapping requests); Approve / Deny clicks by
approvers, requesters, members, guests and people from other organisations; the clock moving; timers
firing; sweeps; restarts (a new engine on the same database, then recover()); and faults: the next
grant / revoke failing (retryable, not retryable, an adapter bug, after taking effect, or "landing
late" after the call failed), database write outages, Slack calls failing. After every step it checks:

 1. Whoever holds access in a target system holds it through a live `granted` record for that
    (person, target); and the converse: a live `granted` record's access is really there.
 2. After a sweep, nothing is held only through records that are past their end.
 3. Every grant had an allowed decider: a static approver, a hook-named approver, or the flow's
    on_request hook; never the requester (without allow_self_approval), a member who is not
    allowed, a guest or someone from another organisation. (Extra: never after request_timeout.)
 4. Every status change has its audit row: each request's audited status path is unbroken and
    ends at its current status.

1 and 2 are judged "after the clean-up has settled": when a check would fail, the faults are healed,
the clock is moved past the revoke back-off a few times with a sweep each time, and only what is
still wrong then is a violation. Where a failed get_approvers leaves a flow without static approvers,
the model says nobody may approve (fail closed); a clicked request must have a channel message.

Each kind of violation is its own exception class, so Hypothesis reports (and shrinks) each one
separately. `build_engine` is the one place that knows how the engine is constructed, and
`decide` how a click reaches it: adapt those two when the engine's API changes.

    .venv/bin/python -m pytest tests/properties -p no:cacheprovider --hypothesis-show-statistics
    JITBOT_HYPOTHESIS_PROFILE=jitbot-deep .venv/bin/python -m pytest tests/properties --hypothesis-seed=3
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from core.config import load_config
from core.engine import AccessEngine
from core.event_loop import new_event_loop
from core.expiry import revoke_backoff
from core.hooks import load_hooks
from core.models import AccessRequest, AuditEvent
from core.models import RequestStatus as S
from storage.audit import row_to_event
from storage.request_rows import FIELDS, row_to_request
from storage.requests import RequestRepo
from strategies.registry import INTEGRATION_TYPES
from tests.databases import DatabaseSource
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import build_engine as engine_on
from tests.fakes.faulty import (
    GRANT_FAULTS,
    REVOKE_FAULTS,
    FakeDirectory,
    FakeTimers,
    FaultyNotifier,
    FaultyStore,
    FaultyStrategy,
    TargetFaults,
    heal,
)
from tests.fakes.strategy import TEST_STRATEGY_TYPES
from tests.properties.conftest import property_settings

# ── the world: people, flows, hooks ──────────────────────────────────────────────────────────────

MEMBERS = ("U_ALICE", "U_BOB", "U_APP1", "U_APP2", "U_HOOKAPP")
GUEST, EXTERNAL = "U_GUEST", "U_EXT"
PEOPLE = {
    "U_ALICE": ("alice@example.com", "member"),
    "U_BOB": ("bob@example.com", "member"),
    "U_APP1": ("app1@example.com", "member"),  # a static approver
    "U_APP2": ("app2@example.com", "member"),  # a static approver through the user group
    "U_HOOKAPP": ("hookapp@example.com", "member"),  # the approver get_approvers names
    GUEST: ("guest@partner.example", "guest"),  # a guest account of the workspace
    EXTERNAL: ("ext@other.example", "external"),  # a Slack Connect user from another organisation
}
IDENTITY_OF = {email: slack_id for slack_id, (email, _) in PEOPLE.items()}
GROUPS = {"S_APPROVERS": frozenset({"U_APP2"})}
STATIC_APPROVERS = frozenset({"U_APP1", "U_APP2"})
HOOK_APPROVER = "U_HOOKAPP"
REQUESTERS = ("U_ALICE", "U_BOB", "U_APP1")
CLICKERS = (*MEMBERS, GUEST, EXTERNAL)
TARGET = "prod"
HOOK_TIMEOUT = timedelta(milliseconds=50)
REQUEST_TIMEOUT = "15m"


@dataclass(frozen=True)
class FlowModel:
    """What the test believes about a flow: who may decide its requests."""

    static: frozenset[str] | None  # static approvers (users + group members), None when the flow names none
    hooks: bool = False
    self_ok: bool = False
    required: int = 1  # approvals_required


FLOWS = {
    "open": FlowModel(static=None),
    "static": FlowModel(static=STATIC_APPROVERS),
    "hooked": FlowModel(static=None, hooks=True),
    "hooked_static": FlowModel(static=STATIC_APPROVERS, hooks=True),
    "selfok": FlowModel(static=None, self_ok=True),
    # Two approvals from the static approvers, the requester never counting even where self-approval is
    # allowed: with asking again (extensions), Revoke now and clicks by everyone, this is where the
    # approval policy meets the life of access after approval.
    "pair": FlowModel(static=STATIC_APPROVERS, self_ok=True, required=2),
}
FLOW_NAMES = tuple(FLOWS)

# Hook behaviour travels in the request's own fields, so each request's hooks are deterministic and
# the model can tell, from the stored row, what its hooks did.
ON_REQUEST = ("none", "approve", "deny", "raise", "hang", "nonsense", "approve_then_raise")
GET_APPROVERS = ("none", "named", "requester", "empty", "raise", "hang", "nonsense")
ON_APPROVE = ("allow", "refuse", "raise", "hang", "nonsense")
AFTER = ("ok", "raise", "hang")
HOOK_DEFAULTS = {"on_request": "none", "get_approvers": "none", "on_approve": "allow", "after_grant": "ok"}
APPROVERS_FAILED = frozenset({"empty", "raise", "hang", "nonsense"})

HOOKS_FILE = '''\
"""Property-test hooks: each hook does what the request's fields say (see test_access_invariants.py)."""

import asyncio

HANG_SECONDS = 30  # far past the flow's hook_timeout


async def _act(evt, hook, default):
    mode = evt.fields.get(hook, default)
    if mode == "raise":
        raise RuntimeError(f"{hook} exploded")
    if mode == "hang":
        await asyncio.sleep(HANG_SECONDS)
    return mode


async def on_request(evt):
    mode = await _act(evt, "on_request", "none")
    if mode == "approve":
        return evt.approve("fast-tracked by policy")
    if mode == "deny":
        return evt.deny("denied by policy")
    if mode == "nonsense":
        return "yes, sure"
    if mode == "approve_then_raise":
        evt.approve("about to fail")
        raise RuntimeError("on_request failed after approving")
    return None


async def get_approvers(evt):
    mode = await _act(evt, "get_approvers", "none")
    if mode == "named":
        return ["U_HOOKAPP"]
    if mode == "requester":
        return [evt.user.slack_id]
    if mode == "empty":
        return []
    if mode == "nonsense":
        return [42, None]
    return None


async def on_approve(evt):
    mode = await _act(evt, "on_approve", "allow")
    if mode == "refuse":
        return evt.ignore("policy refuses approvals of this request")
    if mode == "nonsense":
        return 7
    return None


async def after_grant(evt):
    await _act(evt, "after_grant", "ok")


async def after_revoke(evt):
    await _act(evt, "after_grant", "ok")
'''


def _flows_yaml() -> str:
    duration = {
        "name": "duration",
        "label": "Duration",
        "type": "duration",
        "allowed_values": ["10m", "1h"],
        "required": True,
    }
    flows = []
    for name, model in FLOWS.items():
        flow: dict[str, Any] = {
            "name": name,
            "label": name.replace("_", " ").title(),
            "approval_channel": "C_APPROVALS",
            "request_timeout": REQUEST_TIMEOUT,
            "strategy": {"type": "fake", "targets": [{"name": TARGET, "label": "Prod"}]},
            "fields": [duration, {"name": "reason", "label": "Reason", "type": "string"}],
        }
        if model.static is not None:
            flow["approvers"] = {"users": ["U_APP1"], "usergroups": ["S_APPROVERS"]}
        if model.self_ok:
            flow["allow_self_approval"] = True
        if model.required > 1:
            flow["approvals_required"] = model.required
        if model.hooks:
            flow["hooks"] = "hooks.py"
            flow["hook_timeout"] = "1s"  # the file format's smallest; lowered to HOOK_TIMEOUT below
        flows.append(flow)
    return yaml.safe_dump({"slack": {"alerts_channel": "C_ALERTS"}, "flows": flows}, sort_keys=False)


SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # a tmpfs makes each fsync free


@dataclass
class Assets:
    config: Any
    hooks_path: Path


_assets: Assets | None = None


def assets() -> Assets:
    """The flows file and hooks file, written and loaded once per process."""
    global _assets
    if _assets is None:
        folder = Path(tempfile.mkdtemp(prefix="jitbot-props-assets-", dir=SCRATCH))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        (folder / "hooks.py").write_text(HOOKS_FILE)
        (folder / "flows.yaml").write_text(_flows_yaml())
        config = load_config(
            folder / "flows.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=INTEGRATION_TYPES
        )
        flows = [f.model_copy(update={"hook_timeout": HOOK_TIMEOUT}) if f.hooks else f for f in config.flows]
        _assets = Assets(config.model_copy(update={"flows": flows}), folder / "hooks.py")
    return _assets


@dataclass
class World:
    """Everything outside the engine; it survives restarts (the database file, the target systems, Slack)."""

    config: Any
    hooks_path: Path
    clock: FrozenClock
    db_path: Path | str  # a SQLite file or a postgresql:// URL (tests/databases.py)
    strategies: dict[str, FaultyStrategy]
    notifier: FaultyNotifier
    directory: FakeDirectory
    timers: FakeTimers
    store: FaultyStore | None = None
    hook_modules: list[Any] = field(default_factory=list)


def build_engine(world: World) -> AccessEngine:
    """The world's engine, put together by the tests' one factory (tests/fakes/engine.py), with each
    hooked flow's hooks file loaded afresh."""
    modules = {}
    for flow in world.config.flows:
        if flow.hooks:
            modules[flow.name] = load_hooks(world.hooks_path, timeout=flow.hook_timeout.total_seconds())
    world.hook_modules.extend(modules.values())
    return engine_on(
        world.store,
        world.config,
        strategies=world.strategies,
        notifier=world.notifier,
        directory=world.directory,
        clock=world.clock,
        hook_modules=modules,
        timers=world.timers,
    )


def decide(engine: AccessEngine, action: str, request: AccessRequest, actor: str) -> Awaitable[Any]:
    """A click on the request's channel message (engines that take the message get it as `source`)."""
    method = getattr(engine, action)
    kwargs: dict[str, Any] = {}
    if "source" in inspect.signature(method).parameters:
        from core.models import MessageRef  # only engines that check the message have it

        kwargs["source"] = MessageRef(channel=request.approval_channel, ts=request.message_ts)
    return method(request.id, actor, **kwargs)


# ── violations: one class per kind, so Hypothesis reports and shrinks each separately ────────────


class InvariantViolation(AssertionError):
    """An access invariant does not hold."""


class AccessWithoutGrant(InvariantViolation):
    """Invariant 1: someone holds access with no `granted` record for it (after the clean-up settled)."""


class GrantedWithoutAccess(InvariantViolation):
    """Invariant 1, converse: a live `granted` record whose access is not in the target system."""


class AccessPastItsEnd(InvariantViolation):
    """Invariant 2: after a sweep (and settling), access is held only through records past their end."""


class DeciderNotAllowed(InvariantViolation):
    """Invariant 3: a grant was decided by someone who may not decide it."""


class SelfApproval(DeciderNotAllowed):
    pass


class GuestDecided(DeciderNotAllowed):
    pass


class ExternalDecided(DeciderNotAllowed):
    pass


class DecidedAfterTimeout(DeciderNotAllowed):
    """Extra to the four: an approval accepted after the request's request_timeout had passed."""


class AuditTrailBroken(InvariantViolation):
    """Invariant 4: a status change without its audit row."""


_subclasses: dict[tuple[type, str], type] = {}


def violation(base: type, kind: str) -> type:
    """A subclass of `base` named for `kind` (e.g. AccessWithoutGrant_failed): a distinct failure to Hypothesis."""
    key = (base, kind)
    if key not in _subclasses:
        _subclasses[key] = type(f"{base.__name__}_{kind}", (base,), {"__module__": __name__})
    return _subclasses[key]


# ── the model: who may decide ────────────────────────────────────────────────────────────────────


def hook_plan(request: AccessRequest) -> dict[str, str]:
    return {hook: str(request.fields.get(hook, default)) for hook, default in HOOK_DEFAULTS.items()}


@dataclass(frozen=True)
class Deciders:
    humans: frozenset[str]
    hook_may_approve: bool
    basis: str  # which rule decided `humans`, named in a violation


def allowed_deciders(request: AccessRequest, failed_hooks: set[str], *, on_approve: bool = True) -> Deciders:
    """Who may have approved `request`, from its flow and what its hooks did (failed_hooks: from the audit);
    with on_approve=False, who may approve it as far as approvers go (Revoke now runs no on_approve hook)."""
    model = FLOWS[request.flow]
    plan = hook_plan(request)
    base = model.static if model.static is not None else frozenset(MEMBERS)
    basis = "static" if model.static is not None else "open"
    hook_may_approve = False
    if model.hooks:
        hook_may_approve = plan["on_request"] == "approve" and "on_request" not in failed_hooks
        mode = plan["get_approvers"]
        if mode in APPROVERS_FAILED or "get_approvers" in failed_hooks:
            # Fail closed: the flow's static approvers, and with none, nobody.
            base, basis = (model.static or frozenset()), "get_approvers_failed"
        elif mode == "named":
            base, basis = frozenset({HOOK_APPROVER}), "hook_list"
        elif mode == "requester":
            base, basis = frozenset({request.requester}), "hook_list"
        if plan["on_approve"] != "allow" and on_approve:
            base, basis = frozenset(), "on_approve_refuses"
    humans = base & frozenset(MEMBERS)
    if not model.self_ok:
        humans -= {request.requester}
    return Deciders(humans, hook_may_approve, basis)


# ── statistics ───────────────────────────────────────────────────────────────────────────────────

STATS = {"examples": 0, "steps": 0, "longest": 0, "settles": 0, "seconds": 0.0}
"""Totals over every state machine this process ran (shrinking included); conftest prints them at the end."""


@pytest.fixture(scope="module", autouse=True)
def time_the_run():
    started = time.monotonic()
    yield
    STATS["seconds"] += time.monotonic() - started


# ── the state machine ────────────────────────────────────────────────────────────────────────────

STEP_LIMIT = 20.0  # real seconds one engine call may take before the test calls it hung
SETTLE_ROUNDS = 4
BACKOFF_CAP = revoke_backoff(64)  # the revoke back-off's ceiling (5 minutes)
CLOCK_STEPS = {
    "1s": timedelta(seconds=1),
    "45s": timedelta(seconds=45),
    "5m": timedelta(minutes=5),
    "16m": timedelta(minutes=16),
    "61m": timedelta(minutes=61),
}
DURATIONS = {"10m": timedelta(minutes=10), "1h": timedelta(hours=1)}
PLANS = st.fixed_dictionaries(
    {
        "on_request": st.sampled_from(ON_REQUEST),
        "get_approvers": st.sampled_from(GET_APPROVERS),
        "on_approve": st.sampled_from(ON_APPROVE),
        "after_grant": st.sampled_from(AFTER),
    }
)
# ("target", op, fault): the next grant / revoke in any target system misbehaves;
# ("database", good writes first, failing writes): a write outage; ("slack", operation): one Slack call fails.
FAULTS = st.one_of(
    st.sampled_from(
        tuple([("target", "grant", f) for f in GRANT_FAULTS] + [("target", "revoke", f) for f in REVOKE_FAULTS])
    ),
    # a blip, an outage longer than any engine's own retries, a long one; starting at one of the next 4 writes
    st.tuples(st.just("database"), st.integers(min_value=0, max_value=3), st.sampled_from((1, 5, 20))),
    st.tuples(st.just("slack"), st.sampled_from((*FaultyNotifier.OPS, *FakeDirectory.OPS))),
)
BACKGROUND = ("sweep", "fire_timers", "restart", "grants_land", "settle")


class Click(NamedTuple):
    """A click on a request's message: `request` counts back from the newest request (0 is the newest,
    1 the one before, modulo their number), `clicker` is who clicks."""

    request: int
    clicker: str


class EngineHung(InvariantViolation):
    """An engine call did not finish within STEP_LIMIT real seconds."""


class AccessMachine(RuleBasedStateMachine):
    """One bot's life: see the module docstring."""

    # The session's engine, set for each test by `machines_on_the_session_engine` (a unittest case has no fixtures).
    database_source: DatabaseSource = DatabaseSource()

    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        self.steps = 0
        self.loop = new_event_loop()  # the loop the bot runs on
        self.tmp = Path(tempfile.mkdtemp(prefix="jitbot-props-", dir=SCRATCH))
        clock = FrozenClock()
        shared = assets()
        self.target_faults = TargetFaults()  # one queue: the next grant / revoke anywhere takes the next fault
        self.world = World(
            config=shared.config,
            hooks_path=shared.hooks_path,
            clock=clock,
            db_path=self.database_source.new(self.tmp),
            strategies={
                f.name: FaultyStrategy(f.strategy, clock=clock, faults=self.target_faults) for f in shared.config.flows
            },
            notifier=FaultyNotifier(),
            directory=FakeDirectory(PEOPLE, GROUPS),
            timers=FakeTimers(),
        )
        self.world.store = self.run(FaultyStore.open(self.world.db_path))
        self.engine = build_engine(self.world)
        self.swept = False  # a sweep ran since the clock last moved: invariant 2 applies
        self.ids: list[str] = []  # every request created so far, in order: clicks pick one by index

    # plumbing

    @property
    def clock(self) -> FrozenClock:
        return self.world.clock

    def run(self, awaitable: Awaitable[Any]) -> Any:
        async def bounded():
            try:
                return await asyncio.wait_for(awaitable, STEP_LIMIT)
            except TimeoutError:
                raise EngineHung(f"an engine call took more than {STEP_LIMIT}s") from None

        return self.loop.run_until_complete(bounded())

    def call(self, what: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run an engine operation as the bot would (a failure is logged by its caller, not fatal)."""
        try:
            return self.run(make())
        except EngineHung:
            raise
        except Exception as exc:
            note(f"  ({what} raised {type(exc).__name__}: {exc})")
            return None

    def rows(self) -> list[AccessRequest]:
        return self.snapshot()[0]

    def snapshot(self) -> tuple[list[AccessRequest], list[AuditEvent]]:
        """Every request and every audit row, in one read."""

        def read(db):
            rows = db.execute(f"SELECT {', '.join(FIELDS)} FROM requests ORDER BY created_at, id").fetchall()
            audits = db.execute(
                "SELECT id, at, request_id, actor, action, status_from, status_to, detail FROM audit_events ORDER BY id"
            ).fetchall()
            return [row_to_request(r) for r in rows], [row_to_event(a) for a in audits]

        return self.run(self.world.store.inner.read(read))

    def step(self) -> None:
        self.steps += 1
        STATS["steps"] += 1
        STATS["longest"] = max(STATS["longest"], self.steps)

    def fakes(self) -> list[Any]:
        return [*self.world.strategies.values(), self.world.store, self.world.notifier, self.world.directory]

    def land(self, everything: bool = False) -> None:
        for strategy in self.world.strategies.values():
            strategy.land(everything=everything)

    def fire_due_timers(self) -> None:
        for kind, request_id in self.world.timers.due(self.clock.now()):
            method = getattr(self.engine, kind, None)
            if method is not None:
                self.call(f"timer {kind}({request_id})", lambda m=method, r=request_id: m(r))

    def arm_window(self) -> None:
        """What core.scheduler.Scheduler.arm_window does after a sweep or a start (without a horizon)."""
        repo = RequestRepo(self.world.store.inner)
        for request_id, expires_at, next_attempt_at in self.run(repo.list_granted_schedule()):
            self.world.timers.arm_revoke(request_id, max(expires_at, next_attempt_at or expires_at))
        for request_id, timeout_at in self.run(repo.list_pending_timeouts(self.clock.now() + timedelta(days=365))):
            self.world.timers.arm_expire(request_id, timeout_at)

    def sweep_now(self) -> None:
        self.call("sweep()", self.engine.sweep)
        self.arm_window()

    def settle(self) -> None:
        """Let the clean-up settle: faults heal, then the clock passes the back-off, with a sweep each time."""
        STATS["settles"] += 1
        heal(*self.fakes())
        for _ in range(SETTLE_ROUNDS):
            self.clock.advance(seconds=BACKOFF_CAP + 1)
            self.land()
            self.fire_due_timers()
            self.sweep_now()
        self.swept = True

    # ── rules ────────────────────────────────────────────────────────────────────────────────

    # Every run starts with a request: Hypothesis' swarm testing switches random rules off for a whole
    # run, and a run whose `submit` is off would otherwise never create anything to decide.
    @initialize(
        requester=st.sampled_from(REQUESTERS),
        flow=st.sampled_from(FLOW_NAMES),
        duration=st.sampled_from(tuple(DURATIONS)),
        plan=PLANS,
    )
    def first_submit(self, requester, flow, duration, plan):
        self.step()
        self._submit(requester, flow, duration, plan)

    @rule(
        requester=st.sampled_from(REQUESTERS),
        flow=st.sampled_from(FLOW_NAMES),
        duration=st.sampled_from(tuple(DURATIONS)),
        plan=PLANS,
    )
    def submit(self, requester, flow, duration, plan):
        self.step()
        self._submit(requester, flow, duration, plan)

    # Someone asks again for what they asked before (an extension, a retry after a denial): the
    # way overlapping requests for one person and one target arise.
    @precondition(lambda self: self.ids)
    @rule(request=st.integers(min_value=0, max_value=7), duration=st.sampled_from(tuple(DURATIONS)))
    def ask_again(self, request, duration):
        self.step()
        earlier = self.run(RequestRepo(self.world.store.inner).get(self.ids[-1 - request % len(self.ids)]))
        self._submit(earlier.requester, earlier.flow, duration, hook_plan(earlier))

    def _submit(self, requester: str, flow: str, duration: str, plan: dict[str, str]) -> None:
        fields = {"duration": duration, "reason": "property test"}
        if FLOWS[flow].hooks:
            fields.update(plan)
        before = {r.id for r in self.rows()}

        async def go():
            draft = await self.engine.prepare(flow, requester, TARGET, fields, DURATIONS[duration])
            return await self.engine.submit(draft)

        self.call(f"submit({requester}, {flow})", go)
        created = [r.id for r in self.rows() if r.id not in before]
        self.ids.extend(created)
        note(f"  (submit {requester} {flow}: created {', '.join(created) or 'nothing'})")

    def _click(self, action: str, pick: int, clicker: str) -> None:
        self.step()
        request_id = self.ids[-1 - pick % len(self.ids)]
        request = self.run(RequestRepo(self.world.store.inner).get(request_id))
        if request.message_ts is None:
            note(f"  ({action} {clicker}: {request_id} has no channel message, so nobody can click it)")
            return
        self.call(f"{action}({request_id}, {clicker})", lambda: decide(self.engine, action, request, clicker))

    # Hypothesis orders rules by their number of arguments, then name, and draws the first one far more
    # often than the others: that is `approve` (one argument), so clicks are the commonest step.
    @precondition(lambda self: self.ids)
    @rule(click=st.builds(Click, request=st.integers(min_value=0, max_value=7), clicker=st.sampled_from(CLICKERS)))
    def approve(self, click):
        self._click("approve", click.request, click.clicker)

    # The same click again, from the people who are usually allowed: a second rule so that approvals
    # (and so grants, revocations and their failures) are common in a 30-step run.
    # `request` counts back from the newest request (modulo their number): 0 is the newest, 1 the one before.
    @precondition(lambda self: self.ids)
    @rule(request=st.integers(min_value=0, max_value=7), clicker=st.sampled_from(("U_APP1", "U_APP2", HOOK_APPROVER)))
    def approve_as_approver(self, request, clicker):
        self._click("approve", request, clicker)

    @precondition(lambda self: self.ids)
    @rule(request=st.integers(min_value=0, max_value=7), clicker=st.sampled_from(CLICKERS))
    def deny(self, request, clicker):
        self._click("deny", request, clicker)

    # After approval: anyone may press Revoke now (the requester and approvers may), and Cancel request.
    @precondition(lambda self: self.ids)
    @rule(request=st.integers(min_value=0, max_value=7), clicker=st.sampled_from(CLICKERS))
    def revoke_now(self, request, clicker):
        self._click("revoke_now", request, clicker)

    @precondition(lambda self: self.ids)
    @rule(request=st.integers(min_value=0, max_value=7), clicker=st.sampled_from(CLICKERS))
    def cancel(self, request, clicker):
        self._click("cancel", request, clicker)

    @rule(by=st.sampled_from(tuple(CLOCK_STEPS)))
    def time_passes(self, by):
        self.step()
        self.clock.advance(CLOCK_STEPS[by])
        self.land()  # the target systems apply what was in flight, on their own time
        self.swept = False

    @rule(job=st.sampled_from(BACKGROUND))
    def background(self, job):
        """What happens on its own: the periodic sweep; due timers firing; the bot restarting; every
        grant still in flight landing at its target now; or everything pending running until it settles."""
        self.step()
        if job == "sweep":
            self.sweep_now()
            self.swept = True
        elif job == "fire_timers":
            self.fire_due_timers()
        elif job == "restart":
            self.restart()
        elif job == "grants_land":
            self.land(everything=True)
        else:
            self.settle()

    def restart(self) -> None:
        """The process dies between steps; a new one opens the same database and recovers."""
        self.run(self.world.store.close())
        self.world.timers.clear()  # in-memory timers die with the process
        for attempt in range(3):  # a start that fails is restarted by the supervisor
            self.world.store = self.run(FaultyStore.open(self.world.db_path))
            self.engine = build_engine(self.world)
            if self.call(f"recover() attempt {attempt + 1}", self.engine.recover) is not None:
                self.swept = True
                break
            self.run(self.world.store.close())
        else:
            self.world.store = self.run(FaultyStore.open(self.world.db_path))
            self.engine = build_engine(self.world)
        self.arm_window()

    @rule(fault=FAULTS)
    def inject_fault(self, fault):
        """Arm one fault: it fires on the next matching call(s); see FAULTS."""
        self.step()
        if fault[0] == "target":
            self.target_faults.script(fault[1], fault[2])
        elif fault[0] == "database":
            self.world.store.fail_write(skip=fault[1], count=fault[2])
        elif fault[1] in FaultyNotifier.OPS:
            self.world.notifier.fail_next(fault[1])
        else:
            self.world.directory.fail_next(fault[1])

    # ── invariants ───────────────────────────────────────────────────────────────────────────

    @invariant()
    def access_is_accounted_for(self):
        rows, audits = self.snapshot()
        self.check_audit_trail(rows, audits)
        self.check_deciders(rows, audits)
        orphans, overdue, missing = self.holdings_report(rows)
        if missing:
            self.fail_missing(missing)
        if orphans or (overdue and self.swept):
            note(
                f"  (invariant: settling the clean-up; access without a grant {sorted(orphans)}, "
                f"past its end {sorted(overdue)})"
            )
            self.settle()
            rows, audits = self.snapshot()
            orphans, overdue, missing = self.holdings_report(rows)
            for key in sorted(orphans):
                self.fail_orphan(key, rows)
            if overdue:
                raise AccessPastItsEnd(self.describe("held only through records past their end", overdue, rows))
            if missing:
                self.fail_missing(missing)
            self.check_audit_trail(rows, audits)
            self.check_deciders(rows, audits)
        self.check_decided_in_time(rows)

    def check_decided_in_time(self, rows: list[AccessRequest]) -> None:
        """The extra check, last so that it never hides one of the four."""
        for r in rows:
            if (
                r.status in (S.APPROVED, S.GRANTED, S.REVOKED, S.FAILED)
                and r.timeout_at is not None
                and r.decided_at is not None
                and r.decided_at > r.timeout_at
            ):
                raise DecidedAfterTimeout(
                    f"request {r.id} ({r.flow}) was approved by {r.decided_by} at "
                    f"{r.decided_at:%H:%M:%S}, after its request_timeout ran out at "
                    f"{r.timeout_at:%H:%M:%S}"
                )

    def holdings_report(self, rows: list[AccessRequest]):
        now = self.clock.now()
        held = {
            (flow, identity, target)
            for flow, strategy in self.world.strategies.items()
            for identity, target in strategy.holdings
        }
        granted: dict[tuple[str, str, str], list[AccessRequest]] = defaultdict(list)
        for r in rows:
            if r.status is S.GRANTED:
                granted[(r.flow, r.requester_email, r.target)].append(r)
        orphans = {key for key in held if not granted.get(key)}
        overdue = {key for key in held if granted.get(key) and all(r.expires_at <= now for r in granted[key])}
        missing = [r for key, records in granted.items() if key not in held for r in records if r.expires_at > now]
        return orphans, overdue, missing

    def describe(self, what: str, keys, rows: list[AccessRequest]) -> str:
        lines = [f"{what} at {self.clock.now():%H:%M:%S}:"]
        for flow, identity, target in sorted(keys):
            lines.append(f"  {IDENTITY_OF.get(identity, identity)} holds {flow}/{target}; its records:")
            for r in rows:
                if (r.flow, r.requester_email, r.target) == (flow, identity, target):
                    lines.append(
                        f"    {r.id} {r.status.value} expires_at={r.expires_at} next_attempt_at="
                        f"{r.next_attempt_at} decided_by={r.decided_by}"
                    )
        return "\n".join(lines)

    def fail_orphan(self, key, rows: list[AccessRequest]) -> None:
        flow, identity, target = key
        # Named for the newest request of that access that was approved (denied or expired ones never grant).
        approved = (S.APPROVED, S.GRANTED, S.REVOKED, S.FAILED)
        mine = [r for r in rows if (r.flow, r.requester_email, r.target) == key and r.status in approved]
        latest = max(mine, key=lambda r: (r.decided_at or r.created_at, r.id)).status.value if mine else "none"
        raise violation(AccessWithoutGrant, latest)(
            self.describe(f"access without a live granted record (newest approved record: {latest})", [key], rows)
        )

    def fail_missing(self, missing: list[AccessRequest]) -> None:
        text = "; ".join(f"{r.id} ({r.requester} {r.flow}/{r.target}, until {r.expires_at:%H:%M:%S})" for r in missing)
        raise GrantedWithoutAccess(f"live granted records whose access is gone from the target: {text}")

    def check_deciders(self, rows: list[AccessRequest], audits: list[AuditEvent]) -> None:
        failed_hooks: dict[str, set[str]] = defaultdict(set)
        for e in audits:
            if e.action == "hook.failed" and e.request_id:
                failed_hooks[e.request_id].add(str(e.detail.get("hook")))
        for r in rows:
            if r.status is S.CANCELLED and r.decided_by != r.requester:
                raise violation(DeciderNotAllowed, "cancel")(f"request {r.id} was cancelled by {r.decided_by}")
            if r.revoked_by is not None and r.revoked_by != r.requester:
                ended_by = allowed_deciders(r, failed_hooks[r.id], on_approve=False)
                if r.revoked_by not in ended_by.humans:
                    raise violation(DeciderNotAllowed, "revoke_now")(
                        f"request {r.id} was ended early by {r.revoked_by}; allowed: {sorted(ended_by.humans)}"
                    )
            if r.status not in (S.APPROVED, S.GRANTED, S.REVOKED, S.FAILED):
                continue
            who = r.decided_by
            allowed = allowed_deciders(r, failed_hooks[r.id])
            where = (
                f"request {r.id} ({r.flow}, by {r.requester}, hooks {hook_plan(r) if FLOWS[r.flow].hooks else '-'})"
                f" is {r.status.value}, approved by {who}; allowed: {sorted(allowed.humans)}"
                f"{' + on_request' if allowed.hook_may_approve else ''} ({allowed.basis})"
            )
            if who is None:
                raise violation(DeciderNotAllowed, "nobody")(where)
            if who.startswith("hook:"):
                if not (who.endswith(":on_request") and allowed.hook_may_approve):
                    raise violation(DeciderNotAllowed, "hook")(where)
                continue
            required = FLOWS[r.flow].required
            if required > 1:
                # N distinct approvals, every one from someone allowed, never the requester's own.
                counted = set(r.approvals)
                if len(counted) < required or r.requester in counted or not counted <= allowed.humans:
                    raise violation(DeciderNotAllowed, "threshold")(f"{where}; approvals counted: {sorted(counted)}")
            if who in allowed.humans:
                continue
            if who == r.requester and not FLOWS[r.flow].self_ok:
                raise SelfApproval(where)
            if who == GUEST:
                raise GuestDecided(where)
            if who == EXTERNAL:
                raise ExternalDecided(where)
            raise violation(DeciderNotAllowed, allowed.basis)(where)

    def check_audit_trail(self, rows: list[AccessRequest], audits: list[AuditEvent]) -> None:
        paths: dict[str, list[AuditEvent]] = defaultdict(list)
        for e in audits:
            if e.request_id and e.status_to is not None:
                paths[e.request_id].append(e)
        for r in rows:
            path = paths[r.id]
            shown = " -> ".join(f"{e.status_from}>{e.status_to}" for e in path)
            if not path or path[0].status_from is not None or path[0].status_to != S.PENDING.value:
                raise violation(AuditTrailBroken, "no_creation")(f"request {r.id}: audited path [{shown}]")
            for before, after in zip(path, path[1:], strict=False):
                if after.status_from != before.status_to:
                    raise violation(AuditTrailBroken, "gap")(f"request {r.id}: audited path [{shown}]")
            if path[-1].status_to != r.status.value:
                raise violation(AuditTrailBroken, "ends_elsewhere")(
                    f"request {r.id} is {r.status.value} but its audited path is [{shown}]"
                )

    def teardown(self):
        event(f"steps per example: {(self.steps // 10) * 10}-{(self.steps // 10) * 10 + 9}")
        try:
            if self.world.store is not None and not self.world.store.closed:
                self.run(self.world.store.close())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            self.loop.close()
            self.database_source.drop(self.world.db_path)
            shutil.rmtree(self.tmp, ignore_errors=True)
            for module in self.world.hook_modules:
                sys.modules.pop(module.module.__name__, None)


@pytest.fixture(autouse=True)
def machines_on_the_session_engine(database_source: DatabaseSource, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis runs the machine as a unittest case, without fixtures: it takes the session's engine from here."""
    monkeypatch.setattr(AccessMachine, "database_source", database_source)


AccessMachine.TestCase.settings = property_settings()
TestAccessInvariants = AccessMachine.TestCase
