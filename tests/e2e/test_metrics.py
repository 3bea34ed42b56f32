"""GET /metrics on the bot's HTTP server: scraped for real and read with prometheus_client's own parser."""

from __future__ import annotations

from core.models import RequestStatus
from tests.e2e.scrape import free_address, scrape, value


async def test_an_operator_sees_requests_status_changes_grants_strategy_calls_and_revocation_lateness_on_metrics(
    start_webhook_bot, receiver
):
    address = free_address()
    running = await start_webhook_bot(health_address=address)
    before = await scrape(address)
    assert value(before, "jitbot_live_grants", flow="db_access") == 0
    assert value(before, "jitbot_revocation_lateness_seconds_count") == 0

    message = await running.request("U_ALICE", "db_access", "C_APPROVALS", target="Prod Admin")
    pending = await scrape(address)
    assert value(pending, "jitbot_requests", flow="db_access", status="pending") == 1

    await running.approve(message)
    await running.idle()
    granted = await scrape(address)
    assert value(granted, "jitbot_live_grants", flow="db_access") == 1
    assert value(granted, "jitbot_requests", flow="db_access", status="granted") == 1
    assert value(granted, "jitbot_requests", flow="db_access", status="pending") == 0
    assert value(granted, "jitbot_strategy_calls_total", strategy="webhook", operation="grant") == 1
    assert value(granted, "jitbot_strategy_call_seconds_count", strategy="webhook", operation="grant") == 1
    assert value(granted, "jitbot_strategy_errors_total", strategy="webhook", operation="grant") == 0

    running.clock.advance(minutes=30, seconds=3)  # the sweep finds it three seconds late
    await running.engine.sweep()
    await running.idle()
    ended = await scrape(address)
    assert (await running.request_for(message)).status is RequestStatus.REVOKED
    assert value(ended, "jitbot_live_grants", flow="db_access") == 0
    assert value(ended, "jitbot_strategy_calls_total", strategy="webhook", operation="revoke") == 1
    assert value(ended, "jitbot_revocation_lateness_seconds_count") == 1
    assert value(ended, "jitbot_revocation_lateness_seconds_sum") == 3.0
    assert value(ended, "jitbot_revocation_lateness_seconds_bucket", le="2.0") == 0
    assert value(ended, "jitbot_revocation_lateness_seconds_bucket", le="5.0") == 1
    assert value(ended, "jitbot_follow_ups_pending") == 0
    transitions = {
        status: value(ended, "jitbot_request_transitions_total", flow="db_access", status=status)
        for status in ("pending", "approved", "granted", "revoked", "denied")
    }
    assert transitions == {"pending": 1, "approved": 1, "granted": 1, "revoked": 1, "denied": 0}


async def test_failed_strategy_calls_and_slack_errors_and_429s_are_counted(start_webhook_bot, receiver, slack):
    address = free_address()
    running = await start_webhook_bot(health_address=address)
    receiver.fail_next(10, status=500, action="grant")
    slack.rate_limit("chat.update", times=1, retry_after=0)
    slack.fail("conversations.open", error="internal_error", times=1)

    message = await running.request("U_ALICE", "db_access", "C_APPROVALS", target="Prod Admin")
    await slack.click(message, text="Approve", user="U_BOB")
    await running.idle()
    samples = await scrape(address)
    assert (await running.request_for(message)).status is RequestStatus.FAILED
    assert value(samples, "jitbot_strategy_errors_total", strategy="webhook", operation="grant") >= 1
    assert value(samples, "jitbot_strategy_errors_total", strategy="webhook", operation="grant") == value(
        samples, "jitbot_strategy_calls_total", strategy="webhook", operation="grant"
    )
    assert value(samples, "jitbot_request_transitions_total", flow="db_access", status="failed") == 1
    assert value(samples, "jitbot_slack_rate_limited_total", method="chat.update") == 1
    assert value(samples, "jitbot_slack_api_errors_total", method="conversations.open", error="internal_error") == 1


async def test_two_bots_in_one_process_keep_their_own_metrics(launch, start_webhook_bot):
    first_address, second_address = free_address(), free_address()
    first = await start_webhook_bot(health_address=first_address)
    second = await start_webhook_bot(health_address=second_address, db_name="second.db")
    assert first.runtime.metrics.registry is not second.runtime.metrics.registry
    # The emulator hands the envelope to one of the two connections, as Slack does: one bot stores it.
    await first.request("U_ALICE", "db_access", "C_APPROVALS", target="Prod Admin")
    await second.idle()
    counts = [
        value(await scrape(address), "jitbot_requests", flow="db_access", status="pending")
        for address in (first_address, second_address)
    ]
    assert sorted(counts) == [0, 1]
