"""What the one httpx client our HTTP integrations and the webhook strategy use carries between requests."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from strategies.http import http_client


async def test_a_cookie_a_target_sets_is_never_sent_back_on_a_later_grant_or_revoke():
    # A grant's answer must not change what the next signed delivery carries.
    cookies_seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", "from-the-target")
        return response

    app = web.Application()
    app.router.add_post("/hook", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        async with http_client(timeout=5.0) as client:
            for _ in range(2):
                response = await client.post(str(server.make_url("/hook")), content=b"{}")
                assert response.status_code == 200
            assert not client.cookies
    assert cookies_seen == [None, None]


async def test_cookies_a_caller_sets_on_one_request_are_still_sent():
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        async with http_client(timeout=5.0) as client:
            await client.get(str(server.make_url("/")), headers={"Cookie": "explicit=1"})
    assert seen == ["explicit=1"]
