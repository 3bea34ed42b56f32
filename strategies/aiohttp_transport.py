"""An httpx transport that sends through aiohttp, so strategies keep httpx's API at aiohttp's cost.

Why: under load httpcore's pool re-checks every pooled connection through anyio on each request,
which cost about 10 ms of CPU per webhook call in bench/latency.py (about 1 ms with this
transport). Strategies still build an `httpx.AsyncClient`, and tests still inject
`httpx.MockTransport`; only the wire below changes. httpx keeps doing redirects (off), decoding and
timeouts' meaning; this maps them onto aiohttp and maps aiohttp's errors back onto httpx's.

Bodies are streamed, never read whole here: how much of an answer is read, and how it is decoded,
is decided above this layer (`strategies.http.LimitedTransport` caps every answer at 1 MiB).

httpx's four time-outs all hold: `pool` bounds the wait for one of the `connections` (else
PoolTimeout), `connect` the DNS look-up and connection (ConnectTimeout), `write` each 64 KiB piece
of a request body larger than that (WriteTimeout; a smaller one is buffered at once and cannot
stall), and `read` each wait for the answer (ReadTimeout).

Proxies come from HTTP(S)_PROXY / NO_PROXY as httpx would take them, looked up once per scheme and
host: aiohttp's own `trust_env=True` reads the environment and `~/.netrc` again on every request,
through two thread hops (about 0.5 ms of CPU per webhook call), and adds `~/.netrc` credentials for
the target itself, which httpx does not.

Why not the `httpx-aiohttp` package: measured with bench/latency.py (bench/README.md), it is no
faster, and it sends header names lower-cased and reports a refused connection as a time-out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

DEFAULT_CONNECTIONS = 16  # matches the engine's limit on strategy calls in flight per flow
_CHUNK_BYTES = 64 * 1024
_PROXY_ORIGINS = 256  # scheme and host pairs whose proxy is remembered (a flows file names a handful)

Proxy = tuple[URL | None, str | None]  # the proxy, and the Proxy-Authorization value its credentials make


def _wire_headers(request: httpx.Request) -> list[tuple[str, str]]:
    # `.raw` keeps each name as the caller spelt it (multi_items() would lower-case them).
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncBaseTransport` over one pooled `aiohttp.ClientSession` (created on first use)."""

    def __init__(self, *, connections: int = DEFAULT_CONNECTIONS) -> None:
        self._connections = connections
        # Held from sending a request until its answer is closed: the wait for one is httpx's pool timeout.
        self._slots = asyncio.Semaphore(connections)
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], Proxy] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                # httpx decodes the body itself (it sees Content-Encoding); decoding twice would fail.
                auto_decompress=False,
                # Proxies are looked up by `_proxy_for` instead (see the module docstring).
                trust_env=False,
            )
        return self._session

    def _proxy_for(self, url: httpx.URL) -> Proxy:
        """The proxy (and its credentials) HTTP(S)_PROXY / NO_PROXY give for `url`'s scheme and host."""
        origin = (url.scheme, url.host)
        found = self._proxies.get(origin)
        if found is None:
            try:
                # Reads the environment and at most a small ~/.netrc, once per scheme and host: on the
                # loop, since a thread hop would cost more than the read.
                proxy, auth = get_env_proxy_for_url(URL(str(url)))
                found = (proxy, None if auth is None else auth.encode())
            except LookupError:  # no proxy for this scheme, or the host is in NO_PROXY
                found = (None, None)
            if len(self._proxies) >= _PROXY_ORIGINS:
                self._proxies.clear()
            self._proxies[origin] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return the response with its (still encoded) body as a stream."""
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        await self._take_slot(request, timeouts.get("pool"))
        try:
            response = await self._send(request, body, timeouts)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_AiohttpBody(response, request, on_close=self._slots.release),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def _take_slot(self, request: httpx.Request, seconds: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # one is free: taken without waiting, so without a timer to arm
            return
        try:
            async with asyncio.timeout(seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no free connection within {seconds:g}s", request=request) from None

    async def _send(
        self, request: httpx.Request, body: bytes, timeouts: Mapping[str, float | None]
    ) -> aiohttp.ClientResponse:
        # The slot already bounds the wait for a connection, so aiohttp's `connect` is the look-up and connect.
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.get("connect"), sock_read=timeouts.get("read"))
        # A body of up to one piece is buffered by the connection at once, so only a larger one can stall.
        upload = _Upload(body, timeouts.get("write")) if len(body) > _CHUNK_BYTES else None
        headers = _wire_headers(request)
        with _as_httpx_errors(request):
            proxy, proxy_auth = self._proxy_for(request.url)
            # The proxy's credentials: on the CONNECT of an https tunnel, or on a plain request itself.
            tunnel = {"Proxy-Authorization": proxy_auth} if proxy_auth and request.url.scheme == "https" else None
            if proxy_auth and tunnel is None:
                headers.append(("Proxy-Authorization", proxy_auth))
            try:
                async with upload.deadline if upload else nullcontext():
                    return await self._get_session().request(
                        request.method,
                        str(request.url),
                        proxy=proxy,
                        proxy_headers=tunnel,
                        headers=headers,
                        data=upload.chunks() if upload else body or None,
                        allow_redirects=False,
                        timeout=timeout,
                        skip_auto_headers=("User-Agent",),
                    )
            except TimeoutError:
                if upload and upload.deadline.expired():
                    raise httpx.WriteTimeout(
                        f"the request body was not sent within {upload.seconds:g}s", request=request
                    ) from None
                raise
            finally:
                if upload:
                    upload.sent_or_abandoned()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Upload:
    """A request body handed to aiohttp a piece at a time; a piece not taken within `seconds` ends the exchange.

    `deadline` is entered around the request; while the body is being sent it is set to now +
    `seconds` per piece, and cleared once the last piece is taken.
    """

    def __init__(self, body: bytes, seconds: float | None) -> None:
        self._body = body
        self.seconds = seconds
        self.deadline = asyncio.timeout(None)
        self._active = True

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in pieces; aiohttp asks for the next one once it has written the last."""
        loop = asyncio.get_running_loop()
        for start in range(0, len(self._body), _CHUNK_BYTES):
            self._set(None if self.seconds is None else loop.time() + self.seconds)
            yield self._body[start : start + _CHUNK_BYTES]
        self._set(None)

    def sent_or_abandoned(self) -> None:
        """The request returned or failed: a body still being sent (after an early answer) has no deadline."""
        self._active = False

    def _set(self, when: float | None) -> None:
        if self._active:
            self.deadline.reschedule(when)


class _AiohttpBody(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's byte stream: raw chunks as they arrive, errors mapped."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, *, on_close: Callable[[], None]
    ) -> None:
        self._response = response
        self._request = request
        self._on_close: Callable[[], None] | None = on_close

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
        release, self._on_close = self._on_close, None
        if release is not None:  # the slot is given back once, however often this is called
            release()


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
