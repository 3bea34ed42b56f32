"""An aiohttp reverse proxy in front of moto that can script answers to chosen AWS operations.

moto answers every IAM Identity Center assignment status with SUCCEEDED at once and never throttles,
so the polling, FAILED and retry paths need this. Requests are forwarded to moto unchanged unless
a script for their operation is queued; each matching request consumes one scripted step:

    proxy.script("CreateAccountAssignment", aws_error_reply("ThrottlingException"))   # once, not forwarded
    proxy.script("DescribeAccountAssignmentCreationStatus", Rewrite("IN_PROGRESS"), times=2)
    proxy.script("DescribeAccountAssignmentCreationStatus", Reply(200, {...}))

The operation of a request is read from `X-Amz-Target` (JSON protocol: SSO Admin, Identity Store)
or the `Action` form field (query protocol: IAM, STS). `calls` lists every operation seen, in order.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


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


class AwsFaultProxy:
    """Forwards AWS requests to `upstream`, except those a queued script answers or rewrites."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[str] = []
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

    async def start(self) -> "AwsFaultProxy":
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
        status, headers, content = await self._forward(request, body)
        if isinstance(step, Rewrite):
            content = _rewrite_status(content, step)
        return web.Response(status=status, body=content, headers=headers)

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None, "start() first"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as upstream:
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
