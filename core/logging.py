"""Configure structlog once: JSON or console, stdlib bridge for slack_bolt/slack_sdk, secret scrubbing."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from core.secrets import scrub


def _scrub_rendered(_logger: Any, _method: str, line: str) -> str:
    # Second line of defence after the Secret type: whatever object a log call carried, the rendered
    # line never holds a registered secret value.
    return scrub(line)


def configure_logging(fmt: str | None = None, level: str = "INFO", stream=None) -> str:
    """Set up structlog and the stdlib root logger; `fmt` is 'json' or 'console' (default by TTY)."""
    stream = stream or sys.stderr
    if fmt not in ("json", "console"):
        fmt = "console" if stream.isatty() else "json"
    shared: list = [
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
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
            _scrub_rendered,
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
    return fmt
