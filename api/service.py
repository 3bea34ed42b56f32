"""The `/v1` operations: each one checks its caller, reads its input with the models, calls the engine.

A request made here goes through `AccessEngine.prepare` and `submit`, exactly as the Slack form's
does (posted for approval, hooks with `evt.via == "api"`); a decision goes through `approve` and
`deny`, which edit the Slack message. Every engine call carries `via="api"` and the token's name,
so the audit trail tells a script from a click. The table `operations()` is both the router and the
source of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import Authenticator, Caller
from api.bodies import NO_BODY, json_response, read_json
from api.problems import Problem, field_problem
from api.schemas import DecisionBody, ExtendBody, FlowList, FlowView, RequestList, RequestView
from core.config_models import Flow, JitConfig
from core.engine import AccessEngine
from core.errors import JitError, NotAllowed, RequestNotFound
from core.models import AccessRequest, RequestStatus
from core.origin import API
from core.ports import Directory
from core.submission import duration_in, duration_of, field_errors, fields_model, submission_model
from core.tokens import Scope
from core.visibility import may_view

log = structlog.get_logger("jitbot.api")

PREPARE_SECONDS = 10.0
"""How long the checks of a new request (the requester in Slack, their identity in the target system) may take."""
DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Handler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]


class RequestListing(Protocol):
    """Newest-first listings of requests (storage.request_queries.RequestQueries, wired by runtime.py)."""

    async def recent(
        self, *, requester: str | None = None, statuses: Collection[RequestStatus] = (), limit: int = ...
    ) -> list[AccessRequest]: ...


class ListQuery(BaseModel):
    """The query of `GET /v1/requests`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: RequestStatus | None = Field(default=None, description="Only requests in this status.")
    mine: bool = Field(default=False, description="Only the token user's own requests.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="At most this many, newest first.")


@dataclass(frozen=True)
class Operation:
    """One API operation: route, caller's scopes, input and answer models, the statuses it may answer."""

    method: str
    path: str
    operation_id: str
    summary: str
    scopes: tuple[Scope, ...]
    handler: Handler
    response: type[BaseModel]
    success: int = 200
    body: str | None = None  # "submission" (the flows' request models), "decision" or "extension"
    query: type[BaseModel] | None = None
    problems: tuple[int, ...] = ()
    path_params: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # success headers documented: name → description
    links: tuple[str, ...] = ()  # operation ids that take the `id` of this answer


class ApiService:
    """The operations of the API over one engine."""

    def __init__(
        self,
        *,
        engine: AccessEngine,
        auth: Authenticator,
        queries: RequestListing,
        directory: Directory,
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.queries = queries
        self.directory = directory

    @property
    def config(self) -> JitConfig:
        """The engine's flows file."""
        return self.engine.config

    def submission_models(self) -> dict[str, type[BaseModel]]:
        """Each flow's request model, by flow name."""
        return {flow.name: submission_model(flow) for flow in self.config.flows}

    def operations(self) -> list[Operation]:
        """Every /v1 operation."""
        decided = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
        read = (400, 401, 403, 429, 503)
        return [
            Operation(
                "GET",
                "/v1/flows",
                "listFlows",
                "The flows the token's user may ask for",
                scopes=(Scope.READ, Scope.REQUEST),
                handler=self.list_flows,
                response=FlowList,
                problems=read,
            ),
            Operation(
                "POST",
                "/v1/requests",
                "createRequest",
                "Ask for access: the request is posted to the flow's approval channel, as from Slack",
                scopes=(Scope.REQUEST,),
                handler=self.create_request,
                response=RequestView,
                success=201,
                body="submission",
                problems=(400, 401, 403, 413, 415, 422, 429, 502, 503),
                headers={"Location": "Where the new request can be read."},
                links=(
                    "getRequest",
                    "approveRequest",
                    "denyRequest",
                    "cancelRequest",
                    "revokeRequest",
                    "extendRequest",
                ),
            ),
            Operation(
                "GET",
                "/v1/requests",
                "listRequests",
                "Requests the token's user made or may decide, newest first",
                scopes=(Scope.READ,),
                handler=self.list_requests,
                response=RequestList,
                query=ListQuery,
                problems=(*read, 422),
            ),
            Operation(
                "GET",
                "/v1/requests/{id}",
                "getRequest",
                "One request",
                scopes=(Scope.READ,),
                handler=self.get_request,
                response=RequestView,
                problems=(*read, 404),
                path_params=("id",),
            ),
            Operation(
                "POST",
                "/v1/requests/{id}/approve",
                "approveRequest",
                "Approve a pending request (as a click on Approve: same checks, the message is updated)",
                scopes=(Scope.DECIDE,),
                handler=self.approve,
                response=RequestView,
                body="decision",
                problems=(*decided, 502),
                path_params=("id",),
            ),
            Operation(
                "POST",
                "/v1/requests/{id}/deny",
                "denyRequest",
                "Deny a pending request, with an optional reason (as a click on Deny)",
                scopes=(Scope.DECIDE,),
                handler=self.deny,
                response=RequestView,
                body="decision",
                problems=decided,
                path_params=("id",),
            ),
            Operation(
                "POST",
                "/v1/requests/{id}/cancel",
                "cancelRequest",
                "Withdraw a pending request, as its requester (as Cancel request on the DM)",
                scopes=(Scope.REQUEST,),
                handler=self.cancel,
                response=RequestView,
                body="decision",
                problems=decided,
                path_params=("id",),
            ),
            Operation(
                "POST",
                "/v1/requests/{id}/revoke",
                "revokeRequest",
                "End a live grant now, as its requester or someone who may approve its flow (as Revoke now)",
                scopes=(Scope.REQUEST, Scope.DECIDE),
                handler=self.revoke,
                response=RequestView,
                problems=(*decided, 502),
                path_params=("id",),
            ),
            Operation(
                "POST",
                "/v1/requests/{id}/extend",
                "extendRequest",
                "Ask for more time on a live grant: a new request linked to it, approved like any other",
                scopes=(Scope.REQUEST,),
                handler=self.extend,
                response=RequestView,
                success=201,
                body="extension",
                problems=(*decided, 502),
                path_params=("id",),
                headers={"Location": "Where the extension request can be read."},
                links=("getRequest", "approveRequest", "denyRequest", "cancelRequest"),
            ),
        ]

    # ── the operations ────────────────────────────────────────────────────────────────────────

    async def list_flows(self, request: web.Request, caller: Caller) -> web.Response:
        """GET /v1/flows: those the token's user may ask for (as the Slack picker shows them)."""
        flows = []
        for flow in self.config.flows:
            try:
                await self.engine.may_request(flow.name, caller.user, fresh=False)
            except NotAllowed:
                continue
            flows.append(FlowView.of(flow))
        return json_response(FlowList(flows=flows))

    async def create_request(self, request: web.Request, caller: Caller) -> web.Response:
        """POST /v1/requests."""
        body = await read_json(request, required=True)
        if not isinstance(body, dict):
            raise field_problem({"body": "Send a JSON object with flow, target and fields."})
        flow = self._flow_named(body.get("flow"))
        try:
            checked = submission_model(flow).model_validate(body)
        except ValidationError as error:
            raise field_problem(field_errors(error)) from None
        try:  # who may ask (requesters, guests), read fresh: a refusal is 403 with the reason, audited
            await self.engine.may_request(flow.name, caller.user)
        except NotAllowed as refused:
            await self.auth.refused(caller.token, request, refused.user_message)
            raise
        target: str = checked.target  # type: ignore[attr-defined]
        fields: dict[str, Any] = checked.fields.model_dump()  # type: ignore[attr-defined]
        draft = await asyncio.wait_for(
            self.engine.prepare(
                flow.name, caller.user, target, fields, duration_in(flow, fields), via=API, token=caller.name
            ),
            PREPARE_SECONDS,
        )
        created = await self.engine.submit(draft)
        return json_response(RequestView.of(created), 201, {"Location": f"/v1/requests/{created.id}"})

    async def list_requests(self, request: web.Request, caller: Caller) -> web.Response:
        """GET /v1/requests?status=&mine=&limit=."""
        try:
            query = ListQuery.model_validate(dict(request.query))
        except ValidationError as error:
            raise field_problem(field_errors(error)) from None
        statuses = (query.status,) if query.status is not None else ()
        if query.mine:
            rows = await self.queries.recent(requester=caller.user, statuses=statuses, limit=query.limit)
        else:
            rows = []
            for row in await self.queries.recent(statuses=statuses):
                if await self._visible(row, caller):
                    rows.append(row)
                    if len(rows) >= query.limit:
                        break
        return json_response(RequestList(requests=[RequestView.of(r) for r in rows]))

    async def get_request(self, request: web.Request, caller: Caller) -> web.Response:
        """GET /v1/requests/{id}."""
        return json_response(RequestView.of(await self._visible_request(request, caller)))

    async def approve(self, request: web.Request, caller: Caller) -> web.Response:
        """POST /v1/requests/{id}/approve."""
        reason = await self._decision_reason(request)
        approved = await self.engine.approve(
            request.match_info["id"], caller.user, reason=reason, via=API, token=caller.name
        )
        return json_response(RequestView.of(approved))

    async def deny(self, request: web.Request, caller: Caller) -> web.Response:
        """POST /v1/requests/{id}/deny."""
        reason = await self._decision_reason(request)
        denied = await self.engine.deny(
            request.match_info["id"], caller.user, reason=reason, via=API, token=caller.name
        )
        return json_response(RequestView.of(denied))

    async def cancel(self, request: web.Request, caller: Caller) -> web.Response:
        """POST /v1/requests/{id}/cancel."""
        reason = await self._decision_reason(request)
        request_id = request.match_info["id"]
        cancelled = await self._noted(
            request_id, caller, "cancel", self.engine.cancel(request_id, caller.user, via=API, reason=reason)
        )
        return json_response(RequestView.of(cancelled))

    async def revoke(self, request: web.Request, caller: Caller) -> web.Response:
        """POST /v1/requests/{id}/revoke."""
        await read_json(request, required=False)  # nothing is expected, but what comes is bounded
        request_id = request.match_info["id"]
        ended = await self._noted(
            request_id, caller, "revoke", self.engine.revoke_now(request_id, caller.user, via=API)
        )
        return json_response(RequestView.of(ended))

    async def extend(self, request: web.Request, caller: Caller) -> web.Response:
        """POST /v1/requests/{id}/extend: a new request, linked to the live grant, with the form's rules."""
        try:
            body = ExtendBody.model_validate(await read_json(request, required=True))
        except ValidationError as error:
            raise field_problem(field_errors(error)) from None
        request_id = request.match_info["id"]
        # Someone who may not even see the grant learns nothing of it (its flow's rules included): 404 as GET.
        held = await self._visible_request(request, caller)
        flow = self.engine.life.flow(held.flow)
        if flow is None:
            raise NotAllowed(f"The flow '{held.flow}' is no longer in jitbot's configuration.")
        spec = flow.duration_field
        try:
            length = duration_of(spec, body.duration)
        except ValueError as invalid:
            raise field_problem({"duration": str(invalid)}) from None
        # The extension's answers: the grant's own, then what the caller changes, checked by the form's rules.
        answers = {**dict(held.fields), **(body.fields or {}), spec.name: body.duration}
        try:
            fields = fields_model(flow).model_validate(answers).model_dump()
        except ValidationError as error:
            raise field_problem({f"fields.{k}": v for k, v in field_errors(error).items()}) from None
        draft = await asyncio.wait_for(
            self.engine.prepare_extension(request_id, caller.user, int(length.total_seconds()), fields),
            PREPARE_SECONDS,
        )
        created = await self.engine.submit(replace(draft, via=API, token=caller.name))
        return json_response(RequestView.of(created), 201, {"Location": f"/v1/requests/{created.id}"})

    # ── helpers ───────────────────────────────────────────────────────────────────────────────

    async def _noted(
        self, request_id: str, caller: Caller, action: str, call: Awaitable[AccessRequest]
    ) -> AccessRequest:
        """Run an engine call whose own audit rows say `via: api` but not which token; record the token."""
        try:
            result = await call
        except JitError as error:
            await self.auth.note(caller.token, request_id, action, f"refused: {error.user_message}")
            raise
        await self.auth.note(caller.token, request_id, action, result.status.value)
        return result

    def _flow_named(self, name: Any) -> Flow:
        known = ", ".join(f.name for f in self.config.flows)
        if not isinstance(name, str):
            raise field_problem({"flow": f"Name one of the flows: {known}."})
        try:
            return self.config.flow(name)
        except KeyError:
            raise field_problem({"flow": f"No flow is called that; the flows are: {known}."}) from None

    async def _decision_reason(self, request: web.Request) -> str | None:
        body = await read_json(request, required=False)
        if body is NO_BODY:
            return None
        try:
            decision = DecisionBody.model_validate(body)
        except ValidationError as error:
            raise field_problem(field_errors(error)) from None
        reason = (decision.reason or "").strip()
        return reason or None

    async def _visible(self, row: AccessRequest, caller: Caller) -> bool:
        try:
            return await may_view(row, self.engine.life.flow(row.flow), caller.user, self.directory)
        except Exception as exc:  # display only: a request that cannot be checked is not shown
            log.warning("api.visibility_unchecked", request_id=row.id, error=type(exc).__name__)
            return False

    async def _visible_request(self, request: web.Request, caller: Caller) -> AccessRequest:
        request_id = request.match_info["id"]
        try:
            row = await self.engine.requests.get(request_id)
        except RequestNotFound:
            row = None
        # One answer for "no such request" and "not yours to see": ids are not a way to probe.
        if row is None or not await self._visible(row, caller):
            raise Problem(404, "There is no request with this id that this token may see.")
        return row
