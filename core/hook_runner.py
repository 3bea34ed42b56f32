"""The engine's side of policy hooks: build `evt`, call a flow's hooks, and contain their failures.

A hook that raises, times out or returns something it may not never grants and never loses the
request: the engine carries on as if the hook had not spoken, and the error goes to the audit
trail and to the alerts channel. One deliberate exception: when `on_approve` fails, the click is
refused (fail closed), because that hook exists to restrict who may approve.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from core.clock import Clock
from core.config_models import Flow
from core.errors import HookError
from core.hook_events import Approve, Deny, HookEvent, HookIntegrations, HookTarget, HookUser, Ignore
from core.hooks import HookModule
from core.models import AccessRequest, AuditEvent, Subject, Target
from core.ports import Alert, AuditTrail, Notifier, UserInfo
from core.secrets import SecretRegistry
from core.targets import flow_target

log = structlog.get_logger("jitbot.hooks")


class ApproversUnavailable:
    """`get_approvers` raised, timed out or returned nothing usable: the flow's static approvers
    decide, and with none, nobody may (never "anyone but the requester")."""

    def __repr__(self) -> str:
        return "ApproversUnavailable()"


class HookRunner:
    """Calls the hooks file of each flow with a time limit, and reports what went wrong."""

    def __init__(
        self,
        modules: Mapping[str, HookModule],
        integrations: Mapping[str, object],
        *,
        notifier: Notifier,
        audit: AuditTrail,
        clock: Clock,
        secrets: SecretRegistry | None = None,
    ) -> None:
        self.modules = dict(modules)
        self.secrets = SecretRegistry() if secrets is None else secrets
        self.integrations = dict(integrations)
        self.notifier = notifier
        self.audit = audit
        self.clock = clock

    def event(
        self,
        request: AccessRequest,
        flow: Flow,
        *,
        user: Subject,
        actor: UserInfo | None = None,
        via: str | None = None,
    ) -> HookEvent:
        """The `evt` for a hook call about `request`; `via` says how the action behind it arrived."""
        target = flow_target(flow, request.target) or Target(request.target, request.target, {})
        return HookEvent(
            request_id=request.id,
            flow=flow.name,
            target=HookTarget.of(target),
            user=HookUser.of(user),
            actor=HookUser.of(actor) if actor is not None else None,
            fields=dict(request.fields),
            integrations=HookIntegrations(self.integrations),
            granted_at=request.granted_at,
            expires_at=request.expires_at,
            state=dict(request.grant_state),
            via=via,
            extends=request.extends,
        )

    def active(self, flow: Flow) -> bool:
        """Whether the flow has a hooks file at all."""
        return self.modules.get(flow.name) is not None

    def has(self, flow: Flow, hook: str) -> bool:
        """Whether the flow's hooks file defines `hook`."""
        module = self.modules.get(flow.name)
        return module is not None and module.has(hook)

    def actor(self, flow: Flow, hook: str | None = None) -> str:
        """How a hook appears as an actor in the audit trail and on the message."""
        module = self.modules.get(flow.name)
        name = Path(module.path).name if module is not None else "hooks"
        return f"hook:{name}:{hook}" if hook else f"hook:{name}"

    async def on_request(self, flow: Flow, evt: HookEvent, request: AccessRequest) -> Approve | Deny | None:
        """The fast-track / auto-deny decision, or None to leave it to humans."""
        ok, result = await self._call(flow, "on_request", evt, request)
        if not (ok and isinstance(result, (Approve, Deny))):
            return None
        # The verdict itself is evidence, apart from what follows it (a fast-track approval may still be
        # refused). Unrecorded, it is not acted on: humans decide, which is the safe side.
        try:
            await self.audit.append(
                AuditEvent(
                    at=self.clock.now(),
                    actor=self.actor(flow, "on_request"),
                    action="hook.verdict",
                    request_id=request.id,
                    detail={"hook": "on_request", "verdict": "approve" if isinstance(result, Approve) else "deny"},
                    flow=request.flow,
                    target=request.target,
                    reason=result.reason,
                )
            )
        except Exception:
            log.exception("hook.verdict_not_recorded", flow=flow.name, request_id=request.id)
            return None
        return result

    async def approvers(
        self, flow: Flow, evt: HookEvent, request: AccessRequest
    ) -> list[str] | None | ApproversUnavailable:
        """Slack ids that may decide this request, None to keep the flow's approvers, or
        ApproversUnavailable when the hook failed (the engine then falls back, closed)."""
        ok, result = await self._call(flow, "get_approvers", evt, request)
        if not ok:
            return ApproversUnavailable()
        if result is None:
            return None
        if not result:
            await self._report(flow, "get_approvers", request, "returned an empty list")
            return ApproversUnavailable()
        return list(result)

    async def approval_channel(self, flow: Flow, evt: HookEvent, request: AccessRequest) -> str | None:
        """The channel for this request, or None for the flow's approval_channel."""
        ok, result = await self._call(flow, "get_approval_channel", evt, request)
        return result if ok and isinstance(result, str) and result else None

    async def on_click(self, flow: Flow, hook: str, evt: HookEvent, request: AccessRequest) -> str | None:
        """The refusal message if `on_approve` / `on_deny` refuses the click, else None."""
        ok, result = await self._call(flow, hook, evt, request)
        if not ok:
            if hook == "on_approve":
                return (
                    "The approval policy check failed, so this approval was not accepted. "
                    "The operators have been alerted."
                )
            return None
        return result.message if isinstance(result, Ignore) else None

    async def observe(self, flow: Flow, hook: str, evt: HookEvent, request: AccessRequest) -> None:
        """Call an after_* hook; its result is ignored and its failure only reported."""
        await self._call(flow, hook, evt, request)

    async def _call(self, flow: Flow, hook: str, evt: HookEvent, request: AccessRequest) -> tuple[bool, Any]:
        module = self.modules.get(flow.name)
        if module is None or not module.has(hook):
            return True, None
        try:
            return True, await module.call(hook, evt, timeout=flow.hook_timeout.total_seconds())
        except HookError as error:
            await self._report(flow, hook, request, str(error))
            return False, None

    async def _report(self, flow: Flow, hook: str, request: AccessRequest, message: str) -> None:
        # A HookModule already scrubs its errors; any other module (a test double, a future loader)
        # reaches the log, the audit trail and the alert through the same registry.
        message = self.secrets.scrub(message)
        module = self.modules.get(flow.name)
        path = module.path if module is not None else "?"
        log.error("hook.failed", flow=flow.name, hook=hook, path=path, error=message, request_id=request.id)
        await self.audit.append(
            AuditEvent(
                at=self.clock.now(),
                actor=self.actor(flow, hook),
                action="hook.failed",
                request_id=request.id,
                detail={"path": path, "hook": hook, "error": message},
            )
        )
        consequence = {
            "get_approvers": "The flow's static approvers decide this request; without any, nobody may approve it.",
            "on_approve": "The approval was refused.",
        }.get(hook, "The request was handled as if the hook had not spoken.")
        try:
            await self.notifier.alert(Alert(f"Hook {hook} in {path} failed", request, message, consequence))
        except Exception:
            log.exception("alert.failed")
