"""A local Aptible Auth API (tokens, organization users, roles, memberships) on 127.0.0.1.

Built from the documented API: `POST /tokens` with the OAuth2 password grant (JSON or form body)
-> a token with expires_in/expires_at and HAL `_links`; a user with MFA and no `otp_token` -> 401
`otp_token_required`; `Authorization: Bearer` on every other call (else 401 `invalid_token`); HAL
collections under `_embedded.<name>` with `_links.next` paging. Organization membership is derived
from role memberships, as in Aptible, so deleting a user's last role drops them from the org.
Faults: `expire_tokens()` (next call with an old token gets 401), `fail(n, status)`; `calls` logs all.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.fake_api import Call, FakeApi

_CALLER = web.RequestKey("caller", str)  # the user id the bearer token belongs to


@dataclass
class _User:
    id: str
    email: str
    password: str
    mfa: bool


class AptibleFake(FakeApi):
    """An in-memory Aptible Auth API served over HTTP; inspect `memberships`, `calls`, `login_forms`."""

    def __init__(self, *, page_size: int = 2, now: Callable[[], float] = time.time) -> None:
        super().__init__(page_size=page_size, now=now)
        self.users: dict[str, _User] = {}
        self.organizations: dict[str, str] = {}
        self.roles: dict[str, dict[str, str]] = {}  # id -> {name, type, organization}
        self.memberships: dict[str, dict[str, Any]] = {}  # id -> {user, role, privileged}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (user id, expires at)
        self.login_forms: list[dict[str, Any]] = []  # every /tokens body, password removed
        self._ids = itertools.count(1)

    # --- state -------------------------------------------------------------------------------
    def add_organization(self, name: str) -> str:
        """Create an organization; returns its id."""
        org_id = str(uuid.uuid4())
        self.organizations[org_id] = name
        return org_id

    def add_user(self, email: str, *, password: str = "", mfa: bool = False) -> str:
        """Create a user (in no organization until it gets a role); returns its id."""
        user_id = str(uuid.uuid4())
        self.users[user_id] = _User(user_id, email, password, mfa)
        return user_id

    def add_role(self, organization_id: str, name: str, *, type: str = "platform_user") -> str:
        """Create a role of `type` (owner, platform_user, …) in the organization; returns its id."""
        role_id = str(uuid.uuid4())
        self.roles[role_id] = {"name": name, "type": type, "organization": organization_id}
        return role_id

    def add_membership(self, role_id: str, user_id: str, *, privileged: bool = False) -> str:
        """Put the user in the role (privileged = Role Admin); returns the membership id."""
        membership_id = str(next(self._ids))
        self.memberships[membership_id] = {"user": user_id, "role": role_id, "privileged": privileged}
        return membership_id

    def has_role(self, role_id: str, user_id: str) -> bool:
        """Whether the user is a member of the role, straight from the fake's state."""
        return any(m["role"] == role_id and m["user"] == user_id for m in self.memberships.values())

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if it expired or was revoked."""
        self.tokens.clear()

    @property
    def token_requests(self) -> list[Call]:
        """Every POST /tokens."""
        return self.calls_to("POST", "/tokens")

    # --- server ------------------------------------------------------------------------------
    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/tokens", self._create_token)
        router.add_get("/organizations/{org}/users", self._org_users)
        router.add_get("/roles/{role}", self._get_role)
        router.add_get("/roles/{role}/memberships", self._role_memberships)
        router.add_post("/roles/{role}/memberships", self._create_membership)
        router.add_delete("/memberships/{membership}", self._delete_membership)
        router.add_get("/users/{user}/roles", self._user_roles)

    async def _answer(self, request: web.Request, handler) -> web.StreamResponse:
        if (status := self._next_failure()) is not None:
            return _error(status, "internal_server_error", "Something went wrong")
        if request.path != "/tokens":
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            holder = self.tokens.get(token)
            if holder is None or holder[1] <= self.now():
                return _error(401, "invalid_token", "Invalid Token")
            request[_CALLER] = holder[0]
        try:
            return await handler(request)
        except LookupError as exc:
            return _error(404, "not_found", f"{exc.args[0]} not found")
        except web.HTTPException as exc:  # unknown route or method
            return _error(exc.status, "not_found", exc.reason)

    # --- helpers ---------------------------------------------------------------------------------
    def _href(self, kind: str, ident: str) -> dict[str, str]:
        return {"href": f"{self.url}/{kind}/{ident}"}

    def _user_json(self, user: _User) -> dict[str, Any]:
        return {
            "id": user.id,
            "email": user.email,
            "name": user.email.split("@")[0],
            "username": user.email,
            "verified": True,
            "_type": "user",
            "_links": {"self": self._href("users", user.id), "roles": self._href(f"users/{user.id}", "roles")},
        }

    def _role_json(self, role_id: str) -> dict[str, Any]:
        role = self.roles[role_id]
        return {
            "id": role_id,
            "name": role["name"],
            "type": role["type"],
            "_type": "role",
            "_links": {
                "self": self._href("roles", role_id),
                "organization": self._href("organizations", role["organization"]),
            },
        }

    def _membership_json(self, membership_id: str) -> dict[str, Any]:
        m = self.memberships[membership_id]
        return {
            "id": membership_id,
            "privileged": m["privileged"],
            "_type": "membership",
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.000Z",
            "_links": {
                "self": self._href("memberships", membership_id),
                "user": self._href("users", m["user"]),
                "role": self._href("roles", m["role"]),
            },
        }

    def _collection(self, request: web.Request, name: str, items: list[dict[str, Any]]) -> web.Response:
        """One page of a HAL collection; `_links.next` when more remain (`?page=N`, 1-based)."""
        page = int(request.query.get("page", 1))
        start = (page - 1) * self.page_size
        links = {"self": {"href": str(request.url)}}
        if start + self.page_size < len(items):
            links["next"] = {"href": str(request.url.update_query(page=str(page + 1)))}
        body = {"_embedded": {name: items[start : start + self.page_size]}, "_links": links}
        return web.json_response(body, content_type="application/hal+json")

    def _may_manage(self, user_id: str, role_id: str) -> bool:
        """Account Owners manage every role of their organization; Role Admins manage their role."""
        org = self.roles[role_id]["organization"]
        for m in self.memberships.values():
            role = self.roles[m["role"]]
            if m["user"] == user_id and (
                (role["type"] == "owner" and role["organization"] == org) or (m["role"] == role_id and m["privileged"])
            ):
                return True
        return False

    # --- handlers ------------------------------------------------------------------------------
    async def _create_token(self, request: web.Request) -> web.Response:
        form = await request.json() if request.content_type.endswith("json") else dict(await request.post())
        self.login_forms.append({k: v for k, v in form.items() if k != "password"})
        if form.get("grant_type") != "password":
            return _error(400, "unsupported_grant_type", "Only the password grant is supported here")
        user = next((u for u in self.users.values() if u.email == form.get("username")), None)
        if user is None or not user.password or user.password != form.get("password"):
            return _error(401, "invalid_credentials", "Invalid email or password")
        if user.mfa and not form.get("otp_token"):
            return _error(401, "otp_token_required", "You must provide a 2FA token")
        issued_at = self.now()
        lifetime = int(form.get("expires_in") or 604800)
        access_token = f"fake-jwt-{uuid.uuid4().hex}"
        self.tokens[access_token] = (user.id, issued_at + lifetime)
        token_id = str(next(self._ids))
        body = {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": lifetime,
            "expires_at": datetime.fromtimestamp(issued_at + lifetime, UTC).isoformat(),
            "created_at": datetime.fromtimestamp(issued_at, UTC).isoformat(),
            "scope": form.get("scope", "manage"),
            "id": token_id,
            "_type": "token",
            "_links": {"self": self._href("tokens", token_id), "user": self._href("users", user.id)},
        }
        return web.json_response(body, status=201, content_type="application/hal+json")

    async def _org_users(self, request: web.Request) -> web.Response:
        org = request.match_info["org"]
        if org not in self.organizations:
            raise LookupError("organization")
        in_org = {m["user"] for m in self.memberships.values() if self.roles[m["role"]]["organization"] == org}
        return self._collection(request, "users", [self._user_json(self.users[uid]) for uid in sorted(in_org)])

    async def _get_role(self, request: web.Request) -> web.Response:
        role_id = request.match_info["role"]
        if role_id not in self.roles:
            raise LookupError("role")
        return web.json_response(self._role_json(role_id), content_type="application/hal+json")

    async def _role_memberships(self, request: web.Request) -> web.Response:
        role_id = request.match_info["role"]
        if role_id not in self.roles:
            raise LookupError("role")
        items = [self._membership_json(mid) for mid, m in self.memberships.items() if m["role"] == role_id]
        return self._collection(request, "memberships", items)

    async def _create_membership(self, request: web.Request) -> web.Response:
        role_id = request.match_info["role"]
        if role_id not in self.roles:
            raise LookupError("role")
        if not self._may_manage(request[_CALLER], role_id):
            return _error(403, "forbidden", "You are not allowed to manage this role")
        user_id = str((await request.json()).get("user_url", "")).rstrip("/").rsplit("/", 1)[-1]
        if user_id not in self.users:
            return _error(422, "unprocessable_entity", "User can't be blank")
        if self.has_role(role_id, user_id):
            return _error(422, "unprocessable_entity", "User has already been taken")
        membership_id = self.add_membership(role_id, user_id)
        return web.json_response(self._membership_json(membership_id), status=201, content_type="application/hal+json")

    async def _delete_membership(self, request: web.Request) -> web.Response:
        membership_id = request.match_info["membership"]
        if membership_id not in self.memberships:
            raise LookupError("membership")
        if not self._may_manage(request[_CALLER], self.memberships[membership_id]["role"]):
            return _error(403, "forbidden", "You are not allowed to manage this role")
        del self.memberships[membership_id]
        return web.Response(status=204)

    async def _user_roles(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user"]
        if user_id not in self.users:
            raise LookupError("user")
        role_ids = sorted({m["role"] for m in self.memberships.values() if m["user"] == user_id})
        return self._collection(request, "roles", [self._role_json(rid) for rid in role_ids])


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"code": status, "error": error, "message": message}, status=status)
