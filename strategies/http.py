"""HTTP plumbing shared by the HTTP integrations and the webhook strategy.

- `http_url` / `http_base_url`: field checks for http(s) URLs in config models.
- `json_object(response)`: a JSON object body or None, for reading error bodies.
- `backoff(attempt)`: the pause before a retry (0.5 s, 1 s, 2 s, …).
- `ApiCaller`: owns a named integration's httpx client and sends its requests, retrying connection
  errors, 5xx and 429 a bounded number of times; it builds the `core.errors` exceptions those
  integrations raise, all worded "<System> integration '<name>' …".

What differs per system stays in its module and is passed in: how long a 429 asks us to wait
(Okta's X-Rate-Limit-Reset against Date, Aptible's Retry-After), how an error body reads, and
what the returned response means (token refresh on 401, which 4xx count as success).
"""

from __future__ import annotations

import math
from typing import Any, Awaitable, Callable, Mapping

import httpx
import structlog

from core.errors import StrategyError, StrategyUnavailable
from strategies.aiohttp_transport import AiohttpTransport

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[Any]]


def http_url(value: str) -> str:
    """Check that `value` is an http:// or https:// URL with a host; return it unchanged."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    # The value itself stays out of the message: a URL may carry a token in its query or user info.
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL")
    return value


def http_base_url(value: str) -> str:
    """`http_url` without a trailing slash, so API paths can be appended to it."""
    return http_url(value).rstrip("/")


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body when it is a JSON object, else None (error bodies from proxies are often HTML or empty)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0.5, 1, 2, …)."""
    return 0.5 * 2 ** (attempt - 1)


class ApiCaller:
    """One named integration's HTTP client: sends with bounded retries, and words its errors.

    `open()` builds the client (explicit time-outs, `headers` on every request, paths relative to
    `base_url` when given); `send` opens it on first use and `aclose()` closes it.

    A 429 is waited out for `rate_limit_wait(response)` seconds when that is given (and refused when
    the wait exceeds `max_rate_limit_wait`); without it a 429 is retried like a 5xx, after
    `retry_wait(response, attempt)` seconds (default: `backoff(attempt)`).
    """

    def __init__(
        self,
        system: str,
        name: str,
        *,
        headers: Mapping[str, str],
        sleep: Sleep,
        attempts: int,
        error_text: Callable[[httpx.Response], str],
        base_url: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        rate_limit_wait: Callable[[httpx.Response], float] | None = None,
        max_rate_limit_wait: float = math.inf,
        retry_wait: Callable[[httpx.Response, int], float] | None = None,
    ) -> None:
        self.system = system
        self.name = name
        self.error_text = error_text
        self._headers = dict(headers)
        self._base_url = base_url
        self._transport = transport
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._client: httpx.AsyncClient | None = None
        self._sleep = sleep
        self._attempts = attempts
        self._rate_limit_wait = rate_limit_wait
        self._max_rate_limit_wait = max_rate_limit_wait
        self._retry_wait = retry_wait or (lambda _response, attempt: backoff(attempt))

    async def open(self) -> None:
        """Build the HTTP client (idempotent)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._base_url, timeout=self._timeout, transport=self._transport or AiohttpTransport(),
                headers=self._headers,
            )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, method: str, url: str, *, action: str, **kwargs: Any) -> httpx.Response:
        """Send `request(method, url, **kwargs)`, retrying as above; return any other response."""
        await self.open()
        assert self._client is not None
        for attempt in range(1, self._attempts + 1):
            last_attempt = attempt == self._attempts
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if last_attempt:
                    raise self.unavailable(f"could not {action}: {type(exc).__name__}") from exc
                await self._sleep(backoff(attempt))
                continue
            status = response.status_code
            if status == 429 and self._rate_limit_wait is not None:
                wait = self._rate_limit_wait(response)
                if last_attempt or wait > self._max_rate_limit_wait:
                    raise self.unavailable(
                        f"is rate limited ({self.error_text(response)}), resetting in {wait:.0f}s; could not {action}"
                    )
                log.info(f"{self.system.lower()}_rate_limited", integration=self.name, action=action, wait_seconds=wait)
                await self._sleep(wait)
                continue
            if status == 429 or status >= 500:
                if last_attempt:
                    raise self.unavailable(f"answered {status} ({self.error_text(response)}); could not {action}")
                await self._sleep(self._retry_wait(response, attempt))
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def unavailable(self, what: str) -> StrategyUnavailable:
        """A passing outage (retryable): '<System> integration '<name>' <what>'."""
        return StrategyUnavailable(
            f"{self.system} integration '{self.name}' {what}",
            retryable=True,
            user_message=f"{self.system} is not answering right now; jitbot will report or retry.",
        )

    def refused(self, what: str, *, user_message: str) -> StrategyUnavailable:
        """A refusal that retrying cannot fix (credentials, permissions, MFA)."""
        return StrategyUnavailable(f"{self.system} integration '{self.name}' {what}", retryable=False,
                                   user_message=user_message)

    def failed(self, action: str, response: httpx.Response) -> StrategyError:
        """An answer to `action` that is neither success nor one the caller handles."""
        return StrategyError(
            f"{self.system} integration '{self.name}' could not {action}: "
            f"{response.status_code} {self.error_text(response)}"
        )
