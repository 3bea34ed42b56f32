from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import HookError, StrategyError, StrategyUnavailable
from core.hook_events import Approve, HookEvent, HookUser
from core.hooks import load_hooks
from core.models import Target
from strategies.pagerduty import PagerDutyError, PagerDutyIntegration, PagerDutyIntegrationConfig
from tests.fakes.pagerduty_api import PagerDutyApi

NOW = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)
TOKEN = "pd-token-0123456789"
ANN = HookUser("U1", "ann@example.com", "Ann")


class FrozenClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
async def pd():
    async with PagerDutyApi(token=TOKEN, now=lambda: NOW) as api:
        api.add_user("PANN", "Ann@Example.com", "Ann")
        api.add_user("PJOANN", "joann@example.com", "Jo Ann")  # a near miss for query=ann@example.com
        api.add_user("PBOB", "bob@example.com", "Bob")
        yield api


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def monotonic():
    return FakeMonotonic()


@pytest.fixture
def make_integration(pd, sleeps, monotonic, opened):
    async def build(token: str = TOKEN, **config) -> PagerDutyIntegration:
        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        cfg = PagerDutyIntegrationConfig(type="pagerduty", api_token=token, base_url=pd.url, **config)
        return await opened(
            PagerDutyIntegration("pagerduty", cfg, clock=FrozenClock(NOW), sleep=sleep, monotonic=monotonic)
        )

    return build


async def test_on_call_user_is_on_call(pd, make_integration):
    pd.add_oncall("PANN", schedule_id="PSCHED1", start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=7))
    pd.add_oncall("PJOANN", schedule_id="PSCHED1", start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=7))
    assert await (await make_integration()).is_on_call(ANN)


async def test_request_shape_follows_the_documented_api(pd, make_integration):
    pd.add_oncall("PANN")
    await (await make_integration()).is_on_call(ANN)
    users, oncalls = pd.calls("/users"), pd.calls("/oncalls")
    assert users[0].param("query") == ["ann@example.com"]
    call = oncalls[0]
    assert call.param("user_ids[]") == ["PANN"]  # the exact-email match, not Jo Ann
    assert call.param("since") == call.param("until") == ["2026-03-04T12:00:00Z"]
    assert call.headers["Authorization"] == f"Token token={TOKEN}"
    assert call.headers["Accept"] == "application/vnd.pagerduty+json;version=2"


async def test_off_call_user_is_not_on_call(pd, make_integration):
    pd.add_oncall("PBOB")
    pd.add_oncall("PANN", start=NOW - timedelta(days=2), end=NOW - timedelta(days=1))  # ended
    pd.add_oncall("PANN", start=NOW + timedelta(hours=1), end=NOW + timedelta(hours=9))  # not yet
    assert not await (await make_integration()).is_on_call(ANN)


async def test_permanent_on_call_counts(pd, make_integration):
    pd.add_oncall("PANN", escalation_policy_id="PPOLICY9", start=None, end=None)
    assert await (await make_integration()).is_on_call(ANN)


async def test_unknown_person_or_no_email_is_not_on_call(pd, make_integration):
    integration = await make_integration()
    assert not await integration.is_on_call(HookUser("U7", "nobody@example.com"))
    assert not await integration.is_on_call(HookUser("U8", None))
    assert pd.calls("/oncalls") == []


async def test_schedule_filter_from_argument_and_config_default(pd, make_integration):
    pd.add_oncall("PANN", schedule_id="PSECONDARY")
    plain = await make_integration()
    assert await plain.is_on_call(ANN)
    assert not await plain.is_on_call(ANN, schedule_ids=["PPRIMARY"])
    assert await plain.is_on_call(ANN, schedule_ids=["PPRIMARY", "PSECONDARY"])

    primary_only = await make_integration(schedule_ids=["PPRIMARY"])
    assert not await primary_only.is_on_call(ANN)
    assert await primary_only.is_on_call(ANN, schedule_ids=[])  # an explicit [] drops the default
    assert pd.calls("/oncalls")[-2].param("schedule_ids[]") == ["PPRIMARY"]


async def test_escalation_policy_filter(pd, make_integration):
    pd.add_oncall("PANN", escalation_policy_id="PDBTEAM")
    integration = await make_integration(escalation_policy_ids=["PWEBTEAM"])
    assert not await integration.is_on_call(ANN)
    assert await integration.is_on_call(ANN, escalation_policy_ids=["PDBTEAM"])
    assert pd.calls("/oncalls")[-1].param("escalation_policy_ids[]") == ["PDBTEAM"]


async def test_user_lookup_follows_pagination_past_near_misses(pd, make_integration):
    pd.max_limit = 2
    near_misses = ("carol@example.com.au", "xcarol@example.com", "carol@example.community", "mcarol@example.com")
    for number, email in enumerate(near_misses):
        pd.add_user(f"PNEAR{number}", email)
    pd.add_user("PCAROL", "Carol@example.com")
    assert await (await make_integration()).find_user_id("carol@EXAMPLE.com") == "PCAROL"
    assert [c.param("offset") for c in pd.calls("/users")] == [["0"], ["2"], ["4"]]


async def test_user_lookup_pagination_ends_without_a_match(pd, make_integration):
    pd.max_limit = 1
    assert await (await make_integration()).find_user_id("example.com") is None
    assert len(pd.calls("/users")) == 3  # three users contain the text, none is that exact email


async def test_oncall_lookup_follows_more_and_stops_at_the_first_current_entry(pd, make_integration):
    pd.max_limit = 2
    for level in range(1, 6):
        pd.add_oncall("PANN", escalation_policy_id=f"POLICY{level}", level=level)
    assert await (await make_integration()).is_on_call(ANN)
    assert [c.param("offset") for c in pd.calls("/oncalls")] == [["0"]]
    assert pd.calls("/oncalls")[0].param("limit") == ["100"]


async def test_oncall_lookup_with_nothing_current_asks_once(pd, make_integration):
    pd.max_limit = 2
    assert not await (await make_integration()).is_on_call(ANN)
    assert len(pd.calls("/oncalls")) == 1


async def test_results_are_cached_briefly(pd, make_integration, monotonic):
    pd.add_oncall("PANN")
    integration = await make_integration()
    assert await integration.is_on_call(ANN)
    pd.oncalls.clear()
    assert await integration.is_on_call(ANN), "a cache hit within 30 s"
    assert (len(pd.calls("/users")), len(pd.calls("/oncalls"))) == (1, 1)

    monotonic.value += 31
    assert not await integration.is_on_call(ANN), "the on-call answer expired after 30 s"
    assert (len(pd.calls("/users")), len(pd.calls("/oncalls"))) == (1, 2)

    monotonic.value += 30
    await integration.is_on_call(ANN)
    assert len(pd.calls("/users")) == 2, "the user id expired after 60 s"


async def test_rate_limit_honours_ratelimit_reset(pd, make_integration, sleeps):
    pd.add_oncall("PANN")
    pd.rate_limit_next(2, reset="7")
    assert await (await make_integration()).is_on_call(ANN)
    assert sleeps == [7.0, 7.0]
    assert [r.status for r in pd.requests] == [429, 429, 200, 200]


async def test_rate_limit_falls_back_to_retry_after_and_caps_the_wait(pd, make_integration, sleeps):
    pd.rate_limit_next(1, reset=None, retry_after="3600")
    await (await make_integration()).find_user_id("ann@example.com")
    assert sleeps == [30.0]


async def test_rate_limit_retries_are_bounded(pd, make_integration, sleeps):
    pd.rate_limit_next(10)
    with pytest.raises(PagerDutyError, match="HTTP 429: still rate limited after 3 retries"):
        await (await make_integration()).is_on_call(ANN)
    assert len(sleeps) == 3 and len(pd.requests) == 4


async def test_bad_token_is_a_clear_error_without_the_token(pd, make_integration):
    wrong = "pd-wrong-token-987654"
    with pytest.raises(PagerDutyError) as caught:
        await (await make_integration(token=wrong)).is_on_call(ANN)
    message = str(caught.value)
    assert "HTTP 401" in message and "integrations.pagerduty.api_token" in message
    assert wrong not in message and TOKEN not in message


async def test_unreachable_pagerduty_is_a_clear_error(make_integration, pd):
    integration = await make_integration()
    await pd.close()
    with pytest.raises(PagerDutyError, match="cannot reach PagerDuty"):
        await integration.is_on_call(ANN)


async def test_a_pagerduty_outage_fails_at_once_so_a_hook_is_not_held_up_by_retries(pd, make_integration, sleeps):
    pd.fail_next(1, status=503)
    with pytest.raises(PagerDutyError, match="answered 503") as caught:
        await (await make_integration()).is_on_call(ANN)
    assert caught.value.retryable and sleeps == [] and len(pd.requests) == 1


async def test_pagerduty_failures_are_strategy_errors_that_say_whether_trying_again_can_help(pd, make_integration):
    with pytest.raises(StrategyUnavailable) as refused:
        await (await make_integration(token="pd-wrong-token-987654")).is_on_call(ANN)
    assert isinstance(refused.value, PagerDutyError) and isinstance(refused.value, StrategyError)
    assert refused.value.retryable is False, "a refused token stays refused"
    pd.rate_limit_next(10)
    with pytest.raises(StrategyUnavailable) as throttled:
        await (await make_integration()).is_on_call(ANN)
    assert isinstance(throttled.value, PagerDutyError) and throttled.value.retryable is True


def test_config_rejects_unknown_keys_and_bad_urls():
    with pytest.raises(ValidationError):
        PagerDutyIntegrationConfig(type="pagerduty", api_token=TOKEN, region="eu")
    with pytest.raises(ValidationError):
        PagerDutyIntegrationConfig(type="pagerduty", api_token=TOKEN, base_url="ftp://pd.example.com")
    cfg = PagerDutyIntegrationConfig(type="pagerduty", api_token=TOKEN)
    assert cfg.base_url == "https://api.pagerduty.com" and TOKEN not in repr(cfg)


# ── through the example hook, as the engine will call it ──────────────────────────────────────────

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "hooks" / "oncall_fasttrack.py"


def request_event(integration) -> HookEvent:
    return HookEvent(
        request_id="req-1",
        flow="prod_incident",
        target=Target("prod_admin", "Prod Admin"),
        user=ANN,
        fields={"reason": "incident"},
        integrations={"pagerduty": integration},
    )


async def test_oncall_fasttrack_example_approves_only_the_on_call_person(pd, make_integration):
    hooks, integration = load_hooks(EXAMPLE), await make_integration()
    assert await hooks.call("on_request", request_event(integration)) is None
    pd.add_oncall("PANN")
    integration._oncall.clear()
    assert await hooks.call("on_request", request_event(integration)) == Approve("on call in PagerDuty")


async def test_pagerduty_failure_reaches_the_engine_as_a_hook_error(pd, make_integration):
    hooks, integration = load_hooks(EXAMPLE), await make_integration(token="pd-wrong-token-987654")
    with pytest.raises(HookError) as caught:
        await hooks.call("on_request", request_event(integration))
    assert "PagerDutyError" in str(caught.value) and "oncall_fasttrack.py:" in str(caught.value)
    assert "pd-wrong-token-987654" not in str(caught.value)
