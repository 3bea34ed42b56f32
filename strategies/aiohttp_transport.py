"""An httpx transport that sends through aiohttp, so strategies keep httpx's API at aiohttp's cost.

Why: under load httpcore's pool re-checks every pooled connection through anyio on each request,
which cost about 10 ms of CPU per webhook call in bench/latency.py (about 1 ms with this
transport). Strategies still build an `httpx.AsyncClient`, and tests still inject
`httpx.MockTransport`; only the wire below changes. httpx keeps doing redirects (off), decoding and
timeouts' meaning; this maps them onto aiohttp and maps aiohttp's errors back onto httpx's.

Bodies are streamed, never read whole here: how much of an answer is read, and how it is decoded,
is decided above this layer (`strategies.http.LimitedTransport` caps every answer at 1 MiB).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import AsyncIterator, Iterator

import aiohttp
import httpx

DEFAULT_CONNECTIONS = 16  # matches the engine's limit on strategy calls in flight per flow
_CHUNK_BYTES = 64 * 1024


def _wire_headers(request: httpx.Request) -> list[tuple[str, str]]:
    # `.raw` keeps each name as the caller spelt it (multi_items() would lower-case them).
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncBaseTransport` over one pooled `aiohttp.ClientSession` (created on first use)."""

    def __init__(self, *, connections: int = DEFAULT_CONNECTIONS) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                # httpx decodes the body itself (it sees Content-Encoding); decoding twice would fail.
                auto_decompress=False,
                # Proxies from HTTP(S)_PROXY / NO_PROXY, as httpx would honour them.
                trust_env=True,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return the response with its (still encoded) body as a stream."""
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.get("connect"), sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        with _as_httpx_errors(request):
            response = await self._get_session().request(
                request.method, str(request.url), headers=_wire_headers(request),
                data=body or None, allow_redirects=False, timeout=timeout, skip_auto_headers=("User-Agent",),
            )
        return httpx.Response(
            status_code=response.status, headers=list(response.raw_headers), stream=_AiohttpBody(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AiohttpBody(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's byte stream: raw chunks as they arrive, errors mapped."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_chunked(_CHUNK_BYTES):
                yield chunk

    async def aclose(self) -> None:
        """Give the connection back; one left with unread body is closed instead (it cannot be reused)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise aiohttp's errors as the httpx errors callers of an httpx client expect."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except TimeoutError as exc:  # aiohttp's read timeouts are TimeoutError subclasses
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.NetworkError(str(exc) or type(exc).__name__, request=request) from exc
