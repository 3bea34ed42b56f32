"""Configure structlog once: JSON or console, secret scrubbing, one stream for jitbot's lines and other libraries'.

jitbot's own loggers (`structlog.get_logger(...)`) run their processors once and hand the finished
line straight to the stream's handler; no `logging.LogRecord` is made for them. Records of other
libraries (slack_bolt, slack_sdk, apscheduler, ...) go through stdlib logging and are formatted by a
`ProcessorFormatter` with the same processors. Both kinds of line are scrubbed twice (values before
rendering, the rendered line after) and written and flushed one at a time under the handler's lock,
so a line is in the kernel's hands before the call that logged it returns.

Configure once per process: a logger used after `configure_logging` keeps that call's handler and
registry (structlog caches it), so a test that reconfigures turns caching off.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from core.secrets import SecretRegistry

# The stdlib level of each method name structlog's stdlib-style BoundLogger passes on.
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def scrubbing_processors(
    secrets: SecretRegistry,
) -> tuple[structlog.typing.Processor, structlog.typing.Processor]:
    """The two scrubbing steps, bound to `secrets`: one on the event's values, one on the rendered line."""

    def scrub_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        # Before rendering: renderers escape quotes, backslashes, newlines and non-ASCII (JSON) or print
        # repr() (console), so a secret is only reliably found in the values themselves. Runs after
        # format_exc_info, so the traceback text is scrubbed too.
        # scrub_value returns a new dict: the event itself is only copied when it is not a plain dict.
        scrubbed: Mapping[str, Any] = secrets.scrub_value(event_dict if type(event_dict) is dict else dict(event_dict))
        return scrubbed

    def scrub_rendered(_logger: Any, _method: str, line: Any) -> Any:
        # Second net after the value pass: anything a renderer adds by itself (its own fallback for an
        # object, a later processor) is still matched, raw or in the escaped forms the registry holds.
        return secrets.scrub(line) if isinstance(line, str) else line

    return scrub_event, scrub_rendered


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one writer of log lines: stdlib records it formats itself, and lines jitbot's loggers rendered."""

    def write_line(self, line: str) -> None:
        """Write one finished line and flush it, under the same lock as the stdlib records."""
        self.acquire()
        try:
            self.stream.write(line + self.terminator)
            self.stream.flush()
        except Exception:  # as stdlib's handlers do: a broken stream must not break the code that logs
            self.handleError(logging.makeLogRecord({"name": "jitbot", "msg": "(a rendered log line)"}))
        finally:
            self.release()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (stdlib's name)
        """Report a line that could not be formatted or written, without its message or arguments."""
        # stdlib's version prints the record's message and arguments as given, before any scrubbing.
        if logging.raiseExceptions and sys.stderr:
            error = sys.exc_info()[1]
            try:
                sys.stderr.write(f"--- Logging error: {type(error).__name__} in a line from {record.name}\n")
            except Exception:  # stderr itself is gone: nothing left to tell
                pass


class LineLogger:
    """What jitbot's structlog loggers wrap: the level of the stdlib logger of the same name, and the handler."""

    __slots__ = ("_handler", "_stdlib", "name")

    def __init__(self, stdlib: logging.Logger, handler: LineHandler) -> None:
        self._stdlib = stdlib
        self._handler = handler
        self.name = stdlib.name

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (stdlib's name, as structlog calls it)
        """Whether a line at `level` is written: stdlib's answer for this name (root level, logging.disable)."""
        return self._stdlib.isEnabledFor(level)

    def getEffectiveLevel(self) -> int:  # noqa: N802
        """The stdlib logger's effective level."""
        return self._stdlib.getEffectiveLevel()

    def write(self, line: str) -> None:
        """Write the line the processors rendered."""
        self._handler.write_line(line)

    debug = info = warning = warn = error = exception = critical = fatal = msg = write

    def __getattr__(self, name: str) -> Any:
        # Anything else structlog's BoundLogger proxies (`parent`, `handlers`, `propagate`, ...); never
        # our own slots (a copy made without __init__ would otherwise recurse looking them up).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._stdlib, name)


class LineLoggerFactory:
    """structlog logger factory: a LineLogger per name (guessed from the caller, as stdlib's factory does)."""

    def __init__(self, handler: LineHandler) -> None:
        self._handler = handler
        self._stdlib = structlog.stdlib.LoggerFactory()

    def __call__(self, *args: Any) -> LineLogger:
        return LineLogger(self._stdlib(*args), self._handler)


class LevelFilteringBoundLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib-style BoundLogger that drops a line below the level before running any processor."""

    def _proxy_to_logger(self, method_name: str, event: str | None = None, *event_args: Any, **event_kw: Any) -> Any:
        level = _METHOD_LEVELS.get(method_name)
        if level is not None and not self._logger.isEnabledFor(level):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


def render_and_scrub(
    renderer: structlog.typing.Processor, secrets: SecretRegistry
) -> tuple[structlog.typing.Processor, list[structlog.typing.Processor]]:
    """The last processor of jitbot's own lines, and the same steps as a list for ProcessorFormatter."""
    scrub_event, scrub_rendered = scrubbing_processors(secrets)
    format_exc_info: Callable[..., Any] = structlog.processors.format_exc_info
    render_line: Callable[..., Any] = renderer
    scrub_line: Callable[..., Any] = scrub_rendered
    scrub_values: Callable[..., Any] = scrub_event

    def render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        # The four steps in one processor, so that whatever is inserted before the last processor (a
        # test keeping raw events) still sees the event dict, not a half-rendered line.
        try:
            line = render_line(
                logger, method, scrub_values(logger, method, format_exc_info(logger, method, event_dict))
            )
        except Exception as error:  # a log call must not raise into the code that logs
            line = render_line(logger, method, _unrenderable(event_dict, error, secrets))
        return str(scrub_line(logger, method, line))

    steps = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, format_exc_info, scrub_event, renderer]
    return render, [*steps, scrub_rendered]


def _unrenderable(event_dict: Mapping[str, Any], error: Exception, secrets: SecretRegistry) -> dict[str, str]:
    # The fields every line has, and what went wrong; no other value (one of them broke the line).
    fields = ("event", "level", "logger", "timestamp")
    kept = {k: secrets.scrub(event_dict[k]) for k in fields if isinstance(event_dict.get(k), str)}
    return {**kept, "log_error": f"the line could not be rendered: {type(error).__name__}"}


class ReusedJSONEncoder:
    """`json.dumps` for JSONRenderer keeping one encoder (dumps builds one per call when given `default`)."""

    def __init__(self) -> None:
        self._default: Any = None
        self._encode: Callable[[Any], str] | None = None

    def __call__(self, obj: Any, *, default: Callable[[Any], Any]) -> str:
        encode = self._encode
        if encode is None or default is not self._default:
            # Exactly the encoder json.dumps(obj, default=default) would build, so the text is the same.
            encode = json.JSONEncoder(default=default).encode
            self._default, self._encode = default, encode
        return encode(obj)


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
        structlog.processors.JSONRenderer(ReusedJSONEncoder())
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    render, formatter_steps = render_and_scrub(renderer, secrets)
    handler = LineHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=formatter_steps))
    structlog.configure(
        processors=[*shared, render],
        logger_factory=LineLoggerFactory(handler),
        wrapper_class=LevelFilteringBoundLogger,
        cache_logger_on_first_use=True,
    )
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
