import asyncio
import gzip
import socket

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from strategies.aiohttp_transport import AiohttpTransport


@pytest.fixture
async def server():
    seen = {}

    async def echo(request: web.Request) -> web.Response:
        seen["headers"] = list(request.raw_headers)
        seen["body"] = await request.read()
        return web.Response(
            body=gzip.compress(b'{"ok": true}'),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def moved(_request):
        raise web.HTTPFound("/elsewhere")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(128):  # 8 MiB, more than anyone should hold at once
                await response.write(b"x" * 65536)
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response

    async def silent(_request):
        await asyncio.sleep(5)  # never answers within the tests' read time-out
        return web.Response(text="late")

    async def stalled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"the first part, then nothing")
        await asyncio.sleep(5)
        return response

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/moved", moved)
    app.router.add_get("/big", big)
    app.router.add_get("/silent", silent)
    app.router.add_get("/stalled", stalled)
    async with TestServer(app, host="127.0.0.1") as srv:
        srv.seen = seen
        yield srv


async def test_requests_keep_header_case_and_body_and_responses_are_decoded_once(server):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        response = await client.post(
            str(server.make_url("/echo")), content=b"payload", headers={"X-Jitbot-Signature": "sha256=ab"}
        )
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert (b"X-Jitbot-Signature", b"sha256=ab") in server.seen["headers"] and server.seen["body"] == b"payload"


async def test_redirects_are_left_to_httpx(server):
    async with httpx.AsyncClient(transport=AiohttpTransport(), follow_redirects=False) as client:
        response = await client.get(str(server.make_url("/moved")))
    assert response.status_code == 302 and response.headers["Location"] == "/elsewhere"


async def test_a_refused_connection_is_an_httpx_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_bodies_are_streamed_so_the_reader_decides_how_much_to_hold(server):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        async with client.stream("GET", str(server.make_url("/big"))) as response:
            first = await anext(response.aiter_raw())
    assert 0 < len(first) <= 64 * 1024, "the transport must not read the whole body itself"


async def test_a_server_that_never_answers_is_an_httpx_read_timeout(server):
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(5, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(str(server.make_url("/silent")))


async def test_an_answer_that_stops_half_way_is_an_httpx_read_timeout(server):
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(5, read=0.2)) as client:
        async with client.stream("GET", str(server.make_url("/stalled"))) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()


async def test_a_request_waiting_longer_than_the_pool_time_out_for_a_connection_is_a_pool_timeout(server):
    timeout = httpx.Timeout(5, pool=0.2)
    async with httpx.AsyncClient(transport=AiohttpTransport(connections=1), timeout=timeout) as client:
        async with client.stream("GET", str(server.make_url("/big"))):  # holds the only connection
            with pytest.raises(httpx.PoolTimeout):
                await client.post(str(server.make_url("/echo")), content=b"waits")
        answer = await client.post(str(server.make_url("/echo")), content=b"after")
    assert answer.status_code == 200, "closing the first answer gives its connection back"


async def test_a_body_the_server_does_not_take_within_the_write_time_out_is_a_write_timeout():
    async def never_read(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    sink = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = sink.sockets[0].getsockname()[1]
    body = bytes(32 << 20)  # more than the socket buffers on both sides hold
    try:
        async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(5, write=0.3)) as client:
            with pytest.raises(httpx.WriteTimeout):
                await client.post(f"http://127.0.0.1:{port}/", content=body)
    finally:
        sink.close()


@pytest.fixture
async def proxy():
    """A forward proxy that answers itself, noting each request's target (absolute-form) and Proxy-Authorization."""
    seen: list[tuple[str, str | None]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((str(request.url), request.headers.get("Proxy-Authorization")))
        return web.json_response({"via": "proxy"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app, host="127.0.0.1") as srv:
        srv.seen = seen
        yield srv


async def test_a_webhook_goes_through_the_proxy_the_environment_names(proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://ops:s3cret@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        for _ in range(2):
            response = await client.post("http://access.example.test/hook", content=b"{}")
            assert response.json() == {"via": "proxy"}
    assert [url for url, _ in proxy.seen] == ["http://access.example.test/hook"] * 2
    assert all(auth is not None and auth.startswith("Basic ") for _, auth in proxy.seen)


async def test_hosts_in_no_proxy_are_reached_directly(server, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        response = await client.post(str(server.make_url("/echo")), content=b"direct")
    assert response.json() == {"ok": True} and server.seen["body"] == b"direct"
    assert proxy.seen == []


async def test_the_environment_is_read_once_per_address_not_per_request(server, monkeypatch):
    # Reading it means a file read and two thread hops per request (about 0.5 ms of CPU each).
    import aiohttp.helpers

    looked_up: list[str] = []
    real = aiohttp.helpers.get_env_proxy_for_url

    def counting(url):
        looked_up.append(str(url))
        return real(url)

    monkeypatch.setattr("strategies.aiohttp_transport.get_env_proxy_for_url", counting, raising=False)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        for _ in range(3):
            await client.post(str(server.make_url("/echo")), content=b"x")
    assert len(looked_up) == 1
