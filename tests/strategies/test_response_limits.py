"""No answer from a target system can take more than 1 MiB of memory or hold a call open for ever.

A local server answers every request the same scripted way (a gzip bomb, a chunked body without
Content-Length, a body dripped a byte at a time), and each HTTP-speaking integration is pointed at it.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.errors import StrategyUnavailable
from strategies.aptible import AptibleIntegration, AptibleIntegrationConfig
from strategies.okta import OktaIntegration, OktaIntegrationConfig
from strategies.pagerduty import PagerDutyError, PagerDutyIntegration, PagerDutyIntegrationConfig
from strategies.webhook import WebhookStrategy
from tests.strategies.conftest import FakeTime
from tests.strategies.test_webhook import config as webhook_config
from tests.strategies.test_webhook import context

MiB = 1 << 20
MAX_RESPONSE_BYTES = MiB  # the documented cap (docs/webhook-contract.md)
EXPANDED = 64 * MiB  # what the bombs expand to
GZIP_BOMB = gzip.compress(bytes(EXPANDED), compresslevel=9)
DEFLATE_BOMB = zlib.compress(bytes(EXPANDED), 9)


class HostileServer:
    """Answers every request with `mode`'s body; `started` counts requests that reached it."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.started = 0
        self.finished = asyncio.Event()
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def __aenter__(self) -> HostileServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.started += 1
        json_type = {"Content-Type": "application/json"}
        gzipped = {**json_type, "Content-Encoding": "gzip"}
        if self.mode == "gzip-bomb":
            return web.Response(body=GZIP_BOMB, headers=gzipped)
        if self.mode == "deflate-bomb":
            return web.Response(body=DEFLATE_BOMB, headers={**json_type, "Content-Encoding": "deflate"})
        if self.mode == "br":
            return web.Response(body=b"\x1b\xff\xff" * 1000, headers={**json_type, "Content-Encoding": "br"})
        if self.mode == "exactly-the-cap":
            filler = b"x" * (MAX_RESPONSE_BYTES - len(b'{"pad":""}'))
            return web.Response(body=b'{"pad":"' + filler + b'"}', headers=json_type)
        if self.mode == "big-503":
            return web.Response(status=503, body=b"<html>" + b"x" * (2 * MiB) + b"</html>")
        if self.mode == "corrupt-gzip":
            return web.Response(body=b"\x1f\x8b\x08\x00not really gzip", headers=gzipped)
        if self.mode == "small-gzip":
            return web.Response(body=gzip.compress(b'{"grant_id":"g-1"}'), headers=gzipped)
        # The streamed modes send no Content-Length: the body is chunked and its size unknown up front.
        response = web.StreamResponse(headers=gzipped if self.mode == "chunked-gzip-bomb" else json_type)
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if self.mode == "chunked-gzip-bomb":
                for start in range(0, len(GZIP_BOMB), 4096):
                    await response.write(GZIP_BOMB[start : start + 4096])
            elif self.mode == "chunked-plain":
                for _ in range(2 * MiB // 65536):
                    await response.write(b"x" * 65536)
            elif self.mode == "drip":
                for _ in range(600):  # a byte every 50 ms: each read is quick, the body never ends
                    await response.write(b" ")
                    await asyncio.sleep(0.05)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client hung up, as it should
        return response


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    async with HostileServer() as server:
        yield server


async def within_memory(coroutine, *, limit: int = 12 * MiB):
    """Await `coroutine` and fail if Python memory grew by more than `limit` bytes while it ran."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        try:
            return await coroutine
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            assert peak - baseline < limit, f"the call held {(peak - baseline) / MiB:.0f} MiB"
    finally:
        tracemalloc.stop()


async def webhook(url: str, opened, **kwargs) -> WebhookStrategy:
    return await opened(WebhookStrategy(webhook_config(url), integrations={}, **kwargs))


@pytest.mark.parametrize("mode", ["gzip-bomb", "chunked-gzip-bomb", "deflate-bomb", "chunked-plain"])
async def test_a_webhook_receiver_cannot_make_jitbot_hold_more_than_a_mebibyte(hostile, opened, mode):
    hostile.mode = mode
    strategy = await webhook(hostile.url + "/grants", opened)
    with pytest.raises(StrategyUnavailable) as caught:
        await within_memory(strategy.grant(context()))
    error = caught.value
    assert "webhook grant to http://127.0.0.1" in str(error) and "1 MiB" in str(error)
    assert error.retryable is False and "grant" in error.user_message


async def test_a_brotli_body_jitbot_did_not_ask_for_is_refused_not_decoded(hostile, opened):
    hostile.mode = "br"
    strategy = await webhook(hostile.url + "/grants", opened)
    with pytest.raises(StrategyUnavailable, match="br") as caught:
        await strategy.grant(context())
    assert caught.value.retryable is False


async def test_an_oversized_outage_page_is_still_an_outage_worth_retrying(hostile, opened):
    hostile.mode = "big-503"
    strategy = await webhook(hostile.url + "/grants", opened)
    with pytest.raises(StrategyUnavailable, match=r"HTTP 503\) is larger than 1 MiB") as caught:
        await strategy.revoke(context(), {})
    assert caught.value.retryable is True


async def test_a_corrupt_gzip_answer_is_a_final_error_not_a_crash(hostile, opened):
    hostile.mode = "corrupt-gzip"
    strategy = await webhook(hostile.url + "/grants", opened)
    with pytest.raises(StrategyUnavailable, match="corrupt") as caught:
        await strategy.grant(context())
    assert caught.value.retryable is False


async def test_a_body_of_exactly_the_cap_and_a_small_gzip_body_are_read_normally(hostile, opened):
    strategy = await webhook(hostile.url + "/grants", opened)
    hostile.mode = "exactly-the-cap"
    assert (await strategy.grant(context())).state == {}
    hostile.mode = "small-gzip"
    assert (await strategy.grant(context())).state == {"grant_id": "g-1"}


async def test_jitbot_only_offers_encodings_it_can_decode_within_the_cap(opened):
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        return httpx.Response(204)

    strategy = await webhook("https://hooks.example.com/grants", opened, transport=httpx.MockTransport(answer))
    await strategy.grant(context())
    assert seen == ["gzip, deflate"]


@pytest.mark.parametrize("encoding, bomb", [("gzip", GZIP_BOMB), ("deflate", DEFLATE_BOMB)], ids=["gzip", "deflate"])
async def test_the_cap_also_holds_for_an_injected_transport(opened, encoding, bomb):
    # What tests inject (httpx.MockTransport) goes through the same reader as the real wire.
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=httpx.ByteStream(bomb))

    strategy = await webhook("https://hooks.example.com/grants", opened, transport=httpx.MockTransport(answer))
    with pytest.raises(StrategyUnavailable, match="1 MiB"):
        await within_memory(strategy.grant(context()))


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib-wrapped", "raw"])
async def test_deflate_answers_are_read_whether_zlib_wrapped_or_raw(opened, wbits):
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(b'{"grant_id": "g-7"}') + packer.flush()

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "deflate", "Content-Type": "application/json"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))

    strategy = await webhook("https://hooks.example.com/grants", opened, transport=httpx.MockTransport(answer))
    assert (await strategy.grant(context())).state == {"grant_id": "g-7"}


async def test_a_dripped_webhook_answer_times_out(hostile, opened):
    hostile.mode = "drip"
    config = webhook_config(hostile.url + "/grants", timeout=timedelta(milliseconds=500))
    strategy = await opened(WebhookStrategy(config, integrations={}))
    with pytest.raises(StrategyUnavailable, match="no answer within 0.5s") as caught:
        await asyncio.wait_for(strategy.grant(context()), 5)
    assert caught.value.retryable is True


@pytest.fixture
async def okta(hostile, opened) -> OktaIntegration:
    time = FakeTime()
    cfg = OktaIntegrationConfig(type="okta", base_url=hostile.url, api_token="okta-token-123")
    return await opened(OktaIntegration("okta_main", cfg, sleep=time.sleep, monotonic=time.monotonic, timeout=0.5))


@pytest.mark.parametrize("mode", ["gzip-bomb", "chunked-gzip-bomb"])
async def test_an_okta_answer_over_the_cap_is_a_final_error_naming_okta(hostile, okta, mode):
    hostile.mode = mode
    with pytest.raises(StrategyUnavailable) as caught:
        await within_memory(okta.find_user("alice@example.com"))
    assert "Okta integration 'okta_main'" in str(caught.value) and "1 MiB" in str(caught.value)
    assert caught.value.retryable is False
    assert hostile.started == 1, "an oversized answer is not asked for again"


async def test_an_oversized_okta_outage_page_is_retried_then_retryable(hostile, okta):
    hostile.mode = "big-503"
    with pytest.raises(StrategyUnavailable, match="larger than 1 MiB") as caught:
        await okta.find_user("alice@example.com")
    assert caught.value.retryable is True and hostile.started == 4


async def test_a_dripped_okta_answer_times_out_and_is_retryable(hostile, okta):
    hostile.mode = "drip"
    with pytest.raises(StrategyUnavailable, match="Okta integration 'okta_main'") as caught:
        await asyncio.wait_for(okta.find_user("alice@example.com"), 10)
    assert caught.value.retryable is True


async def test_an_aptible_answer_over_the_cap_is_a_final_error_naming_aptible(hostile, opened):
    hostile.mode = "gzip-bomb"
    cfg = AptibleIntegrationConfig(
        type="aptible",
        organization_id="org-1",
        username="bot@acme.example",
        password="aptible-password-1",
        auth_url=hostile.url,
        api_url=hostile.url,
    )
    aptible = await opened(AptibleIntegration("aptible_main", cfg, sleep=FakeTime().sleep))
    with pytest.raises(StrategyUnavailable) as caught:
        await within_memory(aptible.find_user_by_email("alice@acme.example"))
    assert "Aptible integration 'aptible_main'" in str(caught.value) and "1 MiB" in str(caught.value)


@pytest.mark.parametrize(("mode", "said"), [("gzip-bomb", "larger than 1 MiB"), ("drip", "ReadTimeout")])
async def test_a_pagerduty_answer_over_the_cap_or_too_slow_is_a_pagerduty_error(hostile, opened, mode, said):
    hostile.mode = mode
    cfg = PagerDutyIntegrationConfig(type="pagerduty", api_token="pd-token-123", base_url=hostile.url)
    pagerduty = await opened(PagerDutyIntegration("pagerduty", cfg, timeout=0.5))
    with pytest.raises(PagerDutyError, match="PagerDuty") as caught:
        await within_memory(asyncio.wait_for(pagerduty.is_on_call("ann@example.com"), 5))
    assert said in str(caught.value)
