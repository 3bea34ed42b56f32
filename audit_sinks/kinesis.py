"""The `kinesis` destination: Kinesis Data Streams (`PutRecords`) or a Firehose delivery stream
(`PutRecordBatch`), through an `aws` integration.

Each record is one event as JSON (with `chain_head`), ending in a newline (Firehose concatenates
records). Data Streams records share one partition key, so they land on one shard in order.
Neither call guarantees order within a batch and either may take some records and not others: the
cursor moves past the leading records taken, and the rest (even some that were taken) are sent again,
so a consumer sees every event at least once and de-duplicates by `event_id` (or orders by `seq`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.audit_config import KinesisDestination
from core.audit_delivery import DeliveryFailed, DeliveryRefused
from core.audit_events import ChainHead
from strategies.aws import ACCESS_DENIED_CODES, AwsIntegration, error_code

# A missing stream, no permission, a record refused as malformed: the same call fails the same way.
_REFUSED_CODES = ACCESS_DENIED_CODES | {
    "ResourceNotFoundException",
    "ValidationException",
    "InvalidArgumentException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSInvalidStateException",
    "InvalidKMSResourceException",
}


class KinesisSink:
    """Batches of records to a Kinesis data stream or a Firehose delivery stream."""

    def __init__(self, config: KinesisDestination, integration: AwsIntegration) -> None:
        self.config = config
        self.name = config.key
        # PutRecords and PutRecordBatch take at most 500 records.
        self.batch_size = min(config.batch_size, 500)
        self.alert_after: timedelta = config.alert_after
        self._aws = integration

    async def open(self) -> None:
        """The integration is opened by the runtime."""

    async def aclose(self) -> None:
        """The integration is closed by the runtime."""

    async def deliver(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> int:
        """Put the batch; return how many leading records were taken."""
        data = [
            (json.dumps({**event, "chain_head": head.document()}, ensure_ascii=False) + "\n").encode()
            for event in events
        ]
        try:
            if self.config.stream is not None:
                response = await self._aws.call(
                    "kinesis",
                    "put_records",
                    StreamName=self.config.stream,
                    Records=[{"Data": d, "PartitionKey": self.config.partition_key} for d in data],
                )
                results = response.get("Records", [])
            else:
                response = await self._aws.call(
                    "firehose",
                    "put_record_batch",
                    DeliveryStreamName=self.config.firehose,
                    Records=[{"Data": d} for d in data],
                )
                results = response.get("RequestResponses", [])
        except ClientError as exc:
            code = error_code(exc)
            message = (
                f"AWS {self.name} answered {code or 'an error'}: {exc.response.get('Error', {}).get('Message', '')}"
            )
            if code in _REFUSED_CODES:
                raise DeliveryRefused(message.strip(": ")) from exc
            raise DeliveryFailed(message.strip(": ")) from exc
        except BotoCoreError as exc:
            raise DeliveryFailed(f"AWS {self.name} could not be reached ({type(exc).__name__})") from exc
        taken = 0
        for result in results:
            if result.get("ErrorCode"):
                break
            taken += 1
        return min(taken, len(data))  # a short answer counts only what it confirms
