"""Each audit sink against its stand-in, and the delivery worker's handling of what they answer."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from botocore.stub import Stubber

from audit_sinks.file import FileSink
from audit_sinks.http import HttpSink
from audit_sinks.kinesis import KinesisSink
from core.audit_config import FileDestination, HttpDestination, KinesisDestination
from core.audit_delivery import AuditDelivery, BatchTooLarge, DeliveryFailed, DeliveryRefused
from core.audit_events import ChainHead
from core.models import AuditEvent
from core.retry import Backoff
from core.secrets import Secret, SecretRegistry
from storage import AuditLog, Store
from storage.audit_outbox import AuditCursors
from strategies.aws import AwsIntegration, AwsIntegrationConfig
from tests.fakes.audit_receivers import AuditReceiver
from tests.fakes.clock import FrozenClock

SECRET = "sink-test-secret-0123456789"
HEAD = ChainHead(9, "ab" * 32, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")


def events(first: int, count: int, *, pad: int = 0) -> list[dict]:
    return [{"seq": n, "event_id": f"e{n}", "type": "other", "pad": "x" * pad} for n in range(first, first + count)]


async def test_the_file_sink_rotates_by_size_and_keeps_the_newest_files(tmp_path):
    sink = FileSink(FileDestination(type="file", path="trail.jsonl", max_bytes=4096, keep=2), base_dir=tmp_path)
    await sink.open()
    for batch in range(8):
        assert await sink.deliver(events(batch * 4 + 1, 4, pad=300), HEAD) == 4
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["trail.jsonl", "trail.jsonl.1", "trail.jsonl.2"]  # .3 was dropped: keep=2
    seqs = [json.loads(line)["seq"] for name in reversed(files) for line in (tmp_path / name).read_text().splitlines()]
    assert seqs == sorted(seqs) and seqs[-1] == 32  # newest last, in order, no line split across files
    assert all((tmp_path / name).stat().st_size <= 4096 for name in files)
    line = json.loads((tmp_path / "trail.jsonl").read_text().splitlines()[0])
    assert line["chain_head"] == {"seq": 9, "event_id": HEAD.event_id, "hash": "ab" * 32}


async def test_a_file_sink_that_cannot_write_fails_to_be_retried(tmp_path):
    (tmp_path / "blocked").write_text("a file where the directory should be")
    sink = FileSink(FileDestination(type="file", path="blocked/trail.jsonl"), base_dir=tmp_path)
    with pytest.raises(DeliveryFailed, match="cannot write"):
        await sink.deliver(events(1, 1), HEAD)


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, DeliveryFailed), (429, DeliveryFailed), (408, DeliveryFailed), (413, BatchTooLarge), (401, DeliveryRefused)],
)
async def test_the_http_sink_maps_each_answer(status, error):
    async with AuditReceiver(secret=SECRET) as receiver:
        receiver.refuse(status, "no")
        sink = HttpSink(HttpDestination(type="http", url=receiver.url, secret=Secret(SECRET)), clock=FrozenClock())
        try:
            with pytest.raises(error, match=f"HTTP {status}"):
                await sink.deliver(events(1, 2), HEAD)
        finally:
            await sink.aclose()


async def test_an_unreachable_http_destination_is_an_outage_not_a_refusal():
    sink = HttpSink(
        HttpDestination(type="http", url="http://127.0.0.1:9/audit", secret=Secret(SECRET)), clock=FrozenClock()
    )
    try:
        with pytest.raises(DeliveryFailed, match="could not be reached"):
            await sink.deliver(events(1, 1), HEAD)
    finally:
        await sink.aclose()


def kinesis_sink() -> KinesisSink:
    integration = AwsIntegration("aws_main", AwsIntegrationConfig(type="aws", region="us-east-1"))
    return KinesisSink(KinesisDestination(type="kinesis", integration="aws_main", stream="trail"), integration)


async def test_a_kinesis_batch_taken_in_part_counts_only_the_leading_records(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sink = kinesis_sink()
    client = sink._aws.client("kinesis")
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {
                "FailedRecordCount": 1,
                "Records": [
                    {"SequenceNumber": "1", "ShardId": "shardId-0"},
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
                    {"SequenceNumber": "3", "ShardId": "shardId-0"},
                ],
            },
        )
        assert await sink.deliver(events(1, 3), HEAD) == 1
        stub.add_client_error("put_records", "ResourceNotFoundException", "Stream trail not found")
        with pytest.raises(DeliveryRefused, match="ResourceNotFoundException"):
            await sink.deliver(events(2, 2), HEAD)
        stub.add_client_error("put_records", "ProvisionedThroughputExceededException", "slow down")
        with pytest.raises(DeliveryFailed, match="ProvisionedThroughputExceededException"):
            await sink.deliver(events(2, 2), HEAD)


async def test_a_batch_too_large_is_halved_until_it_fits(databases):
    async with AuditReceiver(secret=SECRET, max_events=3) as receiver, await Store.open(databases.where()) as store:
        log = AuditLog(store)
        clock = FrozenClock()
        for n in range(10):
            await log.append(AuditEvent(at=clock.now() + timedelta(seconds=n), actor="system", action="config.loaded"))
        sink = HttpSink(
            HttpDestination(type="http", url=receiver.url, secret=Secret(SECRET), batch_size=20), clock=clock
        )
        alerts: list = []

        async def alert(a) -> None:
            alerts.append(a)

        delivery = AuditDelivery(
            AuditCursors(store),
            [sink],
            alert=alert,
            clock=clock,
            secrets=SecretRegistry(),
            backoff=Backoff(first=0.01, cap=0.01, attempts=None),
            poll_seconds=0.01,
        )
        await delivery.start()
        try:
            await receiver.wait_for(lambda: len(receiver.events) >= 10)
        finally:
            await delivery.stop()
        assert receiver.seqs() == list(range(1, 11)) and alerts == []
        assert max(len(b["events"]) for b in receiver.batches) <= 3


async def test_a_token_in_an_http_destinations_url_never_reaches_its_name_an_alert_or_its_stored_error(
    tmp_path, databases
):
    from core.config import load_config
    from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES
    from tests.core.test_audit_config import HEAD as FLOWS_HEAD

    token = "tok-in-url-7731"
    async with AuditReceiver(secret=SECRET) as receiver, await Store.open(databases.where()) as store:
        url = receiver.url + f"?token={token}&region=eu"
        flows = tmp_path / "flows.yaml"
        flows.write_text(
            FLOWS_HEAD + f'audit:\n  destinations:\n    - {{type: http, url: "{url}", secret: {SECRET}}}\n'
        )
        registry = SecretRegistry()
        config = load_config(
            flows, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES, secrets=registry
        )
        (destination,) = config.audit.destinations
        assert token not in destination.key
        # The receiver refuses, echoing what it was sent (as many do).
        receiver.refuse(403, f"unknown token {token} for {url}")
        clock = FrozenClock()
        await AuditLog(store).append(AuditEvent(at=clock.now(), actor="system", action="config.loaded"))
        alerts: list = []

        async def alert(a) -> None:
            alerts.append(a)

        delivery = AuditDelivery(
            AuditCursors(store),
            [HttpSink(destination, clock=clock)],
            alert=alert,
            clock=clock,
            secrets=registry,
            backoff=Backoff(first=0.01, cap=0.01, attempts=None),
            poll_seconds=0.01,
        )
        await delivery.start()
        try:
            for _ in range(1000):  # the refusal halts the destination and alerts once
                if alerts:
                    break
                await asyncio.sleep(0.01)
        finally:
            await delivery.stop()
        (status,) = await AuditCursors(store).status(None)
        told = " ".join(str(a) for a in alerts) + repr(alerts) + str(status)
        assert "403" in told
        assert token not in told
