"""HTTP plumbing shared by the HTTP integrations and the webhook strategy.

- `http_client(...)`: the one way our code builds an httpx client. Every answer goes through
  `LimitedTransport`: at most `MAX_RESPONSE_BYTES` (1 MiB) are read, counted after decoding, and
  the whole exchange has a deadline; over the cap is `ResponseTooLarge` (an `httpx.DecodingError`).
- `http_url` / `http_base_url`: field checks for http(s) URLs in config models.
- `json_object(response)`: a JSON object body or None, for reading error bodies.
- `ApiCaller`: owns a named integration's httpx client and sends its requests, retrying connection
  errors, 5xx and 429 a bounded number of times (`core.retry`: the in-call policy); it builds the
  `core.errors` exceptions those integrations raise, all worded "<System> integration '<name>' …".

What differs per system stays in its module and is passed in: how long a 429 asks us to wait
(Okta's X-Rate-Limit-Reset against Date, Aptible's Retry-After, PagerDuty's ratelimit-reset), how
an error body reads, whether outages are retried at all, and what the returned response means
(token refresh on 401, which 4xx count as success).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx
import structlog

from core.errors import StrategyError, StrategyUnavailable
from core.retry import IN_CALL, Retry, Sleep, call
from strategies.aiohttp_transport import AiohttpTransport

log = structlog.get_logger(__name__)

MAX_RESPONSE_BYTES = 1 << 20
# Only encodings that can be decoded a bounded piece at a time are offered (httpx would add br and
# zstd when their packages are installed, and decode them whole).
ACCEPT_ENCODING = "gzip, deflate"
_DROPPED_RESPONSE_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


class ResponseTooLarge(httpx.DecodingError):
    """An answer that would take more than the cap once decoded; reading stopped at the cap.

    `status_code` is the answer's status, so a caller can still tell an outage (5xx) from a refusal.
    """

    def __init__(self, limit: int, *, status_code: int, request: httpx.Request) -> None:
        super().__init__(f"the answer (HTTP {status_code}) is larger than {size_text(limit)}", request=request)
        self.status_code = status_code


def size_text(limit: int) -> str:
    """A byte count as people write it: '1 MiB', or '1500 bytes'."""
    return f"{limit >> 20} MiB" if limit and limit % (1 << 20) == 0 else f"{limit} bytes"


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


class ApiCaller:
    """One named integration's HTTP client: sends with bounded retries, and words its errors.

    `open()` builds the client (`http_client`: `timeout` seconds per exchange, answers capped,
    `headers` on every request, paths relative to `base_url` when given); `send` opens it on first
    use and `aclose()` closes it. An answer over the cap keeps the meaning of its status: a 5xx or
    429 is retried like any other, anything else is a final (non-retryable) error.

    `attempts` tries in all, paused as `core.retry.IN_CALL` says. A 429 is waited out for
    `rate_limit_wait(response)` seconds when that is given (and refused when the wait exceeds
    `max_rate_limit_wait`); without it a 429 is retried like a 5xx, after `retry_wait(response)`
    seconds when that gives a number. With `retry_outages=False` a connection error or a 5xx fails
    at once (only 429s are waited out). Errors are `error_type` (a `StrategyUnavailable`).
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
        retry_wait: Callable[[httpx.Response], float | None] | None = None,
        retry_outages: bool = True,
        error_type: type[StrategyUnavailable] = StrategyUnavailable,
    ) -> None:
        self.system = system
        self.name = name
        self.error_text = error_text
        self._headers = dict(headers)
        self._base_url = base_url
        self._transport = transport
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._sleep = sleep
        self._policy = replace(IN_CALL, attempts=attempts)
        self._rate_limit_wait = rate_limit_wait
        self._max_rate_limit_wait = max_rate_limit_wait
        self._retry_wait = retry_wait or (lambda _response: None)
        self._retry_outages = retry_outages
        self._error_type = error_type

    async def open(self) -> None:
        """Build the HTTP client (idempotent)."""
        if self._client is None:
            self._client = http_client(
                timeout=self._timeout,
                transport=self._transport,
                base_url=self._base_url,
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

        def note_wait(error: BaseException, seconds: float) -> None:
            if isinstance(error, _RateLimited):
                log.info(
                    f"{self.system.lower()}_rate_limited", integration=self.name, action=action, wait_seconds=seconds
                )

        return await call(
            lambda: self._send_once(method, url, action, kwargs),
            self._policy,
            sleep=self._sleep,
            before_sleep=note_wait,
        )

    async def _send_once(self, method: str, url: str, action: str, kwargs: Mapping[str, Any]) -> httpx.Response:
        """One exchange: the response to return, or `Retry` / a final error."""
        assert self._client is not None
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.DecodingError as exc:
            status = exc.status_code if isinstance(exc, ResponseTooLarge) else 0
            if not (status == 429 or status >= 500):
                # An oversized or undecodable answer comes back the same when asked again.
                raise self.refused(
                    f"could not {action}: {exc}",
                    user_message=f"{self.system} sent an answer jitbot will not read; tell the jitbot admins.",
                ) from None
            # An outage's error page is still an outage, however large: retried like any 5xx.
            raise self._outage(self.unavailable(f"could not {action}: {exc}")) from None
        except httpx.TransportError as exc:
            raise self._outage(
                self.unavailable(f"could not {action}: cannot reach {self.system} ({type(exc).__name__})")
            ) from exc
        status = response.status_code
        if status == 429 and self._rate_limit_wait is not None:
            wait = self._rate_limit_wait(response)
            if wait > self._max_rate_limit_wait:
                raise self.unavailable(
                    f"is rate limited ({self.error_text(response)}), resetting in {wait:.0f}s; could not {action}"
                )
            tries = (self._policy.attempts or 1) - 1
            raise _RateLimited(
                self.unavailable(
                    f"answered HTTP 429: still rate limited after {tries} retries ({self.error_text(response)}); "
                    f"could not {action}"
                ),
                wait=wait,
            )
        if status == 429 or status >= 500:
            failure = self.unavailable(f"answered {status} ({self.error_text(response)}); could not {action}")
            raise self._outage(failure, wait=self._retry_wait(response))
        return response

    def _outage(self, error: StrategyUnavailable, *, wait: float | None = None) -> Exception:
        """What to raise for an outage: a `Retry` when outages are retried, else the error itself."""
        return Retry(error, wait=wait) if self._retry_outages else error

    def unavailable(self, what: str) -> StrategyUnavailable:
        """A passing outage (retryable): '<System> integration '<name>' <what>'."""
        return self._error_type(
            f"{self.system} integration '{self.name}' {what}",
            retryable=True,
            user_message=f"{self.system} is not answering right now; jitbot will report or retry.",
        )

    def refused(self, what: str, *, user_message: str) -> StrategyUnavailable:
        """A refusal that retrying cannot fix (credentials, permissions, MFA)."""
        return self._error_type(
            f"{self.system} integration '{self.name}' {what}", retryable=False, user_message=user_message
        )

    def failed(self, action: str, response: httpx.Response) -> StrategyError:
        """An answer to `action` that is neither success nor one the caller handles."""
        return StrategyError(
            f"{self.system} integration '{self.name}' could not {action}: "
            f"{response.status_code} {self.error_text(response)}"
        )


class _RateLimited(Retry):
    """A 429 to wait out for the time the server asked."""


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: what a target answers never rides along on the next request.

    (It also spares httpx's per-answer cookie parsing through the standard library, ~30 µs a call.)
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Keep none of the answer's cookies."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        """Keep no cookie."""


def http_client(
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
    **options: Any,
) -> httpx.AsyncClient:
    """An httpx client over aiohttp (or `transport`): answers capped, each exchange over within `timeout` seconds.

    `options` go to `httpx.AsyncClient` (base_url, headers, …). Redirects are never followed: a
    redirect would carry our credentials or a signed body to an address nobody configured. No cookie
    is kept between requests: each call carries only what its caller put in it.
    """
    limited = LimitedTransport(transport or AiohttpTransport(), max_bytes=max_bytes, deadline=timeout)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        transport=limited,
        follow_redirects=False,
        cookies=_NoCookies(),
        **options,
    )


class LimitedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: reads each answer whole within `max_bytes` (decoded) and `deadline` seconds.

    httpx would decode Content-Encoding itself, a whole chunk at once: 64 KB of gzip becomes 64 MB
    before anything can count it. Here the encoded stream is decoded piece by piece with an output
    limit, and the answer handed to httpx is already decoded (its Content-Encoding removed). With
    several encodings each stage is held to the cap, which may refuse an answer a little early.
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, max_bytes: int = MAX_RESPONSE_BYTES, deadline: float
    ) -> None:
        self._inner = inner
        self._max_bytes = max_bytes
        self._deadline = deadline

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the wrapped transport and return the answer read within the limits."""
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        try:
            # httpx's time-outs are per read; a body dripped a byte at a time would never end.
            async with asyncio.timeout(self._deadline):
                response = await self._inner.handle_async_request(request)
                try:
                    content = await _read_within(response, self._max_bytes, request)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete answer within {self._deadline:g}s", request=request) from None
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROPPED_RESPONSE_HEADERS]
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=request, extensions=response.extensions
        )

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


async def _read_within(response: httpx.Response, limit: int, request: httpx.Request) -> bytes:
    """The decoded body, or ResponseTooLarge as soon as the encoded or the decoded bytes pass `limit`."""
    decoders = _decoders(response.headers.get("content-encoding", ""), request)
    too_large = ResponseTooLarge(limit, status_code=response.status_code, request=request)
    body = bytearray()
    received = 0
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):  # an async transport answers with an async stream
        raise TypeError(f"{type(stream).__name__} is not an async byte stream")
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise too_large
            for decoder in decoders:
                chunk = decoder.decode(chunk, limit - len(body))
                if len(chunk) > limit - len(body):
                    raise too_large
            body += chunk
        tail = b""
        for decoder in decoders:
            tail = decoder.decode(tail, limit - len(body)) + decoder.flush()
            if len(tail) > limit - len(body):
                raise too_large
        body += tail
    except zlib.error as exc:
        encoding = response.headers.get("content-encoding")
        raise httpx.DecodingError(f"the answer's {encoding} body is corrupt ({exc})", request=request) from None
    return bytes(body)


def _decoders(content_encoding: str, request: httpx.Request) -> list[_Inflater]:
    """Decoders in the order to apply them (the reverse of the order the encodings were applied)."""
    decoders = []
    for name in reversed([value.strip().lower() for value in content_encoding.split(",") if value.strip()]):
        if name in ("gzip", "x-gzip"):
            decoders.append(_Inflater(zlib.MAX_WBITS | 16))
        elif name == "deflate":
            decoders.append(_Inflater(zlib.MAX_WBITS, raw_fallback=True))
        elif name != "identity":
            raise httpx.DecodingError(
                f"the answer is encoded with {name!r}, which jitbot did not ask for and does not read", request=request
            )
    return decoders


class _Inflater:
    """Bounded zlib decoding: one piece of input never yields more than `room + 1` bytes."""

    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._inflate = zlib.decompressobj(wbits)
        # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate (httpx reads both).
        self._raw_fallback = raw_fallback
        self._started = False

    def decode(self, data: bytes, room: int) -> bytes:
        """Decode `data`, stopping once the output passes `room` bytes (the caller refuses the answer then)."""
        if not data:
            return b""
        try:
            out = self._inflate.decompress(data, room + 1)
        except zlib.error:
            if self._started or not self._raw_fallback:
                raise
            self._inflate, self._raw_fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
            return self.decode(data, room)
        self._started = True
        return out

    def flush(self) -> bytes:
        """What the decoder still holds once the input has ended (all input was consumed below the limit)."""
        return self._inflate.flush()
