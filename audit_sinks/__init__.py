"""Audit destinations: one sink per `audit.destinations` entry of the flows file (docs/audit.md).

Sinks are adapters like the strategies: they implement `core.audit_delivery.AuditSink`, and the
composition root builds them with `build_sinks`. They reuse what the strategies already have for
talking to the outside (the `aws` integration, the HTTP client with its limits, webhook signing),
so this package may import `strategies` (docs/ARCHITECTURE.md says why); nothing imports it but
`runtime.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from audit_sinks.file import FileSink
from audit_sinks.http import DatadogSink, HttpSink
from audit_sinks.kinesis import KinesisSink
from core.audit_config import (
    AuditSettings,
    DatadogDestination,
    FileDestination,
    HttpDestination,
    KinesisDestination,
)
from core.audit_delivery import AuditSink
from core.clock import Clock


def build_sinks(
    settings: AuditSettings,
    *,
    integrations: Mapping[str, Any],
    base_dir: Path,
    clock: Clock,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Sequence[AuditSink]:
    """One sink per configured destination, in order."""
    sinks: list[AuditSink] = []
    for destination in settings.destinations:
        if isinstance(destination, FileDestination):
            sinks.append(FileSink(destination, base_dir=base_dir))
        elif isinstance(destination, HttpDestination):
            sinks.append(HttpSink(destination, clock=clock, transport=transport))
        elif isinstance(destination, DatadogDestination):
            sinks.append(DatadogSink(destination, transport=transport))
        elif isinstance(destination, KinesisDestination):
            sinks.append(KinesisSink(destination, integrations[destination.integration]))
        else:  # pragma: no cover - the config model admits no other type
            raise TypeError(f"no sink for {type(destination).__name__}")
    return sinks


__all__ = ["DatadogSink", "FileSink", "HttpSink", "KinesisSink", "build_sinks"]
