"""The Aptible integration: users, roles and role memberships of one organization, as a bot user.

Users, roles and memberships live in Aptible's Auth API (auth_url), which speaks HAL: collections
under `_embedded.<name>`, links under `_links`. jitbot logs in with the OAuth2 password grant, keeps
the token until shortly before it expires, and logs in again on any 401 (tokens can be revoked
early). A bot user with interactive MFA cannot log in unattended, so that is a permanent error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import structlog
from pydantic import Field, field_validator

from core.clock import Clock, SystemClock
from core.errors import StrategyUnavailable, TargetNotFound
from core.retry import Sleep
from core.schema import IntegrationConfig, SecretStr
from strategies.http import ApiCaller, http_base_url, json_object

log = structlog.get_logger(__name__)

TOKEN_LIFETIME_SECONDS = 3600
TOKEN_REFRESH_MARGIN_SECONDS = 60
MFA_ERRORS = frozenset({"otp_token_required", "u2f_token_required", "webauthn_token_required", "mfa_required"})
_MAX_PAGES = 1000
_HAL = "application/hal+json"


class AptibleIntegrationConfig(IntegrationConfig):
    """An Aptible organization and the bot user (without interactive MFA) that manages its roles."""

    type: Literal["aptible"]
    organization_id: Annotated[str, Field(min_length=1)]
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr
    auth_url: str = "https://auth.aptible.com"
    # The Deploy API (apps, databases). Role memberships live in the Auth API, so nothing calls it
    # yet; the key is accepted so one integration block serves future Deploy API checks too.
    api_url: str = "https://api.aptible.com"

    @field_validator("auth_url", "api_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return http_base_url(value)


@dataclass(frozen=True)
class AptibleUser:
    """An Aptible user: id, email and the href memberships point at."""

    id: str
    email: str
    href: str


@dataclass(frozen=True)
class AptibleRole:
    """An Aptible role and the organization it belongs to."""

    id: str
    name: str
    organization_id: str


@dataclass(frozen=True)
class AptibleMembership:
    """One user's membership of one role."""

    id: str
    user_id: str


def _link_id(resource: Mapping[str, Any], rel: str) -> str:
    """The id at the end of `_links.<rel>.href` ('' when absent)."""
    return _last_segment(((resource.get("_links") or {}).get(rel) or {}).get("href") or "")


class AptibleIntegration:
    """One Aptible organization, reached through the Auth API with a bot user's password login."""

    config_model = AptibleIntegrationConfig

    def __init__(
        self,
        name: str,
        config: AptibleIntegrationConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock or SystemClock()
        # Aptible sends no reset time with a 429: it is retried like a 5xx, after Retry-After if given.
        self._api = ApiCaller(
            "Aptible",
            name,
            transport=transport,
            timeout=timeout,
            headers={"Accept": _HAL, "Content-Type": _HAL, "User-Agent": "jitbot"},
            sleep=sleep,
            attempts=max_attempts,
            error_text=_error_text,
            retry_wait=_retry_after,
        )
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()

    async def open(self) -> None:
        """Build the HTTP client (idempotent); the first call logs in."""
        await self._api.open()

    async def aclose(self) -> None:
        """Close the HTTP client and forget the token."""
        await self._api.aclose()
        self._token = None

    async def find_user_by_email(self, email: str) -> AptibleUser | None:
        """The organization's user with this email (or id), or None."""
        wanted = email.casefold()
        org = quote(self.config.organization_id, safe="")
        for user in await self._collection(f"/organizations/{org}/users", "users", action="list organization users"):
            if (user.get("email") or "").casefold() == wanted or user.get("id") == email:
                href = ((user.get("_links") or {}).get("self") or {}).get("href")
                href = href or f"{self.config.auth_url}/users/{user['id']}"
                return AptibleUser(id=user["id"], email=user.get("email", ""), href=href)
        return None

    async def organization_users(self) -> list[AptibleUser]:
        """Every user of the organization (all pages)."""
        org = quote(self.config.organization_id, safe="")
        users = await self._collection(f"/organizations/{org}/users", "users", action="list organization users")
        return [
            AptibleUser(
                id=u["id"],
                email=u.get("email", ""),
                href=((u.get("_links") or {}).get("self") or {}).get("href")
                or f"{self.config.auth_url}/users/{u['id']}",
            )
            for u in users
        ]

    async def get_role(self, role_id: str) -> AptibleRole:
        """The role, which must belong to the configured organization; else TargetNotFound."""
        response = await self._call("GET", f"/roles/{quote(role_id, safe='')}", action=f"read role {role_id}")
        if response.status_code == 404:
            raise self._role_not_found(role_id, "does not exist")
        role = _role(response.json())
        if role.organization_id != self.config.organization_id:
            raise self._role_not_found(role_id, f"belongs to another organization ({role.organization_id})")
        return role

    async def role_memberships(self, role_id: str) -> list[AptibleMembership]:
        """Every membership of the role."""
        items = await self._collection(
            f"/roles/{quote(role_id, safe='')}/memberships", "memberships", action=f"list members of role {role_id}"
        )
        return [AptibleMembership(id=str(m["id"]), user_id=_link_id(m, "user")) for m in items]

    async def add_membership(self, role_id: str, user_href: str) -> AptibleMembership:
        """Add the user to the role; a membership that already exists is returned as is."""
        response = await self._call(
            "POST",
            f"/roles/{quote(role_id, safe='')}/memberships",
            action=f"add a member to role {role_id}",
            json={"user_url": user_href},
        )
        if response.is_success:
            body = response.json()
            return AptibleMembership(id=str(body["id"]), user_id=_link_id(body, "user") or _last_segment(user_href))
        if response.status_code == 404:
            raise self._role_not_found(role_id, "does not exist")
        # A concurrent or earlier grant may have won (Aptible refuses duplicates): that is success.
        user_id = _last_segment(user_href)
        for membership in await self.role_memberships(role_id):
            if membership.user_id == user_id:
                return membership
        raise self._api.failed(f"add a member to role {role_id}", response)

    async def delete_membership(self, membership_id: str) -> None:
        """Delete the membership; already gone (404) is success."""
        response = await self._call(
            "DELETE", f"/memberships/{quote(membership_id, safe='')}", action=f"delete membership {membership_id}"
        )
        if response.status_code == 404:
            log.info("aptible_membership_already_gone", integration=self.name, membership_id=membership_id)
        elif not response.is_success:
            raise self._api.failed(f"delete membership {membership_id}", response)

    async def user_roles(self, user_id: str) -> list[AptibleRole]:
        """The user's roles in the configured organization."""
        roles = await self._collection(f"/users/{quote(user_id, safe='')}/roles", "roles", action="list a user's roles")
        return [r for r in map(_role, roles) if r.organization_id == self.config.organization_id]

    def _role_not_found(self, role_id: str, why: str) -> TargetNotFound:
        return TargetNotFound(
            f"Aptible role {role_id} {why} (integration {self.name}, organization {self.config.organization_id})",
            user_message="This target's Aptible role does not exist in the organization; tell the jitbot admins.",
        )

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def _collection(self, path: str, name: str, *, action: str) -> list[dict[str, Any]]:
        """Every item of a HAL collection, following `_links.next` on the Auth API only."""
        items: list[dict[str, Any]] = []
        url = f"{self.config.auth_url}{path}"
        for _ in range(_MAX_PAGES):
            response = await self._call("GET", url, action=action)
            if response.status_code == 404:
                raise TargetNotFound(f"Aptible could not {action}: {_error_text(response)}")
            if not response.is_success:
                raise self._api.failed(action, response)
            body = response.json()
            items.extend((body.get("_embedded") or {}).get(name) or [])
            next_url = ((body.get("_links") or {}).get("next") or {}).get("href")
            if not next_url:
                return items
            # The bearer token goes wherever we follow, so only links back to the Auth API are followed.
            if not next_url.startswith(f"{self.config.auth_url}/"):
                raise StrategyUnavailable(
                    f"Aptible paging link leaves {self.config.auth_url}; not followed", retryable=False
                )
            url = next_url
        raise StrategyUnavailable(f"Aptible returned more than {_MAX_PAGES} pages for: {action}", retryable=False)

    async def _call(self, method: str, path_or_url: str, *, action: str, json: Any = None) -> httpx.Response:
        """An authenticated call; on 401 log in again and retry once. 401/403 after that are permanent."""
        url = path_or_url if "://" in path_or_url else f"{self.config.auth_url}{path_or_url}"
        token = await self._access_token()
        response = await self._send(method, url, action=action, json=json, headers=_bearer(token))
        if response.status_code == 401:
            log.info("aptible_token_rejected", integration=self.name, action=action)
            token = await self._access_token(stale=token)
            response = await self._send(method, url, action=action, json=json, headers=_bearer(token))
        if response.status_code == 401:
            raise self._permanent(f"could not {action}: a freshly issued token was rejected ({_error_text(response)})")
        if response.status_code == 403:
            raise self._permanent(
                f"could not {action}: the bot user {self.config.username} lacks the permission "
                f"({_error_text(response)}); make it an Account Owner, or a Role Admin of the target roles"
            )
        return response

    async def _access_token(self, *, stale: str | None = None) -> str:
        """A valid token: the cached one, or a new login when it is near expiry or equals `stale`."""
        async with self._token_lock:
            fresh_enough = self._now() < self._token_expires_at - TOKEN_REFRESH_MARGIN_SECONDS
            if self._token is not None and self._token != stale and fresh_enough:
                return self._token
            self._token, self._token_expires_at = await self._log_in()
            return self._token

    async def _log_in(self) -> tuple[str, float]:
        """POST /tokens with the password grant; returns (access token, expiry epoch seconds)."""
        body = {
            "grant_type": "password",
            "username": self.config.username,
            "password": self.config.password.reveal(),
            "scope": "manage",
            "expires_in": TOKEN_LIFETIME_SECONDS,
        }
        requested_at = self._now()
        # The token endpoint is plain OAuth2 JSON, not HAL.
        response = await self._send(
            "POST",
            f"{self.config.auth_url}/tokens",
            action="log in",
            json=body,
            headers={"Content-Type": "application/json"},
        )
        if response.is_success:
            data = response.json()
            log.info("aptible_logged_in", integration=self.name, username=self.config.username)
            return data["access_token"], _expiry(data, requested_at)
        error = _error_code(response)
        if error in MFA_ERRORS:
            raise self._permanent(
                f"cannot log in as {self.config.username}: Aptible asks this user for an MFA code ({error}), and "
                "jitbot logs in unattended. Use a dedicated Aptible bot user without interactive MFA."
            )
        raise self._permanent(
            f"cannot log in as {self.config.username}: {response.status_code} {_error_text(response)}; "
            "check the username and password"
        )

    async def _send(
        self, method: str, url: str, *, action: str, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send with retries for transport errors, 429 and 5xx; return any other response."""
        return await self._api.send(method, url, action=action, json=json, headers=headers)

    def _permanent(self, what: str) -> StrategyUnavailable:
        return self._api.refused(
            what, user_message="jitbot's Aptible connection is not working; tell the jitbot admins."
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _role(data: Mapping[str, Any]) -> AptibleRole:
    return AptibleRole(id=str(data["id"]), name=data.get("name", ""), organization_id=_link_id(data, "organization"))


def _last_segment(href: str) -> str:
    return href.rstrip("/").rsplit("/", 1)[-1]


def _expiry(token: Mapping[str, Any], requested_at: float) -> float:
    """When the token expires: expires_in (seconds) if numeric, else expires_at, else our default."""
    try:
        return requested_at + float(token["expires_in"])
    except (KeyError, TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(token["expires_at"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return requested_at + TOKEN_LIFETIME_SECONDS


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (at most 30), or None (then the usual back-off) when absent or zero."""
    try:
        return min(float(response.headers["Retry-After"]), 30.0) or None
    except (KeyError, ValueError):
        return None


def _error_code(response: httpx.Response) -> str:
    return str((json_object(response) or {}).get("error") or "")


def _error_text(response: httpx.Response) -> str:
    """Aptible's `error: message`, or the status reason when the body is not JSON."""
    body = json_object(response) or {}
    if body.get("error") or body.get("message"):
        return f"{body.get('error', '')}: {body.get('message', '')}".strip(": ")
    return response.reason_phrase
