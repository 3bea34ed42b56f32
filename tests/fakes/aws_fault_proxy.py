"""An aiohttp reverse proxy in front of moto that can script answers to chosen AWS operations.

moto answers every IAM Identity Center assignment status with SUCCEEDED at once and never throttles,
so the polling, FAILED and retry paths need this. Requests are forwarded to moto unchanged unless
a script for their operation is queued; each matching request consumes one scripted step:

    proxy.script("CreateAccountAssignment", aws_error_reply("ThrottlingException"))   # once, not forwarded
    proxy.script("DescribeAccountAssignmentCreationStatus", Rewrite("IN_PROGRESS"), times=2)
    proxy.script("DescribeAccountAssignmentCreationStatus", Reply(200, {...}))

The operation of a request is read from `X-Amz-Target` (JSON protocol: SSO Admin, Identity Store)
or the `Action` form field (query protocol: IAM, STS). `calls` lists every operation seen, in order.

Account assignments that take a while to land, as they do in AWS (moto creates them at once):

    proxy.hold_creations()        # CreateAccountAssignment answers IN_PROGRESS and is kept back
    ...                           # Describe/ListAccountAssignmentCreationStatus report IN_PROGRESS;
                                  # ListAccountAssignments (moto) does not show the assignment yet
    await proxy.land_creations()  # now forwarded to moto: the assignment exists, status SUCCEEDED
    proxy.fail_creations("…")     # or: they end FAILED and never reach moto

The proxy also answers ListAccountAssignmentCreationStatus (which moto lacks) from the creations it
held: moto's own creations are SUCCEEDED at once, so they are never in progress.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}
_CREATION_OPERATIONS = {
    "CreateAccountAssignment",
    "DescribeAccountAssignmentCreationStatus",
    "ListAccountAssignmentCreationStatus",
}


@dataclass(frozen=True)
class Reply:
    """Answer without forwarding: a status, a JSON (dict) or raw (str) body, extra headers."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rewrite:
    """Forward to moto, then set `Status` (and `FailureReason`) in the response's *Status object."""

    status: str
    failure_reason: str | None = None


def aws_error_reply(code: str, message: str = "scripted fault", status: int = 400, *, query: bool = False) -> Reply:
    """An AWS error as botocore parses it: JSON `__type` body, or the query protocol's XML."""
    if query:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
            "</Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        )
        return Reply(status, body, {"Content-Type": "text/xml"})
    return Reply(status, {"__type": code, "message": message}, {"Content-Type": "application/x-amz-json-1.1"})


@dataclass
class HeldCreation:
    """A CreateAccountAssignment the proxy answered itself and has not (yet) passed on to moto."""

    request_id: str
    params: dict[str, Any]
    path_qs: str
    headers: dict[str, str]
    body: bytes
    status: str = "IN_PROGRESS"
    failure_reason: str | None = None
    created: float = field(default_factory=time.time)

    def status_json(self) -> dict[str, Any]:
        """The AccountAssignmentOperationStatus AWS reports for this request."""
        status = {
            "Status": self.status,
            "RequestId": self.request_id,
            "CreatedDate": self.created,
            **{
                key: self.params[key]
                for key in ("TargetId", "TargetType", "PermissionSetArn", "PrincipalType", "PrincipalId")
                if key in self.params
            },
        }
        if self.failure_reason:
            status["FailureReason"] = self.failure_reason
        return status


class AwsFaultProxy:
    """Forwards AWS requests to `upstream`, except those a queued script answers or rewrites."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[str] = []
        self.held: list[HeldCreation] = []
        self._holding = False
        self._scripts: dict[str, deque[Reply | Rewrite]] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def script(self, operation: str, step: Reply | Rewrite, *, times: int = 1) -> None:
        """Queue `step` for the next `times` requests of `operation` (e.g. 'CreateAccountAssignment')."""
        self._scripts.setdefault(operation, deque()).extend([step] * times)

    def pending(self, operation: str) -> int:
        """How many scripted steps for `operation` have not been used yet."""
        return len(self._scripts.get(operation, ()))

    def count(self, operation: str) -> int:
        """How many requests for `operation` arrived (scripted or forwarded)."""
        return self.calls.count(operation)

    def hold_creations(self) -> None:
        """Answer CreateAccountAssignment IN_PROGRESS and keep it back until `land_creations()`."""
        self._holding = True

    async def land_creations(self) -> None:
        """Pass every creation still in progress on to moto (the assignment appears) and report it SUCCEEDED."""
        self._holding = False
        for creation in self.held:
            if creation.status == "IN_PROGRESS":
                status, _headers, content = await self._send_upstream(
                    "POST", creation.path_qs, creation.headers, creation.body
                )
                assert status == 200, f"moto refused the held creation: {status} {content[:200]!r}"
                creation.status = "SUCCEEDED"

    def fail_creations(self, reason: str = "scripted failure") -> None:
        """End every creation still in progress as FAILED; none reaches moto."""
        self._holding = False
        for creation in self.held:
            if creation.status == "IN_PROGRESS":
                creation.status, creation.failure_reason = "FAILED", reason

    async def start(self) -> AwsFaultProxy:
        """Listen on 127.0.0.1 at a free port; `url` is set on return."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site.port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def close(self) -> None:
        """Stop listening and close the upstream connection pool."""
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        operation = _operation(request, body)
        self.calls.append(operation)
        queue = self._scripts.get(operation)
        step = queue.popleft() if queue else None
        if isinstance(step, Reply):
            payload = step.body if isinstance(step.body, str) else json.dumps(step.body)
            return web.Response(status=step.status, body=payload.encode(), headers=step.headers)
        if step is None:
            answer = self._creation_answer(operation, request, body)
            if answer is not None:
                return web.json_response(answer, content_type="application/x-amz-json-1.1")
        status, headers, content = await self._forward(request, body)
        if isinstance(step, Rewrite):
            content = _rewrite_status(content, step)
        return web.Response(status=status, body=content, headers=headers)

    def _creation_answer(self, operation: str, request: web.Request, body: bytes) -> dict[str, Any] | None:
        """The proxy's own answer about held creations, or None to forward the request to moto."""
        if operation not in _CREATION_OPERATIONS:
            return None
        params = json.loads(body) if body else {}
        if operation == "CreateAccountAssignment" and self._holding:
            creation = HeldCreation(
                str(uuid.uuid4()),
                params,
                request.path_qs,
                {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS},
                body,
            )
            self.held.append(creation)
            return {"AccountAssignmentCreationStatus": creation.status_json()}
        if operation == "DescribeAccountAssignmentCreationStatus":
            wanted = params.get("AccountAssignmentCreationRequestId")
            creation = next((c for c in self.held if c.request_id == wanted), None)
            return None if creation is None else {"AccountAssignmentCreationStatus": creation.status_json()}
        if operation == "ListAccountAssignmentCreationStatus":
            status = (params.get("Filter") or {}).get("Status")
            return {
                "AccountAssignmentsCreationStatus": [
                    {"Status": c.status, "RequestId": c.request_id, "CreatedDate": c.created}
                    for c in self.held
                    if status in (None, c.status)
                ]
            }
        return None

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        return await self._send_upstream(request.method, request.path_qs, headers, body)

    async def _send_upstream(
        self, method: str, path_qs: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None, "start() first"
        async with self._session.request(method, self.upstream + path_qs, headers=headers, data=body) as upstream:
            content = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            return upstream.status, out, content


def _operation(request: web.Request, body: bytes) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    form = parse_qs(body.decode("utf-8", "replace")) if body else {}
    action = form.get("Action") or parse_qs(request.query_string).get("Action") or ["?"]
    return action[0]


def _rewrite_status(content: bytes, step: Rewrite) -> bytes:
    data = json.loads(content)
    for key, value in data.items():
        if key.endswith("Status") and isinstance(value, dict):
            value["Status"] = step.status
            if step.failure_reason:
                value["FailureReason"] = step.failure_reason
    return json.dumps(data).encode()
