"""The `http` and `datadog` destinations: batches of events POSTed as JSON.

`http` body, serialised once and signed exactly as sent (like the webhook strategy,
docs/webhook-contract.md): `{"events": [...], "chain_head": {"seq", "hash"}, "sent_at",
"delivery_id"}` with `X-Jitbot-Signature: sha256=<hex HMAC-SHA256 of the body>` and
`X-Jitbot-Delivery: audit:<first seq>-<last seq>` (the same on every re-delivery of that batch;
`delivery_id` is fresh per attempt, so a receiver can refuse a replay).

`datadog`: Datadog's logs intake (API v2), a gzip'd JSON array with one log per event:
`{"message": <the event as JSON, with chain_head>, "ddsource", "service", "ddtags", "hostname"}`
and the `DD-API-KEY` header.

Answers: 2xx delivered; 408, 429, 5xx, time-outs and connection errors are retried; 413 halves the
batch; any other 4xx is a refusal (alerted with the answer's first 200 characters, scrubbed).
"""

from __future__ import annotations

import gzip
import json
import socket
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import httpx

from core.audit_config import DatadogDestination, HttpDestination
from core.audit_delivery import BatchTooLarge, DeliveryFailed, DeliveryRefused
from core.audit_events import ChainHead
from core.clock import Clock
from strategies.http import http_client
from strategies.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, iso_utc, sign

_RETRYABLE_4XX = frozenset({408, 425, 429})
_EXCERPT = 200


async def post(client: httpx.AsyncClient, url: str, *, content: bytes, headers: Mapping[str, str], what: str) -> None:
    """POST and map the answer onto delivered / DeliveryFailed / BatchTooLarge / DeliveryRefused."""
    try:
        response = await client.post(url, content=content, headers=dict(headers))
    except httpx.TimeoutException as exc:
        raise DeliveryFailed(f"{what} did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{what} could not be reached ({type(exc).__name__})") from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = " ".join(response.text[:_EXCERPT].split())
    answer = f"{what} answered HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if status == 413:
        raise BatchTooLarge(answer)
    if status in _RETRYABLE_4XX or status >= 500 or status < 200 or 300 <= status < 400:
        raise DeliveryFailed(answer)
    raise DeliveryRefused(answer)


class HttpSink:
    """Signed batches to the destination's `url`."""

    def __init__(
        self, config: HttpDestination, *, clock: Clock, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.name = config.key
        self.batch_size = config.batch_size
        self.alert_after: timedelta = config.alert_after
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        """Build the client."""
        if self._client is None:
            self._client = http_client(timeout=self.config.timeout.total_seconds(), transport=self._transport)

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def body(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> bytes:
        """The signed body of one delivery attempt."""
        payload = {
            "events": list(events),
            "chain_head": head.document(),
            "sent_at": iso_utc(self._clock.now()),
            "delivery_id": uuid.uuid4().hex,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    async def deliver(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> int:
        """POST the batch."""
        await self.open()
        assert self._client is not None
        content = self.body(events, head)
        headers = {name: value.reveal() for name, value in self.config.headers.items()}
        headers.update(
            {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: f"sha256={sign(self.config.secret.reveal(), content)}",
                DELIVERY_HEADER: f"audit:{events[0]['seq']}-{events[-1]['seq']}",
            }
        )
        await post(
            self._client, self.config.url, content=content, headers=headers, what=f"audit destination {self.name}"
        )
        return len(events)


class DatadogSink:
    """Batches of logs to Datadog's logs intake for the configured site."""

    def __init__(self, config: DatadogDestination, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.name = config.key
        self.batch_size = config.batch_size
        self.alert_after: timedelta = config.alert_after
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._hostname = socket.gethostname()

    async def open(self) -> None:
        """Build the client."""
        if self._client is None:
            self._client = http_client(timeout=30.0, transport=self._transport)

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def logs(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> list[dict[str, Any]]:
        """One log item per event."""
        tags = ",".join(self.config.tags)
        items = []
        for event in events:
            item_tags = f"{tags},event_type:{event['type']}" if tags else f"event_type:{event['type']}"
            items.append(
                {
                    "message": json.dumps({**event, "chain_head": head.document()}, ensure_ascii=False),
                    "ddsource": self.config.source,
                    "service": self.config.service,
                    "ddtags": item_tags,
                    "hostname": self._hostname,
                }
            )
        return items

    async def deliver(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> int:
        """POST the batch, gzip'd."""
        await self.open()
        assert self._client is not None
        content = gzip.compress(json.dumps(self.logs(events, head), ensure_ascii=False).encode(), compresslevel=6)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "DD-API-KEY": self.config.api_key.reveal(),
        }
        await post(self._client, self.config.url, content=content, headers=headers, what=f"Datadog ({self.name})")
        return len(events)
