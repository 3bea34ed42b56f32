"""A small fake of the PagerDuty REST API v2: `GET /users` and `GET /oncalls`.

Built from the documented API: `Authorization: Token token=<key>` (or `Bearer <token>`), JSON bodies
`{"users"|"oncalls": [...], "limit", "offset", "more", "total"}`, `user_ids[]` / `schedule_ids[]` /
`escalation_policy_ids[]` filters, `since`/`until` (default now) and on-call `start`/`end` where null
means permanent. Rate limiting answers 429 with `ratelimit-*` headers. Every request is logged.

    async with PagerDutyApi(token="pd-test") as pd:
        pd.add_user("PUSER1", "ann@example.com")
        pd.add_oncall("PUSER1", schedule_id="PSCHED1")          # permanent, on schedule PSCHED1
        ... PagerDutyIntegration(base_url=pd.url, ...) ...
        pd.rate_limit_next(1, reset=2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class LoggedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    status: int = 0

    def param(self, name: str) -> list[str]:
        """Every value of a query parameter, in order."""
        return [value for key, value in self.query if key == name]


@dataclass
class OnCall:
    """One on-call entry: a user on an escalation policy level, maybe through a schedule."""

    user_id: str
    escalation_policy_id: str
    escalation_level: int = 1
    schedule_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class _Throttle:
    remaining: int = 0
    reset: str | None = "1"
    retry_after: str | None = None


@dataclass
class PagerDutyApi:
    """The fake server; inspect `requests`, script `rate_limit_next`, set `max_limit` to force paging."""

    token: str = "pd-test-token"
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    max_limit: int = 100  # PagerDuty caps `limit`; a small value here makes pagination testable
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    oncalls: list[OnCall] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)
    _throttle: _Throttle = field(default_factory=_Throttle)
    _failures: list[int] = field(default_factory=list)  # statuses to answer the next requests with
    _server: TestServer | None = None

    # ── state ─────────────────────────────────────────────────────────────────────────────────────
    def add_user(self, user_id: str, email: str, name: str | None = None) -> None:
        """Create a PagerDuty user."""
        self.users[user_id] = {
            "id": user_id,
            "type": "user",
            "email": email,
            "name": name or email.split("@")[0],
            "summary": name or email,
            "self": f"{self.url}/users/{user_id}",
        }

    def add_oncall(
        self,
        user_id: str,
        *,
        escalation_policy_id: str = "PPOLICY1",
        schedule_id: str | None = None,
        level: int = 1,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """Put a user on call; `start`/`end` None means open-ended (permanent)."""
        self.oncalls.append(OnCall(user_id, escalation_policy_id, level, schedule_id, start, end))

    def rate_limit_next(self, count: int, *, reset: str | None = "1", retry_after: str | None = None) -> None:
        """Answer the next `count` requests with 429 and these headers."""
        self._throttle = _Throttle(count, reset, retry_after)

    def fail_next(self, count: int, *, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (an outage)."""
        self._failures = [status] * count

    def calls(self, path: str) -> list[LoggedRequest]:
        """The logged requests to one path."""
        return [r for r in self.requests if r.path == path]

    # ── server ────────────────────────────────────────────────────────────────────────────────────
    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        return str(self._server.make_url("")).rstrip("/") if self._server else "http://pagerduty.invalid"

    async def start(self) -> PagerDutyApi:
        """Listen on 127.0.0.1, a free port."""
        app = web.Application(middlewares=[self._log_and_guard])
        app.router.add_get("/users", self._list_users)
        app.router.add_get("/oncalls", self._list_oncalls)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> PagerDutyApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @web.middleware
    async def _log_and_guard(self, request: web.Request, handler) -> web.StreamResponse:
        entry = LoggedRequest(request.method, request.path, list(request.query.items()), dict(request.headers))
        self.requests.append(entry)
        response = self._refusal(request) or await handler(request)
        entry.status = response.status
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if auth not in (f"Token token={self.token}", f"Bearer {self.token}"):
            return _error(401, 2006, "Authentication failed")  # never echo the presented token
        if self._throttle.remaining > 0:
            self._throttle.remaining -= 1
            headers = {"ratelimit-limit": "960", "ratelimit-remaining": "0"}
            if self._throttle.reset is not None:
                headers["ratelimit-reset"] = self._throttle.reset
            if self._throttle.retry_after is not None:
                headers["Retry-After"] = self._throttle.retry_after
            return _error(429, 2020, "Rate Limit Exceeded", headers=headers)
        if self._failures:
            return _error(self._failures.pop(), 5000, "Service Unavailable")
        return None

    async def _list_users(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").lower()
        # PagerDuty matches the query against name and email, so a search can return near misses.
        found = [u for u in self.users.values() if query in u["email"].lower() or query in u["name"].lower()]
        return self._page(request, "users", found)

    async def _list_oncalls(self, request: web.Request) -> web.Response:
        try:
            since = _time_param(request, "since") or self.now()
            until = _time_param(request, "until") or since
        except ValueError:
            return _error(400, 2001, "Invalid Input Provided", errors=["since/until must be ISO 8601"])
        if until < since:
            return _error(400, 2001, "Invalid Input Provided", errors=["until must be after since"])
        user_ids = set(request.query.getall("user_ids[]", []))
        schedules = set(request.query.getall("schedule_ids[]", []))
        policies = set(request.query.getall("escalation_policy_ids[]", []))
        found = [
            self._render(o)
            for o in self.oncalls
            if (not user_ids or o.user_id in user_ids)
            and (not schedules or o.schedule_id in schedules)
            and (not policies or o.escalation_policy_id in policies)
            and (o.start is None or o.start <= until)
            and (o.end is None or o.end > since)
        ]
        return self._page(request, "oncalls", found)

    def _render(self, oncall: OnCall) -> dict[str, Any]:
        user = self.users.get(oncall.user_id, {"name": oncall.user_id})
        return {
            "user": {"id": oncall.user_id, "type": "user_reference", "summary": user["name"]},
            "schedule": (
                {"id": oncall.schedule_id, "type": "schedule_reference", "summary": oncall.schedule_id}
                if oncall.schedule_id
                else None
            ),
            "escalation_policy": {
                "id": oncall.escalation_policy_id,
                "type": "escalation_policy_reference",
                "summary": oncall.escalation_policy_id,
            },
            "escalation_level": oncall.escalation_level,
            "start": _iso(oncall.start),
            "end": _iso(oncall.end),
        }

    def _page(self, request: web.Request, key: str, items: list) -> web.Response:
        try:
            limit = min(int(request.query.get("limit", 25)), self.max_limit)
            offset = int(request.query.get("offset", 0))
        except ValueError:
            return _error(400, 2001, "Invalid Input Provided", errors=["limit and offset must be integers"])
        page = items[offset : offset + limit]
        return web.json_response(
            {
                key: page,
                "limit": limit,
                "offset": offset,
                "more": offset + len(page) < len(items),
                "total": None,
            }
        )


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _error(status: int, code: int, message: str, *, errors: list[str] | None = None, headers=None) -> web.Response:
    body = {"error": {"message": message, "code": code, **({"errors": errors} if errors else {})}}
    return web.json_response(body, status=status, headers=headers)
