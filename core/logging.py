"""Configure structlog once: JSON or console, stdlib bridge for slack_bolt/slack_sdk, secret scrubbing."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from core.secrets import REDACTED, Secret, scrub

# Deeper than any event we log; a self-referencing structure stops here as its (cycle-safe) repr.
_MAX_DEPTH = 12


class _Repr:
    """An object already turned into (scrubbed) text; renders exactly as the object's repr did."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def scrub_value(value: Any, depth: int = 0) -> Any:
    """A copy of a log value with every registered secret replaced by '***', walking dicts, lists, tuples, sets."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Secret):
        return REDACTED
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {_scrub_key(k): scrub_value(v, depth + 1) for k, v in value.items()}
        if type(value) is tuple:  # kept a tuple: the console renderer shows positional args as one
            return tuple(scrub_value(v, depth + 1) for v in value)
        if isinstance(value, (list, tuple, set, frozenset)):
            return [scrub_value(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return scrub(bytes(value).decode("utf-8", "backslashreplace"))
    # Anything else (an exception, a client, a dataclass) would be rendered through its repr, where
    # a secret appears escaped; the registry holds the escaped forms, so scrub that text here.
    return _Repr(_scrubbed_repr(value))


def _scrubbed_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not cost us the log line
        text = f"<{type(value).__name__} with a failing repr>"
    return scrub(text)


def _scrub_key(key: Any) -> Any:
    # A key must stay something JSON can write: a primitive as it is, anything else as its text.
    if key is None or isinstance(key, (str, bool, int, float)):
        return scrub_value(key)
    return _scrubbed_repr(key)


def _scrub_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    # Before rendering: renderers escape quotes, backslashes, newlines and non-ASCII (JSON) or print
    # repr() (console), so a secret is only reliably found in the values themselves. Runs after
    # format_exc_info, so the traceback text is scrubbed too.
    scrubbed: Mapping[str, Any] = scrub_value(dict(event_dict))
    return scrubbed


def _scrub_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # Second net after the value pass: anything a renderer adds by itself (its own fallback for an
    # object, a later processor) is still matched, raw or in the escaped forms the registry holds.
    return scrub(line) if isinstance(line, str) else line


def configure_logging(fmt: str | None = None, level: str = "INFO", stream: TextIO | None = None) -> str:
    """Set up structlog and the stdlib root logger; `fmt` is 'json' or 'console' (default by TTY)."""
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
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub_event,
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
