"""The `pagerduty` integration: is this person on call right now? (for hooks)

    integrations:
      pagerduty:
        type: pagerduty
        api_token: ${env:PAGERDUTY_TOKEN}     # a read-only REST API key is enough
        schedule_ids: [P1SCHED]               # optional default filters
        escalation_policy_ids: [P1POLICY]

    async def on_request(evt):
        if await evt.integrations.pagerduty.is_on_call(evt.user):
            return evt.approve("on call in PagerDuty")

Two REST v2 calls: `GET /users?query=<email>` (exact email match, case-insensitive) and
`GET /oncalls?user_ids[]=…&since=now&until=now` with `more`/`offset` pagination. Both are cached
briefly (`core.ttl_cache`), so a burst of requests does not spend the token's rate limit. Calls go
through the shared `strategies.http.ApiCaller` (answers at most 1 MiB once decoded, `timeout`
seconds per call): a 429 is waited out after `ratelimit-reset` / `Retry-After`, a bounded number of
times, while an outage fails at once, since a hook's time limit would not outlast retries anyway.
Every failure is a `PagerDutyError`, a `StrategyUnavailable` (`retryable` False for a refused token).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import structlog
from pydantic import Field, field_validator

from core.clock import Clock, SystemClock
from core.errors import StrategyUnavailable
from core.retry import Sleep
from core.schema import IntegrationConfig, SecretStr
from core.secrets import SecretRegistry
from core.ttl_cache import TTLCache
from strategies.http import ApiCaller, http_base_url, json_object

log = structlog.get_logger("jitbot.pagerduty")

DEFAULT_BASE_URL = "https://api.pagerduty.com"
USER_CACHE_SECONDS = 60.0
ONCALL_CACHE_SECONDS = 30.0
MAX_RATE_LIMIT_RETRIES = 3
MAX_RATE_LIMIT_WAIT = 30.0  # seconds; a longer wait would outlive any hook's time limit anyway
MAX_PAGES = 50  # 5,000 entries at limit=100: a guard against a server that always says more=true
PAGE_SIZE = 100
_ADMINS = "jitbot's PagerDuty connection is not working; tell the jitbot admins."

PdId = Annotated[str, Field(min_length=1)]


class PagerDutyIntegrationConfig(IntegrationConfig):
    """Keys of a `type: pagerduty` entry under `integrations:`."""

    type: Literal["pagerduty"]
    api_token: SecretStr
    base_url: str = DEFAULT_BASE_URL
    schedule_ids: list[PdId] = []
    escalation_policy_ids: list[PdId] = []

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)


class PagerDutyError(StrategyUnavailable):
    """PagerDuty could not answer (bad token, throttled, down); never contains the token."""


class PagerDutyIntegration:
    """A PagerDuty REST v2 client for hooks: `await is_on_call(user)`."""

    config_model = PagerDutyIntegrationConfig

    def __init__(
        self,
        name: str,
        config: PagerDutyIntegrationConfig,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        secrets: SecretRegistry | None = None,
    ) -> None:
        self.name = name
        self.config = config
        # The runtime's registry, which the loader handed the config: PagerDuty's error text is quoted.
        self.secrets = config.secret_registry if secrets is None else secrets
        self._clock = clock or SystemClock()
        self._api = ApiCaller(
            "PagerDuty",
            name,
            base_url=config.base_url,
            transport=transport,
            timeout=timeout,
            headers={
                "Accept": "application/vnd.pagerduty+json;version=2",
                "Content-Type": "application/json",
                "User-Agent": "jitbot",
            },
            sleep=sleep,
            attempts=MAX_RATE_LIMIT_RETRIES + 1,
            error_text=self._error_text,
            rate_limit_wait=_retry_after,
            retry_outages=False,
            error_type=PagerDutyError,
        )
        self._user_ids = TTLCache(USER_CACHE_SECONDS, monotonic=monotonic)
        self._oncall = TTLCache(ONCALL_CACHE_SECONDS, monotonic=monotonic)

    def _error_text(self, response: httpx.Response) -> str:
        # Scrubbed before it is cut: a secret straddling the cut would otherwise leave a part visible.
        return " ".join(self.secrets.scrub(_error_message(response)).split())[:200] or "no details"

    async def open(self) -> None:
        """Create the HTTP client (no request is made)."""
        await self._api.open()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()

    async def is_on_call(
        self,
        user: Any,
        *,
        schedule_ids: Sequence[str] | None = None,
        escalation_policy_ids: Sequence[str] | None = None,
    ) -> bool:
        """Whether `user` (anything with `.email`, or an email) is on call now; filters default to the config's.

        A person PagerDuty does not know is not on call. Pass `schedule_ids=[]` to drop a default filter.
        """
        email = user if isinstance(user, str) else getattr(user, "email", None)
        if not email:
            return False
        user_id = await self.find_user_id(email)
        if user_id is None:
            log.info("pagerduty.user_not_found", integration=self.name)
            return False
        schedules = tuple(sorted(self.config.schedule_ids if schedule_ids is None else schedule_ids))
        policies = tuple(
            sorted(self.config.escalation_policy_ids if escalation_policy_ids is None else escalation_policy_ids)
        )
        on_call: bool = await self._oncall.get_or_load(
            (user_id, schedules, policies), lambda: self._load_on_call(user_id, schedules, policies)
        )
        return on_call

    async def find_user_id(self, email: str) -> str | None:
        """The PagerDuty user id whose email is exactly `email` (case-insensitive), or None."""
        key = email.strip().lower()
        user_id: str | None = await self._user_ids.get_or_load(key, lambda: self._load_user_id(key))
        return user_id

    async def _load_user_id(self, email: str) -> str | None:
        offset = 0
        for _ in range(MAX_PAGES):
            page = await self._get(
                "/users", [("query", email), ("limit", PAGE_SIZE), ("offset", offset)], action="look up a user"
            )
            users = page.get("users") or []
            for candidate in users:
                if str(candidate.get("email", "")).lower() == email:
                    return str(candidate["id"])
            if not page.get("more") or not users:
                return None
            offset += len(users)
        return None

    async def _load_on_call(self, user_id: str, schedules: tuple[str, ...], policies: tuple[str, ...]) -> bool:
        now = self._clock.now().astimezone(UTC)
        stamp = _iso(now)
        params: list[tuple[str, Any]] = [("user_ids[]", user_id), ("since", stamp), ("until", stamp)]
        params += [("schedule_ids[]", s) for s in schedules]
        params += [("escalation_policy_ids[]", p) for p in policies]
        offset = 0
        for _ in range(MAX_PAGES):
            page = await self._get(
                "/oncalls", [*params, ("limit", PAGE_SIZE), ("offset", offset)], action="list on-calls"
            )
            entries = page.get("oncalls") or []
            if any(_current(entry, now) and _is_user(entry, user_id) for entry in entries):
                return True
            if not page.get("more") or not entries:
                return False
            offset += len(entries)
        return False

    async def _get(self, path: str, params: list[tuple[str, Any]], *, action: str) -> dict[str, Any]:
        """GET `path` and return its JSON object; any other answer is a PagerDutyError."""
        token = self.config.api_token.reveal()
        response = await self._api.send(
            "GET", path, action=action, params=params, headers={"Authorization": f"Token token={token}"}
        )
        status = response.status_code
        if 200 <= status < 300:
            body = json_object(response)
            if body is None:
                raise self._api.refused(
                    f"could not {action}: PagerDuty returned a body that is not a JSON object", user_message=_ADMINS
                )
            return body
        if status in (401, 403):
            raise self._api.refused(
                f"could not {action}: HTTP {status}: PagerDuty refused the API token (check "
                f"integrations.{self.name}.api_token and that it may read users and on-calls)",
                user_message=_ADMINS,
            )
        raise self._api.refused(
            f"could not {action}: HTTP {status}: {self._error_text(response)}", user_message=_ADMINS
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _current(entry: Mapping[str, Any], now: datetime) -> bool:
    """An entry covers `now`; a null start or end is open (permanent on-call)."""
    try:
        start, end = _parse_time(entry.get("start")), _parse_time(entry.get("end"))
    except ValueError:
        return False
    # A second of slack: PagerDuty answered for since=until=now, our clock may be a hair behind.
    return (start is None or start <= now + timedelta(seconds=1)) and (end is None or end > now)


def _is_user(entry: Mapping[str, Any], user_id: str) -> bool:
    return str((entry.get("user") or {}).get("id", user_id)) == user_id


def _retry_after(response: httpx.Response) -> float:
    for header in ("ratelimit-reset", "retry-after"):
        value = response.headers.get(header)
        if value:
            try:
                return min(max(float(value), 0.0), MAX_RATE_LIMIT_WAIT)
            except ValueError:
                continue
    return 1.0


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        text = str(error.get("message") or "") + "".join(f"; {e}" for e in error.get("errors") or [])
    except (ValueError, AttributeError):
        text = response.text
    return text
