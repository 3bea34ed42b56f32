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
        return web.Response(body=gzip.compress(b'{"ok": true}'), headers={"Content-Encoding": "gzip",
                                                                          "Content-Type": "application/json"})

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

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/moved", moved)
    app.router.add_get("/big", big)
    async with TestServer(app, host="127.0.0.1") as srv:
        srv.seen = seen
        yield srv


async def test_requests_keep_header_case_and_body_and_responses_are_decoded_once(server):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        response = await client.post(str(server.make_url("/echo")), content=b"payload", headers={"X-Jitbot-Signature": "sha256=ab"})
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
