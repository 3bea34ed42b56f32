"""The Okta integration: user and group lookups, group membership changes, and a group check for hooks.

Only groups of type OKTA_GROUP can be changed through the API; APP_GROUP groups (AD, LDAP, app
imports) belong to their source, so the strategy refuses them up front rather than fail at grant.
Okta throttles per endpoint and per token; every response carries X-Rate-Limit-* headers, and a 429
is waited out until X-Rate-Limit-Reset (bounded), measured against the server's Date header.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
import structlog
from pydantic import field_validator, model_validator

from core.clock import Clock, SystemClock
from core.errors import StrategyUnavailable, SubjectNotFound, TargetNotFound
from core.retry import IN_CALL, Sleep
from core.schema import IntegrationConfig, SecretStr
from core.ttl_cache import TTLCache
from strategies.http import ApiCaller, http_base_url, json_object

log = structlog.get_logger(__name__)

MANAGEABLE_GROUP_TYPE = "OKTA_GROUP"
INACTIVE_USER_STATUSES = frozenset({"DEPROVISIONED", "SUSPENDED"})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")
_MAX_PAGES = 1000  # a Link loop in a misbehaving proxy must not spin forever


class OktaIntegrationConfig(IntegrationConfig):
    """An Okta org: `domain` (example.okta.com) or a full `base_url`, and an SSWS `api_token`."""

    type: Literal["okta"]
    domain: str | None = None
    base_url: str | None = None
    api_token: SecretStr

    @field_validator("domain")
    @classmethod
    def _domain_is_a_host_name(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.match(value):
            raise ValueError(f"'{value}' is not a host name like example.okta.com (use base_url for a full URL)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str | None) -> str | None:
        return None if value is None else http_base_url(value)

    @model_validator(mode="after")
    def _exactly_one_location(self) -> OktaIntegrationConfig:
        if (self.domain is None) == (self.base_url is None):
            raise ValueError("set exactly one of domain (example.okta.com) or base_url (https://…)")
        return self

    @property
    def url(self) -> str:
        """The org's base URL."""
        return self.base_url or f"https://{self.domain}"


@dataclass(frozen=True)
class OktaUser:
    """The parts of an Okta user jitbot uses."""

    id: str
    status: str
    login: str
    email: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OktaUser:
        """Build from an Okta User object."""
        profile = data.get("profile") or {}
        return cls(data["id"], data.get("status", ""), profile.get("login", ""), profile.get("email"))


@dataclass(frozen=True)
class OktaGroup:
    """The parts of an Okta group jitbot uses."""

    id: str
    type: str
    name: str


class OktaIntegration:
    """One Okta org: user and group lookups, membership changes, and `is_user_in_group` for hooks."""

    config_model = OktaIntegrationConfig

    def __init__(
        self,
        name: str,
        config: OktaIntegrationConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_rate_limit_wait: float = 60.0,
        membership_cache_ttl: float = 45.0,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock or SystemClock()
        self._api = ApiCaller(
            "Okta",
            name,
            base_url=config.url,
            transport=transport,
            timeout=timeout,
            headers={"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "jitbot"},
            sleep=sleep,
            attempts=max_attempts,
            error_text=_error_text,
            rate_limit_wait=self._rate_limit_wait,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self._membership_cache = TTLCache(membership_cache_ttl, monotonic=monotonic)

    async def open(self) -> None:
        """Build the HTTP client (idempotent)."""
        await self._api.open()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()

    async def find_user(self, login_or_email: str) -> OktaUser | None:
        """Return the user with this login (or, failing that, this email), or None."""
        response = await self._request("GET", f"/api/v1/users/{_seg(login_or_email)}", action="look up a user")
        if response.status_code != 404:
            return OktaUser.from_json(response.json())
        if "@" not in login_or_email:
            return None
        # Logins need not be emails (short logins, renamed domains): fall back to a profile search.
        escaped = login_or_email.replace("\\", "\\\\").replace('"', '\\"')
        params = {"search": f'profile.email eq "{escaped}"'}
        wanted = login_or_email.casefold()
        found = [
            OktaUser.from_json(item)
            async for item in self._pages("/api/v1/users", params=params, action="search users by email")
            if ((item.get("profile") or {}).get("email") or "").casefold() == wanted
        ]
        live = [user for user in found if user.status not in INACTIVE_USER_STATUSES] or found
        if len(live) > 1:
            raise SubjectNotFound(
                f"{len(live)} Okta users have the email {login_or_email}",
                user_message=f"Several Okta accounts have the email {login_or_email}; "
                "ask an admin to store your Okta login for jitbot.",
            )
        return live[0] if live else None

    async def get_group(self, group_id: str) -> OktaGroup:
        """Return the group, or raise TargetNotFound."""
        response = await self._request("GET", f"/api/v1/groups/{_seg(group_id)}", action=f"read group {group_id}")
        if response.status_code == 404:
            raise TargetNotFound(
                f"Okta group {group_id} does not exist (integration {self.name})",
                user_message="This target's Okta group does not exist; tell the jitbot admins.",
            )
        data = response.json()
        return OktaGroup(id=data["id"], type=data.get("type", ""), name=(data.get("profile") or {}).get("name", ""))

    async def require_manageable_group(self, group_id: str) -> OktaGroup:
        """Return the group if its members can be changed through the API, else raise TargetNotFound."""
        group = await self.get_group(group_id)
        if group.type != MANAGEABLE_GROUP_TYPE:
            raise TargetNotFound(
                f"Okta group {group_id} ('{group.name}') is of type {group.type}: its members are managed by "
                f"its source (directory or app import), so jitbot cannot change them; "
                f"use a group of type {MANAGEABLE_GROUP_TYPE}",
                user_message="This target's Okta group cannot be changed by jitbot; tell the jitbot admins.",
            )
        return group

    async def add_user_to_group(self, group_id: str, user_id: str) -> None:
        """Add the user to the group; already a member is success (Okta answers 204 either way)."""
        path = self._membership_path(group_id, user_id)
        response = await self._request("PUT", path, action=f"add a user to group {group_id}")
        self._membership_cache.clear()
        if response.status_code == 404:
            raise TargetNotFound(f"Okta group {group_id} or user {user_id} does not exist: {_error_text(response)}")

    async def remove_user_from_group(self, group_id: str, user_id: str) -> None:
        """Remove the user from the group; a membership (or group) already gone is success."""
        path = self._membership_path(group_id, user_id)
        response = await self._request("DELETE", path, action=f"remove a user from group {group_id}")
        self._membership_cache.clear()
        if response.status_code == 404:
            log.info("okta_membership_already_gone", integration=self.name, group_id=group_id, user_id=user_id)

    async def is_member(self, group_id: str, user_id: str) -> bool:
        """Whether the user is in the group right now (reads the user's groups, all pages)."""
        async for group in self._pages(f"/api/v1/users/{_seg(user_id)}/groups", action="list a user's groups"):
            if group.get("id") == group_id:
                return True
        return False

    async def group_members(self, group_id: str) -> list[OktaUser]:
        """Every user in the group (all pages, following Link rel="next"); TargetNotFound if it does not exist."""
        response = await self._request("GET", f"/api/v1/groups/{_seg(group_id)}", action=f"read group {group_id}")
        if response.status_code == 404:
            raise TargetNotFound(f"Okta group {group_id} does not exist (integration {self.name})")
        # strict: a group deleted while its pages are read must fail the listing, not shorten it.
        pages = self._pages(f"/api/v1/groups/{_seg(group_id)}/users", action=f"list group {group_id}", strict=True)
        return [OktaUser.from_json(item) async for item in pages]

    async def is_user_in_group(self, user: Any, group_id: str) -> bool:
        """For hooks: whether `user` (with .identity or .email) is in the group; cached briefly."""
        identity = getattr(user, "identity", None) or getattr(user, "email", None)
        if not identity:
            return False

        async def load() -> bool:
            found = await self.find_user(identity)
            return found is not None and await self.is_member(group_id, found.id)

        member: bool = await self._membership_cache.get_or_load((identity.casefold(), group_id), load)
        return member

    @staticmethod
    def _membership_path(group_id: str, user_id: str) -> str:
        return f"/api/v1/groups/{_seg(group_id)}/users/{_seg(user_id)}"

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def _pages(
        self, url: str, *, action: str, params: Mapping[str, str] | None = None, strict: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every item of a list endpoint, following Link rel="next" on the same origin only.

        A 404 ends the listing quietly, unless `strict`: then it raises TargetNotFound."""
        origin = httpx.URL(self.config.url)
        for _ in range(_MAX_PAGES):
            response = await self._request("GET", url, params=params, action=action)
            if response.status_code == 404:
                if strict:
                    raise TargetNotFound(f"Okta could not {action}: {_error_text(response)} (integration {self.name})")
                return
            for item in response.json():
                yield item
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return
            target = httpx.URL(next_url)
            # The token goes wherever we follow, so a next link to another host is refused, not followed.
            if (target.scheme, target.host, target.port) != (origin.scheme, origin.host, origin.port):
                raise StrategyUnavailable(f"Okta paging link leaves {self.config.url}; not followed", retryable=False)
            url, params = next_url, None
        raise StrategyUnavailable(f"Okta returned more than {_MAX_PAGES} pages for: {action}", retryable=False)

    async def _request(
        self, method: str, url: str, *, action: str, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send one call, waiting out 429s and retrying 5xx; return 2xx and 404 responses, raise on the rest."""
        headers = {"Authorization": f"SSWS {self.config.api_token.reveal()}"}
        response = await self._api.send(method, url, action=action, params=params, headers=headers)
        if response.status_code in (401, 403):
            raise self._auth_error(response, action)
        if response.status_code < 300 or response.status_code == 404:
            return response
        raise self._api.failed(action, response)

    def _rate_limit_wait(self, response: httpx.Response) -> float:
        """Seconds until X-Rate-Limit-Reset, measured against the server's Date (clock skew) if present."""
        try:
            reset_at = float(response.headers["X-Rate-Limit-Reset"])
        except (KeyError, ValueError):
            return IN_CALL.delay(1)  # no reset time given: the first pause of any retry
        now = self._now()
        if date := response.headers.get("Date"):
            try:
                now = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                pass
        # Reset and Date have one-second resolution: one more second makes sure the window has turned.
        return max(reset_at - now, 0.0) + 1.0

    def _auth_error(self, response: httpx.Response, action: str) -> StrategyUnavailable:
        if response.status_code == 401:
            why = (
                "the API token is invalid, revoked, or expired (Okta revokes tokens unused for 30 days, and tokens "
                "of deactivated admins); create a new token and update api_token"
            )
        else:
            why = (
                "the admin who created the API token lacks the permission; give that admin Group Membership "
                "Administrator (or a custom role with okta.groups.members.manage) over the target groups"
            )
        return self._api.refused(
            f"could not {action}: {response.status_code} {_error_text(response)}: {why}",
            user_message="jitbot's Okta connection is not allowed to do this; tell the jitbot admins.",
        )


def _seg(value: str) -> str:
    """One URL path segment: logins hold '@' and may hold '/'."""
    return quote(value, safe="")


def _error_text(response: httpx.Response) -> str:
    """Okta's errorCode and errorSummary, or the status reason when the body is not Okta JSON."""
    body = json_object(response) or {}
    if body.get("errorCode"):
        return f"{body['errorCode']} {body.get('errorSummary', '')}".strip()
    return response.reason_phrase
