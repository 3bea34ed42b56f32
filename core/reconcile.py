"""Drift reconciliation: compare who holds each target in its system with the live grants.

A flow with `reconcile: {every, action, exempt}` whose strategy `SupportsHolders` is checked every
`every` (the last run is stored, so the schedule survives restarts; the scheduler ticks each
minute and runs what is due). For each target, anyone the target system lists as holding it who
has no live grant of the same access (of any flow) and is not exempt is a *finding*:

- it is recorded with its audit row (`drift.found`) and alerted once; a finding stays open while
  the holder keeps the access, and is resolved (`drift.resolved`) when they no longer hold it,
  get a live grant, or become exempt; the same holder coming back later is a new finding;
- with `action: revoke` the holder is removed (`drift.removed`); a removal that fails is alerted
  once (`drift.remove_failed`) and tried again on every run;
- a listing that fails is alerted (once per run of failures, `drift.listing_failed`) and treated as
  knowing nothing: no finding is opened, resolved or acted on.

Live grants are read before and after each listing, and their union is what covers a holder, so a
grant made or revoked while the listing runs never turns its holder into a finding. Removal reads
them once more right before it acts. What remains is a grant approved in the instant between that
read and the removal: its access is removed (fail closed), and its own revoke later finds it gone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from core.config_models import Flow, Reconcile
from core.lifecycle import SYSTEM, Lifecycle
from core.models import AuditEvent, Target
from core.strategy import Holder, Strategy, SupportsHolders
from core.targets import as_target, flow_target

log = structlog.get_logger("jitbot.reconcile")

RECONCILE_TICK_SECONDS = 60.0  # how often the scheduler asks which flows are due


@dataclass(frozen=True)
class Finding:
    """Someone holding an access without a live grant, as remembered between runs."""

    id: int
    access_key: str
    flow: str
    target: str
    holder: Holder
    found_at: datetime
    alerted_at: datetime | None = None
    removal_attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class LiveGrant:
    """A request that may hold access now (approved, granted, or a failed grant still being cleaned up)."""

    request_id: str
    flow: str
    target: str
    requester: str
    requester_email: str | None
    identity: str | None  # the identity recorded at approval, when there is one
    state: frozenset[str] = frozenset()  # the grant state's values (user ids in the target system)


class DriftStore(Protocol):
    """Where findings, run times and listing failures are remembered (storage.drift)."""

    async def last_run(self, flow: str) -> datetime | None: ...

    async def record_run(self, flow: str, at: datetime) -> None: ...

    async def live_grants(self, flows: Collection[str], request_ids: Collection[str]) -> list[LiveGrant]: ...

    async def open_findings(self, access_key: str) -> dict[str, Finding]: ...

    async def add_finding(
        self, access_key: str, flow: str, target: str, holder: Holder, at: datetime, audit: AuditEvent
    ) -> Finding: ...

    async def finding_alerted(self, finding_id: int, at: datetime) -> None: ...

    async def finding_removed(self, finding_id: int, at: datetime, audit: AuditEvent) -> None: ...

    async def removal_failed(self, finding_id: int, error: str, audit: AuditEvent | None) -> None: ...

    async def resolve(self, findings: Iterable[Finding], at: datetime, resolution: str, actor: str) -> None: ...

    async def listing_failed(self, flow: str, target: str, at: datetime, error: str, audit: AuditEvent) -> bool: ...

    async def listing_succeeded(self, flow: str, target: str, at: datetime, audit: AuditEvent) -> bool: ...


@dataclass
class RunCounts:
    """What one run of one flow did, for logs and tests."""

    listed: int = 0
    found: int = 0
    removed: int = 0
    resolved: int = 0
    listing_failed: int = 0
    exempt: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Coverage:
    """The identities and target-system ids that live grants of one access cover."""

    names: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)

    def covers(self, holder: Holder) -> bool:
        return holder.id in self.ids or bool(holder.names & self.names)


class Reconciler:
    """Runs drift reconciliation for every flow that asks for it; see the module docstring."""

    def __init__(self, life: Lifecycle, drift: DriftStore) -> None:
        self.life = life
        self.drift = drift

    def flows(self) -> list[Flow]:
        """The flows that ask for reconciliation and whose strategy can list holders."""
        return [
            f
            for f in self.life.config.flows
            if f.reconcile is not None and isinstance(self.life.strategies.get(f.name), SupportsHolders)
        ]

    async def run_due(self) -> dict[str, RunCounts]:
        """Run every flow whose `every` has passed since its last run (stored); never raises."""
        results: dict[str, RunCounts] = {}
        for flow in self.flows():
            assert flow.reconcile is not None
            try:
                last = await self.drift.last_run(flow.name)
                now = self.life.clock.now()
                if last is not None and last + flow.reconcile.every > now:
                    continue
                # Recorded first: a run that crashes half-way is not retried in a tight loop.
                await self.drift.record_run(flow.name, now)
                results[flow.name] = await self.run_flow(flow)
            except Exception:
                log.exception("reconcile.flow_failed", flow=flow.name)
        return results

    async def run_flow(self, flow: Flow) -> RunCounts:
        """List every target of `flow` and act on what is held without a live grant."""
        strategy = self.life.strategies.get(flow.name)
        counts = RunCounts()
        if flow.reconcile is None or not isinstance(strategy, SupportsHolders):
            return counts
        for config in flow.targets:
            await self._target(flow, flow.reconcile, strategy, as_target(config), counts)
        log.info(
            "reconcile.done",
            flow=flow.name,
            listed=counts.listed,
            found=counts.found,
            removed=counts.removed,
            resolved=counts.resolved,
            listing_failed=counts.listing_failed,
        )
        return counts

    async def _target(
        self, flow: Flow, settings: Reconcile, strategy: SupportsHolders, target: Target, counts: RunCounts
    ) -> None:
        life = self.life
        key = strategy.access_key(target)
        before = await self._coverage(key)
        try:
            holders = await strategy.holders(target)
        except Exception as exc:
            await self._listing_failed(flow, target, exc, counts)
            return
        now = life.clock.now()
        await self.drift.listing_succeeded(
            flow.name,
            target.name,
            now,
            self._event("drift.listing_recovered", flow, target, {"access": key}),
        )
        after = await self._coverage(key)
        counts.listed += len(holders)
        exempt = {e.casefold() for e in settings.exempt}
        drifted: dict[str, Holder] = {}
        for holder in holders:
            if before.covers(holder) or after.covers(holder):
                continue
            if holder.names & exempt:
                counts.exempt += 1
                continue
            drifted[holder.id] = holder
        open_findings = await self.drift.open_findings(key)
        settled = [f for holder_id, f in open_findings.items() if holder_id not in drifted]
        if settled:
            await self.drift.resolve(settled, now, "no longer held without a live grant", SYSTEM)
            counts.resolved += len(settled)
        for holder in drifted.values():
            finding = open_findings.get(holder.id)
            if finding is None:
                finding = await self.drift.add_finding(
                    key,
                    flow.name,
                    target.name,
                    holder,
                    now,
                    self._event("drift.found", flow, target, _holder_detail(key, holder, settings.action)),
                )
                counts.found += 1
            removed, error = False, None
            if settings.action == "revoke":
                removed, error = await self._remove(flow, strategy, target, key, finding)
                counts.removed += int(removed)
                if error:
                    counts.errors.append(error)
            if finding.alerted_at is None:
                await self._alert_finding(flow, target, finding, settings, removed, error)

    async def _remove(
        self, flow: Flow, strategy: SupportsHolders, target: Target, key: str, finding: Finding
    ) -> tuple[bool, str | None]:
        """Take the access from the holder; (removed, error)."""
        life = self.life
        if (await self._coverage(key)).covers(finding.holder):
            return False, None  # a grant arrived since the listing: the next run resolves the finding
        detail = _holder_detail(key, finding.holder, "revoke")
        try:
            async with life.gate(flow.name):
                await strategy.remove_holder(target, finding.holder)
        except Exception as exc:
            error = life.scrub(str(exc)) or type(exc).__name__
            first = finding.removal_attempts == 0
            audit = self._event("drift.remove_failed", flow, target, {**detail, "error": error}) if first else None
            await self.drift.removal_failed(finding.id, error, audit)
            log.error("reconcile.remove_failed", flow=flow.name, target=target.name, holder=finding.holder.name)
            if first and finding.alerted_at is not None:  # alerted earlier (found without revoke): say so now
                await life.alert(
                    f"jitbot could not remove {finding.holder.name} from {flow.name}/{target.name}, "
                    "which they hold without a live grant",
                    error=error,
                    action="jitbot tries again on every reconciliation run; remove it by hand if it persists.",
                )
            return False, error
        await self.drift.finding_removed(
            finding.id, life.clock.now(), self._event("drift.removed", flow, target, detail)
        )
        log.warning("reconcile.removed", flow=flow.name, target=target.name, holder=finding.holder.name)
        return True, None

    async def _alert_finding(
        self, flow: Flow, target: Target, finding: Finding, settings: Reconcile, removed: bool, error: str | None
    ) -> None:
        holder = finding.holder
        what = (
            f"{holder.name} holds {flow.name}/{target.name} ({target.label}) in the target system without a live grant"
        )
        if removed:
            action = "jitbot removed it (reconcile action: revoke)."
        elif error:
            action = "Removing it failed; jitbot tries again on every reconciliation run."
        elif settings.action == "revoke":
            action = "A grant arrived meanwhile; jitbot checks again on the next run."
        else:
            action = (
                "Remove it by hand, or add the identity to reconcile.exempt if it is meant to be there "
                "(reconcile action: alert)."
            )
        if await self.life.alert(what, error=error, action=action):
            await self.drift.finding_alerted(finding.id, self.life.clock.now())

    async def _listing_failed(self, flow: Flow, target: Target, exc: Exception, counts: RunCounts) -> None:
        life = self.life
        error = life.scrub(str(exc)) or type(exc).__name__
        counts.listing_failed += 1
        counts.errors.append(error)
        log.error("reconcile.listing_failed", flow=flow.name, target=target.name, error=error)
        first = await self.drift.listing_failed(
            flow.name,
            target.name,
            life.clock.now(),
            error,
            self._event("drift.listing_failed", flow, target, {"error": error}),
        )
        if first:
            await life.alert(
                f"jitbot could not list who holds {flow.name}/{target.name} ({target.label}), "
                "so it cannot check it for drift",
                error=error,
                action="Nothing was changed; jitbot tries again on every reconciliation run.",
            )

    async def _coverage(self, key: str) -> _Coverage:
        """The identities and ids that live grants of the access `key` cover, across every flow."""
        life = self.life
        flows = [f.name for f in life.config.flows if isinstance(life.strategies.get(f.name), SupportsHolders)]
        retired = {rid for rid, (strategy, _) in life.retired.items() if isinstance(strategy, SupportsHolders)}
        coverage = _Coverage()
        for grant in await self.drift.live_grants(flows, retired):
            found = self._strategy_and_target(grant)
            if found is None:
                continue
            strategy, target = found
            if strategy.access_key(target) != key:
                continue
            identity = grant.identity
            if not identity:
                identity = await life.identities.get(grant.requester, _identity_key(strategy)) or grant.requester_email
            if identity:
                coverage.names.add(identity.casefold())
            coverage.ids.update(grant.state)
        return coverage

    def _strategy_and_target(self, grant: LiveGrant) -> tuple[SupportsHolders, Target] | None:
        retired = self.life.retired.get(grant.request_id)
        if retired is not None:
            strategy, target = retired
        else:
            current = self.life.strategies.get(grant.flow)
            flow = self.life.flow(grant.flow)
            found = flow_target(flow, grant.target) if flow is not None else None
            if current is None or found is None:
                return None
            strategy, target = current, found
        return (strategy, target) if isinstance(strategy, SupportsHolders) else None

    def _event(self, action: str, flow: Flow, target: Target, detail: Mapping[str, object]) -> AuditEvent:
        return AuditEvent(
            at=self.life.clock.now(),
            actor=SYSTEM,
            action=action,
            detail={"flow": flow.name, "target": target.name, **detail},
        )


def _identity_key(strategy: object) -> str:
    return strategy.identity_key if isinstance(strategy, Strategy) else "*"


def _holder_detail(key: str, holder: Holder, action: str) -> dict[str, object]:
    return {
        "access": key,
        "holder": holder.name,
        "holder_id": holder.id,
        "holder_kind": holder.kind,
        "action": action,
    }
