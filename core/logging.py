"""Configure structlog once: JSON or console, stdlib bridge for slack_bolt/slack_sdk, secret scrubbing."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from core.secrets import SecretRegistry


def scrubbing_processors(
    secrets: SecretRegistry,
) -> tuple[structlog.typing.Processor, structlog.typing.Processor]:
    """The two scrubbing steps, bound to `secrets`: one on the event's values, one on the rendered line."""

    def scrub_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        # Before rendering: renderers escape quotes, backslashes, newlines and non-ASCII (JSON) or print
        # repr() (console), so a secret is only reliably found in the values themselves. Runs after
        # format_exc_info, so the traceback text is scrubbed too.
        scrubbed: Mapping[str, Any] = secrets.scrub_value(dict(event_dict))
        return scrubbed

    def scrub_rendered(_logger: Any, _method: str, line: Any) -> Any:
        # Second net after the value pass: anything a renderer adds by itself (its own fallback for an
        # object, a later processor) is still matched, raw or in the escaped forms the registry holds.
        return secrets.scrub(line) if isinstance(line, str) else line

    return scrub_event, scrub_rendered


def configure_logging(
    fmt: str | None = None, level: str = "INFO", stream: TextIO | None = None, *, secrets: SecretRegistry
) -> str:
    """Set up structlog and the stdlib root logger, scrubbing `secrets`; `fmt` is 'json' or 'console' (by TTY)."""
    stream = stream or sys.stderr
    if fmt not in ("json", "console"):
        fmt = "console" if stream.isatty() else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    scrub_event, scrub_rendered = scrubbing_processors(secrets)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            scrub_event,
            renderer,
            scrub_rendered,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Bolt and the SDK log every envelope at DEBUG; INFO and up is what an operator wants.
    for noisy in ("slack_bolt", "slack_sdk", "apscheduler", "botocore", "urllib3", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    # slack_sdk's Web API clients test their logger's own level (`logger.level <= DEBUG`), not the
    # effective one: left at NOTSET, each call formats its headers and whole body for a debug line.
    for client in ("slack_sdk.web.async_base_client", "slack_sdk.web.base_client"):
        logger = logging.getLogger(client)
        logger.setLevel(logger.getEffectiveLevel())
    return fmt
