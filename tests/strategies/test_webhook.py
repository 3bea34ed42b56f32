from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import httpx
import pytest
from pydantic import ValidationError

from core.errors import StrategyUnavailable, SubjectNotFound
from core.models import Subject, Target
from core.secrets import SecretRegistry
from core.strategy import GrantContext
from strategies.webhook import WebhookStrategy, WebhookStrategyConfig, iso_utc
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.strategies.contract import Harness, run_contract, run_extend_contract

SECRET = "whsec-0123456789abcdef"
GRANTED = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)


def context(**overrides) -> GrantContext:
    values = dict(
        request_id="req-42",
        flow="db_access",
        target=Target("prod_admin", "Prod Admin", {"database": "prod", "role": "admin"}),
        subject=Subject("U1", "ann@example.com", identity="ann@example.com", name="Ann"),
        fields={"reason": "incident 7", "duration": "1h"},
        granted_at=GRANTED,
        expires_at=GRANTED + timedelta(hours=1),
    )
    values.update(overrides)
    return GrantContext(**values)


def config(url: str, **keys) -> WebhookStrategyConfig:
    return WebhookStrategyConfig(
        type="webhook",
        url=url,
        targets=[{"name": "prod_admin", "label": "Prod Admin", "settings": {"database": "prod", "role": "admin"}}],
        **keys,
    )


@pytest.fixture
async def receiver():
    async with WebhookReceiver(secret=SECRET) as server:
        yield server


@pytest.fixture
def make_strategy(opened):
    async def build(cfg: WebhookStrategyConfig, **kwargs) -> WebhookStrategy:
        return await opened(WebhookStrategy(cfg, integrations={}, **kwargs))

    return build


async def test_contract(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    ctx = context()

    async def is_held() -> bool:
        return receiver.is_held(ctx.request_id, "prod_admin", "U1")

    await run_contract(Harness(strategy, ctx, is_held))
    assert [d.action for d in receiver.deliveries] == ["grant", "grant", "revoke", "revoke"]
    assert [d.duplicate for d in receiver.deliveries] == [False, True, False, True]
    assert not any(d.rejected for d in receiver.deliveries)


async def test_signature_is_hmac_sha256_of_the_raw_body(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    await strategy.grant(context())
    delivery = receiver.deliveries[0]
    expected = hmac.new(SECRET.encode(), delivery.raw, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Jitbot-Signature"] == f"sha256={expected}"
    assert delivery.headers["Content-Type"] == "application/json"


async def test_delivery_headers_let_the_receiver_deduplicate(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    result = await strategy.grant(context())
    await strategy.revoke(context(), result.state)
    grant, revoke = receiver.deliveries
    assert grant.headers["X-Jitbot-Request-Id"] == revoke.headers["X-Jitbot-Request-Id"] == "req-42"
    assert grant.headers["X-Jitbot-Delivery"] == "req-42:grant"
    assert revoke.headers["X-Jitbot-Delivery"] == "req-42:revoke"
    assert result.state == {"grant_id": "g-1"}
    assert revoke.headers["X-Jitbot-Grant-Id"] == "g-1" and "X-Jitbot-Grant-Id" not in grant.headers


async def test_without_a_secret_there_is_no_signature(make_strategy):
    async with WebhookReceiver(secret=None) as open_receiver:
        strategy = await make_strategy(config(open_receiver.url))
        await strategy.grant(context())
        assert "X-Jitbot-Signature" not in open_receiver.deliveries[0].headers
        assert open_receiver.is_held("req-42")


async def test_extra_headers_are_sent_with_secret_values_revealed_only_on_the_wire(receiver, make_strategy):
    cfg = config(receiver.url, secret=SECRET, headers={"Authorization": "Bearer api-key-4242", "X-Team": "secops"})
    assert "api-key-4242" not in repr(cfg)
    await (await make_strategy(cfg)).grant(context())
    headers = receiver.deliveries[0].headers
    assert headers["Authorization"] == "Bearer api-key-4242" and headers["X-Team"] == "secops"


async def test_wrong_secret_is_rejected_and_not_retryable(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret="whsec-not-the-right-one"))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(context())
    assert caught.value.retryable is False and "HTTP 401" in str(caught.value)
    assert receiver.deliveries[0].rejected and not receiver.is_held("req-42")


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable_with_status_and_excerpt(receiver, make_strategy, status):
    receiver.fail_next(1, status=status, body="database is down")
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(context())
    error = caught.value
    assert error.retryable is True
    assert f"HTTP {status}: database is down" in str(error) and f"(HTTP {status})" in error.user_message
    assert not receiver.is_held("req-42")
    await strategy.grant(context())  # the retry goes through
    assert receiver.is_held("req-42")


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (403, False), (404, False), (408, True), (429, True)])
async def test_client_errors_are_final_except_timeout_and_throttle(receiver, make_strategy, status, retryable):
    receiver.fail_next(1, status=status, action="revoke")
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    await strategy.grant(context())
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.revoke(context(), {})
    assert caught.value.retryable is retryable and "revoke to http://127.0.0.1:" in str(caught.value)


async def test_error_text_is_short_and_never_holds_the_secret_or_signature(receiver, make_strategy):
    secrets = SecretRegistry()
    secrets.register(SECRET)  # as the loader does when it validates the flows file
    strategy = await make_strategy(config(receiver.url + "?token=query-secret-1", secret=SECRET), secrets=secrets)
    await strategy.grant(context())
    signature = receiver.deliveries[0].headers["X-Jitbot-Signature"]
    receiver.fail_next(1, status=500, action="revoke", body=f"echo {signature} {SECRET} " + "x" * 5000)
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.revoke(context(), {})
    message = str(caught.value)
    assert SECRET not in message and signature.removeprefix("sha256=") not in message
    assert "query-secret-1" not in message and len(message) < 400


async def test_timeout_is_honoured_and_retryable(receiver, make_strategy):
    receiver.set_latency(30)
    strategy = await make_strategy(config(receiver.url, secret=SECRET, timeout=timedelta(milliseconds=200)))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(context())
    assert caught.value.retryable is True and "no answer within 0.2s" in str(caught.value)


async def test_connection_refused_is_retryable(make_strategy):
    async with WebhookReceiver() as gone:
        url = gone.url
    strategy = await make_strategy(config(url))
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(context())
    assert caught.value.retryable is True and "ConnectError" in str(caught.value)


async def test_redirects_are_not_followed(make_strategy):
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://elsewhere.example.com/"})

    strategy = await make_strategy(config("https://hooks.example.com/grants"), transport=httpx.MockTransport(answer))
    with pytest.raises(StrategyUnavailable, match="HTTP 307") as caught:
        await strategy.grant(context())
    assert caught.value.retryable is False


async def test_non_json_success_has_no_grant_id(make_strategy):
    strategy = await make_strategy(
        config("https://hooks.example.com/grants"),
        transport=httpx.MockTransport(lambda request: httpx.Response(204)),
    )
    assert (await strategy.grant(context())).state == {}


async def test_nested_settings_pass_through_and_only_the_end_may_be_null(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    settings = MappingProxyType(
        {"database": "prod", "grants": ("select", "insert"), "tags": MappingProxyType({"team": "data"})}
    )
    ctx = context(target=Target("prod_admin", "Prod Admin", settings), granted_at=None, expires_at=None)
    await strategy.grant(ctx)
    body = receiver.deliveries[0].body
    assert body["target"]["settings"] == {"database": "prod", "grants": ["select", "insert"], "tags": {"team": "data"}}
    assert body["expires_at"] is None and body["granted_at"] == body["sent_at"]


async def test_validate_needs_an_email_or_identity(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    assert await strategy.validate(context(subject=Subject("U1", None, identity="ann-override"))) == []
    nobody = context(subject=Subject("U1", None))
    [issue] = await strategy.validate(nobody)
    assert "no email" in issue.user_message and "U1" in issue.detail
    with pytest.raises(SubjectNotFound):
        await strategy.grant(nobody)
    assert receiver.deliveries == []


def test_iso_utc_converts_to_utc_with_z():
    plus_two = timezone(timedelta(hours=2))
    assert iso_utc(datetime(2026, 3, 4, 14, 0, 0, 999, tzinfo=plus_two)) == "2026-03-04T12:00:00Z"
    assert iso_utc(datetime(2026, 3, 4, 12, 0, 0)) == "2026-03-04T12:00:00Z"


@pytest.mark.parametrize(
    "keys",
    [
        {"url": "ftp://hooks.example.com/x"},
        {"url": "not a url"},
        {"url": "https://h.example.com", "timeout": "0s"},
        {"url": "https://h.example.com", "headers": {"X-Jitbot-Signature": "forged"}},
        {"url": "https://h.example.com", "headers": {"Bad Header": "x"}},
        {"url": "https://h.example.com", "verify": False},
    ],
)
def test_config_rejects(keys):
    with pytest.raises(ValidationError):
        WebhookStrategyConfig(type="webhook", targets=[{"name": "t", "label": "T"}], **keys)


def test_config_defaults_and_secret_redaction():
    cfg = WebhookStrategyConfig(
        type="webhook",
        url="http://127.0.0.1:9000/grants",
        secret=SECRET,
        targets=[{"name": "t", "label": "T", "settings": {"a": 1}}],
    )
    assert cfg.timeout == timedelta(seconds=10) and cfg.targets[0].settings == {"a": 1}
    assert SECRET not in repr(cfg) and SECRET not in cfg.model_dump_json()


async def test_extend_keeps_the_receivers_grant(receiver, make_strategy):
    strategy = await make_strategy(config(receiver.url, secret=SECRET))
    ctx = context()

    async def is_held() -> bool:
        return receiver.is_held(ctx.request_id, "prod_admin", "U1")

    async def is_held_for(other) -> bool:
        return receiver.is_held(other.request_id, "prod_admin", "U1")

    await run_extend_contract(Harness(strategy, ctx, is_held, is_held_for))
    # One grant and one revoke for the extended access, both under the first request's id.
    first = [d for d in receiver.deliveries if d.body["request_id"] == ctx.request_id]
    assert [d.action for d in first] == ["grant", "revoke"]
