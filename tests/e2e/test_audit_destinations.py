"""Audit destinations end to end: a real bot writes events, each destination gets them from the outbox.

Every destination runs against its local stand-in: a file, a signed-batch HTTP receiver, a Datadog
logs intake fake (tests/fakes/audit_receivers.py) and moto's server for Kinesis and Firehose.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import yaml

from audit_cli import verify
from core.retry import Backoff
from storage.audit_outbox import AuditReader
from tests.audit_schema_check import validator
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, standard_flow
from tests.e2e.flows import ALERTS_CHANNEL, flows_file
from tests.e2e.scrape import free_address, scrape, value
from tests.fakes.audit_receivers import AuditReceiver, DatadogIntake
from tests.fakes.moto_server import REGION

AUDIT_SECRET = "audit-hmac-secret-0123456789"
DD_KEY = "dd-api-key-abcdef0123456789"
FAST = {"audit_backoff": Backoff(first=0.01, factor=2.0, cap=0.05, attempts=None), "audit_poll_seconds": 0.01}


def flows_with_audit(receiver_url: str, destinations: list[dict[str, Any]], **more: Any) -> str:
    """The standard webhook flow plus an `audit:` block (and `more` top-level keys such as integrations)."""
    text = flows_file(standard_flow(receiver_url), integrations=more.get("integrations"))
    return text + yaml.safe_dump({"audit": {"destinations": destinations}}, sort_keys=False)


@pytest.fixture
async def audit_receiver():
    async with AuditReceiver(secret=AUDIT_SECRET) as receiver:
        yield receiver


@pytest.fixture
def start_audited(launch, receiver, monkeypatch) -> Callable[..., Any]:
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    monkeypatch.setenv("JITBOT_TEST_AUDIT_SECRET", AUDIT_SECRET)
    monkeypatch.setenv("JITBOT_TEST_DD_KEY", DD_KEY)

    async def start(destinations: list[dict[str, Any]], health_address: str | None = None, **more: Any):
        flows = flows_with_audit(receiver.url, destinations, **more)
        return await launch.start(flows, health_address=health_address, **FAST)

    return start


async def a_granted_request(running) -> None:
    """Request, approve, grant: a handful of audit events."""
    message = await running.request(
        "U_ALICE", "db_access", "C_APPROVALS", target="Prod Admin", reason="incident 42", duration="30m"
    )
    await running.slack.click(message, text="Approve", user="U_BOB")
    await running.slack.wait_for_message("C_APPROVALS", contains="granted until")


async def stored_documents(running) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    async for page in AuditReader(running.runtime.store).pages():
        docs.extend(event.document() for event in page)
    return docs


async def eventually(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    """Wait (polling) until `condition()` holds; the delivery workers run in the same loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def cursors_caught_up(running, timeout: float = 15.0) -> None:
    """Wait until every destination's cursor is recorded at the newest event: a destination has a batch
    a moment before the bot, seeing its 200, writes the cursor (at-least-once delivery)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while any(status.backlog for status in await running.runtime.audit_delivery.status()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the destinations' cursors to catch up")
        await asyncio.sleep(0.02)


async def delivered_everything(running, got: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Wait until the destination has every stored event; check order, identity and schema; return the stored ones."""
    await running.idle()
    stored = await stored_documents(running)
    await eventually(lambda: len(got()) >= len(stored), f"{len(stored)} events at the destination")
    received = got()
    assert [e["seq"] for e in received] == [e["seq"] for e in stored]  # in order, no gap, no duplicate
    for copy, original in zip(received, stored, strict=True):
        copy = dict(copy)
        head = copy.pop("chain_head")
        assert head["seq"] >= copy["seq"] and len(head["hash"]) == 64
        assert copy == original  # same event_id, same hash: the destination's copy is the evidence
        validator().validate(copy)
    return stored


async def test_every_event_reaches_a_file_destination_in_order_and_verifies_against_it(start_audited, tmp_path):
    running = await start_audited([{"type": "file", "path": "audit/trail.jsonl"}])
    await a_granted_request(running)
    path = tmp_path / "audit" / "trail.jsonl"

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    stored = await delivered_everything(running, lines)
    assert {"config.loaded", "request.created", "request.approved", "access.granted"} <= {e["type"] for e in stored}
    by_type = {e["type"]: e for e in stored}
    approved, created = by_type["request.approved"], by_type["request.created"]
    assert approved["actor"]["slack_id"] == "U_BOB" and approved["actor"]["email"] == "bob@example.com"
    assert approved["actor"]["name"] and approved["via"] == "slack"
    assert (approved["flow"], approved["target"], approved["request_id"]) == (
        "db_access",
        "prod_admin",
        created["request_id"],
    )
    assert created["actor"]["email"] == "alice@example.com" and created["fields"]["reason"] == "incident 42"
    assert created["reason"] == "incident 42"
    assert (
        by_type["config.loaded"]["detail"]["sha256"]
        == hashlib.sha256((tmp_path / "flows.yaml").read_bytes()).hexdigest()
    )
    result = await verify(running.runtime.store, [path])
    assert result.problem is None and result.checked == len(stored)


async def test_the_http_destination_gets_signed_batches_in_order(start_audited, audit_receiver):
    running = await start_audited(
        [{"type": "http", "url": audit_receiver.url, "secret": "${env:JITBOT_TEST_AUDIT_SECRET}"}]
    )
    await a_granted_request(running)
    await delivered_everything(running, lambda: list(audit_receiver.events))
    assert audit_receiver.bad_requests == []  # every signature and body checked out
    batch = audit_receiver.batches[-1]
    assert batch["sent_at"].endswith("Z") and len(batch["delivery_id"]) == 32


async def test_the_datadog_destination_sends_logs_with_the_api_key_service_and_tags(start_audited):
    async with DatadogIntake(api_key=DD_KEY) as intake:
        running = await start_audited(
            [
                {
                    "type": "datadog",
                    "site": "datadoghq.eu",
                    "api_key": "${env:JITBOT_TEST_DD_KEY}",
                    "service": "jitbot-prod",
                    "tags": {"env": "prod", "team": "secops"},
                    "intake_url": f"{intake.url}/api/v2/logs",
                }
            ]
        )
        await a_granted_request(running)
        await delivered_everything(running, intake.events)
        assert intake.bad_requests == []
        assert {item["service"] for item in intake.logs} == {"jitbot-prod"}
        assert {item["ddsource"] for item in intake.logs} == {"jitbot"}
        assert {"env:prod", "team:secops", "event_type:request.approved"} <= intake.tags_seen


async def test_a_wrong_datadog_key_is_alerted_scrubbed_and_not_retried_for_ever(start_audited, launch):
    async with DatadogIntake(api_key="the-right-key") as intake:
        running = await start_audited(
            [{"type": "datadog", "api_key": "${env:JITBOT_TEST_DD_KEY}", "intake_url": f"{intake.url}/api/v2/logs"}]
        )
        alert = await running.slack.wait_for_message(ALERTS_CHANNEL, contains="refused the events", timeout=10)
        assert "HTTP 403" in alert.plain and "Forbidden" in alert.plain
        assert DD_KEY not in alert.plain
        (status,) = await running.runtime.audit_delivery.status()
        assert status.backlog >= 1 and "403" in (status.last_error or "")
        requests = intake.requests
        assert running.runtime.audit_delivery.halted(status.name) is not None
        await asyncio.sleep(0.2)  # many poll and back-off periods of FAST: a halted destination stays quiet
        assert intake.requests == requests


async def test_a_refusal_quoting_a_secret_is_alerted_with_the_secret_scrubbed(start_audited, audit_receiver):
    audit_receiver.refuse(400, f"tenant rejected: signature made with {AUDIT_SECRET} is not ours")
    running = await start_audited(
        [{"type": "http", "url": audit_receiver.url, "secret": "${env:JITBOT_TEST_AUDIT_SECRET}"}]
    )
    alert = await running.slack.wait_for_message(ALERTS_CHANNEL, contains="refused the events", timeout=10)
    assert "HTTP 400" in alert.plain and "tenant rejected" in alert.plain
    assert AUDIT_SECRET not in alert.plain


async def test_a_destination_down_for_a_while_catches_up_in_order_with_no_gap(start_audited, audit_receiver):
    audit_receiver.down = True
    running = await start_audited(
        [{"type": "http", "url": audit_receiver.url, "secret": "${env:JITBOT_TEST_AUDIT_SECRET}", "batch_size": 2}]
    )
    await a_granted_request(running)  # the request is not slowed or refused by the dead destination
    await eventually(lambda: audit_receiver.requests >= 3, "a few failed deliveries")
    (status,) = await running.runtime.audit_delivery.status()
    assert status.position == 0 and "HTTP 503" in (status.last_error or "") and status.failures >= 1

    audit_receiver.accept()
    await delivered_everything(running, lambda: list(audit_receiver.events))
    await cursors_caught_up(running)
    (status,) = await running.runtime.audit_delivery.status()
    assert status.backlog == 0 and status.failures == 0


async def test_an_operator_sees_a_lagging_destinations_backlog_on_metrics_until_it_catches_up(
    start_audited, audit_receiver
):
    audit_receiver.down = True
    address = free_address()
    destination = {"type": "http", "url": audit_receiver.url, "secret": "${env:JITBOT_TEST_AUDIT_SECRET}"}
    running = await start_audited([destination], health_address=address)
    await a_granted_request(running)
    (status,) = await running.runtime.audit_delivery.status()
    lagging = await scrape(address)
    assert value(lagging, "jitbot_audit_backlog_events", destination=status.name) >= 3

    audit_receiver.accept()
    await delivered_everything(running, lambda: list(audit_receiver.events))
    await cursors_caught_up(running)
    caught_up = await scrape(address)
    assert value(caught_up, "jitbot_audit_backlog_events", destination=status.name) == 0


async def test_a_backlog_older_than_alert_after_is_alerted_once(start_audited, audit_receiver):
    audit_receiver.down = True
    running = await start_audited(
        [
            {
                "type": "http",
                "url": audit_receiver.url,
                "secret": "${env:JITBOT_TEST_AUDIT_SECRET}",
                "alert_after": "15m",
            }
        ]
    )
    await eventually(lambda: audit_receiver.requests >= 2, "failed deliveries")
    assert not [m for m in running.slack.messages_in(ALERTS_CHANNEL) if "behind" in m.plain]
    running.clock.advance(minutes=16)
    alert = await running.slack.wait_for_message(ALERTS_CHANNEL, contains="min behind", timeout=10)
    assert "HTTP 503" in alert.plain
    failures = audit_receiver.requests
    await eventually(lambda: audit_receiver.requests >= failures + 3, "more failed deliveries")
    assert len([m for m in running.slack.messages_in(ALERTS_CHANNEL) if "min behind" in m.plain]) == 1


async def test_kinesis_data_streams_get_every_event_in_order_through_the_aws_integration(start_audited, moto):
    kinesis = boto3.client("kinesis", endpoint_url=moto.url, region_name=REGION)
    kinesis.create_stream(StreamName="jitbot-audit", ShardCount=1)
    running = await start_audited(
        [{"type": "kinesis", "integration": "aws_main", "stream": "jitbot-audit"}],
        integrations={"aws_main": {"type": "aws", "region": REGION, "endpoint_url": moto.url}},
    )
    await a_granted_request(running)
    shard = kinesis.list_shards(StreamName="jitbot-audit")["Shards"][0]["ShardId"]

    def records() -> list[dict[str, Any]]:
        iterator = kinesis.get_shard_iterator(
            StreamName="jitbot-audit", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        return [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]]

    cache: list[dict[str, Any]] = []

    def got() -> list[dict[str, Any]]:
        cache[:] = records()
        return list(cache)

    await delivered_everything(running, got)


async def test_a_firehose_delivery_stream_gets_every_event_in_order(start_audited, moto):
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name=REGION)
    s3.create_bucket(Bucket="audit-archive")
    firehose = boto3.client("firehose", endpoint_url=moto.url, region_name=REGION)
    firehose.create_delivery_stream(
        DeliveryStreamName="jitbot-audit",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": "arn:aws:s3:::audit-archive",
            "Prefix": "jitbot/",
        },
    )
    running = await start_audited(
        [{"type": "kinesis", "integration": "aws_main", "firehose": "jitbot-audit"}],
        integrations={"aws_main": {"type": "aws", "region": REGION, "endpoint_url": moto.url}},
    )
    await a_granted_request(running)

    def got() -> list[dict[str, Any]]:
        keys = sorted(
            (o["LastModified"], o["Key"])
            for o in s3.list_objects_v2(Bucket="audit-archive", Prefix="jitbot/").get("Contents", [])
        )
        events: list[dict[str, Any]] = []
        for _, key in keys:
            body = s3.get_object(Bucket="audit-archive", Key=key)["Body"].read().decode()
            events.extend(json.loads(line) for line in body.splitlines() if line.strip())
        return sorted(events, key=lambda e: e["seq"])  # S3 object times are whole seconds

    await delivered_everything(running, got)


async def test_a_missing_kinesis_stream_is_a_refusal_not_an_endless_retry(start_audited, moto):
    running = await start_audited(
        [{"type": "kinesis", "integration": "aws_main", "stream": "no-such-stream"}],
        integrations={"aws_main": {"type": "aws", "region": REGION, "endpoint_url": moto.url}},
    )
    alert = await running.slack.wait_for_message(ALERTS_CHANNEL, contains="refused the events", timeout=15)
    assert "ResourceNotFoundException" in alert.plain


async def test_a_hooks_verdict_is_its_own_event_before_the_decision_it_leads_to(
    launch, receiver, monkeypatch, tmp_path
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    hooks = launch.write("hooks.py", 'async def on_request(evt):\n    return evt.deny("outside the change window")\n')
    running = await launch.start(
        flows_with_audit(receiver.url, [{"type": "file", "path": "trail.jsonl"}]).replace(
            "  approval_channel: C_APPROVALS\n", f"  approval_channel: C_APPROVALS\n  hooks: {hooks}\n", 1
        ),
        **FAST,
    )
    await running.submit("U_ALICE", "db_access", target="Prod Admin", reason="incident 42", duration="30m")
    await running.slack.wait_for_dm("U_ALICE", contains="denied", timeout=10)
    stored = await delivered_everything(
        running,
        lambda: (
            [json.loads(line) for line in (tmp_path / "trail.jsonl").read_text().splitlines()]
            if (tmp_path / "trail.jsonl").exists()
            else []
        ),
    )
    verdict, denied = [e for e in stored if e["type"] in ("hook.verdict", "request.denied")]
    assert (verdict["type"], verdict["via"], verdict["reason"]) == ("hook.verdict", "hook", "outside the change window")
    assert verdict["detail"] == {"hook": "on_request", "verdict": "deny"}
    assert (denied["via"], denied["actor"]["id"]) == ("hook", "hook:hooks.py:on_request")


async def test_a_destination_that_never_answers_does_not_hold_up_a_request(start_audited):
    async with AuditReceiver(secret=AUDIT_SECRET, holding=True) as stuck:
        running = await start_audited([{"type": "http", "url": stuck.url, "secret": "${env:JITBOT_TEST_AUDIT_SECRET}"}])
        await stuck.wait_for(lambda: len(stuck.events) >= 1)  # the first delivery hangs from here on
        await a_granted_request(running)  # request, approval and grant go through meanwhile
        (status,) = await running.runtime.audit_delivery.status()
        assert status.position == 0 and status.backlog >= 4
        stuck.release()
        await eventually(lambda: {e["seq"] for e in stuck.events} >= set(range(1, status.head + 1)), "the backlog")


async def test_a_refused_destination_stays_halted_then_after_the_fix_and_a_restart_gets_the_backlog_in_order(
    start_audited, audit_receiver, launch, receiver
):
    audit_receiver.refuse(401, "unknown tenant")
    destinations = [{"type": "http", "url": audit_receiver.url, "secret": "${env:JITBOT_TEST_AUDIT_SECRET}"}]
    running = await start_audited(destinations)
    await running.slack.wait_for_message(ALERTS_CHANNEL, contains="refused the events", timeout=10)
    await a_granted_request(running)  # the bot goes on; the events wait in the outbox
    (status,) = await running.runtime.audit_delivery.status()
    assert status.position == 0 and "refused, delivery stopped" in (status.last_error or "")
    refused_calls = audit_receiver.requests
    clock = running.clock
    await running.stop()

    audit_receiver.accept()  # the operator fixed the tenant; the restart lifts the halt
    running = await launch.start(flows_with_audit(receiver.url, destinations), clock=clock, **FAST)
    stored = await delivered_everything(running, lambda: list(audit_receiver.events))
    assert audit_receiver.requests > refused_calls
    assert [e["type"] for e in stored][1:4] == ["request.created", "request.approved", "access.granted"]
    await cursors_caught_up(running)
    (status,) = await running.runtime.audit_delivery.status()
    assert status.backlog == 0 and running.runtime.audit_delivery.halted(status.name) is None
