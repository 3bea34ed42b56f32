"""A local Okta management API (users, groups, memberships) on 127.0.0.1, for strategy tests.

Built from the documented API: `Authorization: SSWS <token>` (else 401 E0000011), 404 E0000007,
X-Rate-Limit-Limit/Remaining/Reset on every response, cursor paging with `limit`/`after` and Link
headers, GET /api/v1/groups/{gid}/users (the members, paged),
PUT/DELETE /api/v1/groups/{gid}/users/{uid} -> 204. Faults: `throttle(n, reset_in)` answers
the next n calls with 429 E0000047; `fail(n, status)` with a 5xx; `deny_writes` answers membership
changes with 403 E0000006. `now` is injectable so Date and X-Rate-Limit-Reset are predictable.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.fake_api import FakeApi

_SEARCH_EMAIL = re.compile(r'^profile\.email eq "((?:[^"\\]|\\.)*)"$')
RATE_LIMIT = 600


class OktaFake(FakeApi):
    """An in-memory Okta org served over HTTP; inspect `users`, `groups`, `members`, `calls`."""

    def __init__(
        self, *, api_token: str = "00fake-okta-ssws-token", page_size: int = 2, now: Callable[[], float] = time.time
    ) -> None:
        super().__init__(page_size=page_size, now=now)
        self.api_token = api_token
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {}
        self.deny_writes = False
        self._throttled = 0
        self._reset_in = 0
        self._ids = itertools.count(1)

    # --- state -------------------------------------------------------------------------------
    def add_user(self, login: str, *, email: str | None = None, status: str = "ACTIVE") -> str:
        """Create a user; returns its id (00u…)."""
        user_id = f"00u{next(self._ids):05d}"
        profile = {"login": login, "email": email or login, "firstName": login.split("@")[0], "lastName": "Test"}
        self.users[user_id] = {"id": user_id, "status": status, "profile": profile, "_links": {}}
        return user_id

    def add_group(self, name: str, *, type: str = "OKTA_GROUP") -> str:
        """Create a group of `type` (OKTA_GROUP, APP_GROUP, BUILT_IN); returns its id (00g…)."""
        group_id = f"00g{next(self._ids):05d}"
        self.groups[group_id] = {"id": group_id, "type": type, "profile": {"name": name, "description": ""}}
        self.members[group_id] = set()
        return group_id

    def is_member(self, group_id: str, user_id: str) -> bool:
        """Whether the user is in the group, straight from the fake's state."""
        return user_id in self.members.get(group_id, set())

    def throttle(self, times: int, *, reset_in: int) -> None:
        """Answer the next `times` calls with 429 and X-Rate-Limit-Reset = now + reset_in."""
        self._throttled, self._reset_in = times, reset_in

    # --- server ------------------------------------------------------------------------------
    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/users", self._list_users)
        router.add_get("/api/v1/users/{user}", self._get_user)
        router.add_get("/api/v1/users/{user}/groups", self._user_groups)
        router.add_get("/api/v1/groups/{group}", self._get_group)
        router.add_get("/api/v1/groups/{group}/users", self._group_users)
        router.add_put("/api/v1/groups/{group}/users/{user}", self._add_member)
        router.add_delete("/api/v1/groups/{group}/users/{user}", self._remove_member)

    async def _answer(self, request: web.Request, handler) -> web.StreamResponse:
        response = await self._dispatch(request, handler)
        now = self.now()
        # Okta sends these on every response; clients compare Reset with Date to size their wait.
        remaining = 0 if response.status == 429 else RATE_LIMIT - len(self.calls) % RATE_LIMIT
        reset = int(now) + (self._reset_in if response.status == 429 else 60)
        response.headers["X-Rate-Limit-Limit"] = str(RATE_LIMIT)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        response.headers["X-Rate-Limit-Reset"] = str(reset)
        response.headers["Date"] = formatdate(now, usegmt=True)
        return response

    async def _dispatch(self, request: web.Request, handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"SSWS {self.api_token}":
            return _error(401, "E0000011", "Invalid token provided")
        if self._throttled:
            self._throttled -= 1
            return _error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
        if (status := self._next_failure()) is not None:
            return _error(status, "E0000009", "Internal Server Error")
        try:
            return await handler(request)
        except LookupError as exc:
            return _error(404, "E0000007", f"Not found: Resource not found: {exc.args[0]}")
        except web.HTTPException as exc:  # unknown route or method
            return _error(exc.status, "E0000022", exc.reason)

    # --- handlers ------------------------------------------------------------------------------
    def _user(self, key: str) -> dict[str, Any]:
        """A user by id or by login (case-insensitive), as GET /api/v1/users/{id|login} resolves it."""
        if key in self.users:
            return self.users[key]
        for user in self.users.values():
            if user["profile"]["login"].casefold() == key.casefold():
                return user
        raise LookupError(f"{key} (User)")

    def _group(self, key: str) -> dict[str, Any]:
        if key not in self.groups:
            raise LookupError(f"{key} (UserGroup)")
        return self.groups[key]

    async def _get_user(self, request: web.Request) -> web.Response:
        return web.json_response(self._user(request.match_info["user"]))

    async def _list_users(self, request: web.Request) -> web.Response:
        match = _SEARCH_EMAIL.match(request.query.get("search", ""))
        if not match:
            return _error(400, "E0000031", "Invalid search criteria.")
        wanted = re.sub(r"\\(.)", r"\1", match.group(1)).casefold()
        found = [u for u in self.users.values() if u["profile"]["email"].casefold() == wanted]
        return self._page(request, found)

    async def _user_groups(self, request: web.Request) -> web.Response:
        user = self._user(request.match_info["user"])
        groups = [self.groups[gid] for gid, members in self.members.items() if user["id"] in members]
        return self._page(request, groups)

    async def _get_group(self, request: web.Request) -> web.Response:
        return web.json_response(self._group(request.match_info["group"]))

    async def _group_users(self, request: web.Request) -> web.Response:
        # GET /api/v1/groups/{groupId}/users: the members as User objects, cursor-paged; 404 for no group.
        group = self._group(request.match_info["group"])
        members = [self.users[uid] for uid in sorted(self.members[group["id"]]) if uid in self.users]
        return self._page(request, members)

    async def _add_member(self, request: web.Request) -> web.Response:
        group, user = self._group(request.match_info["group"]), self._user(request.match_info["user"])
        if self.deny_writes or group["type"] != "OKTA_GROUP":
            # Okta refuses membership changes to groups it does not own (APP_GROUP, BUILT_IN).
            return _error(403, "E0000006", "You do not have permission to perform the requested action")
        self.members[group["id"]].add(user["id"])
        return web.Response(status=204)

    async def _remove_member(self, request: web.Request) -> web.Response:
        group, user = self._group(request.match_info["group"]), self._user(request.match_info["user"])
        if self.deny_writes or group["type"] != "OKTA_GROUP":
            return _error(403, "E0000006", "You do not have permission to perform the requested action")
        self.members[group["id"]].discard(user["id"])
        return web.Response(status=204)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        """One page of `items` with Link rel="self" and, when more remain, rel="next" (cursor `after`)."""
        limit = int(request.query.get("limit", self.page_size))
        start = int(request.query.get("after", 0))
        headers: CIMultiDict[str] = CIMultiDict()
        base = request.url.with_query({k: v for k, v in request.query.items() if k != "after"})
        headers.add("Link", f'<{base}>; rel="self"')
        if start + limit < len(items):
            headers.add("Link", f'<{base.update_query(after=str(start + limit), limit=str(limit))}>; rel="next"')
        return web.json_response(items[start : start + limit], headers=headers)


def _error(status: int, code: str, summary: str) -> web.Response:
    body = {"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeFAKE", "errorCauses": []}
    return web.json_response(body, status=status)
