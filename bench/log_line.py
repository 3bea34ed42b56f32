"""CPU per log line: jitbot's logging pipeline as it is now against the one at an earlier revision.

Run: .venv/bin/python bench/log_line.py [--lines 2000] [--trials 9] [--before REV] [--secrets 6] [--console]

Both pipelines are built in this process by their own `configure_logging` (the earlier revision's
`core/logging.py` and `core/secrets.py` are read with `git show`), with the same registry of secrets,
writing JSON lines into a real file as `bot.py run` writes to stderr (one write and flush per line).
It first checks that both write the same text for one line of every shape (timestamps aside).
Trials alternate (before, now, before, now, ...) so the machine's noise falls on both alike. The lines
are the ones an approval writes (`request.created`, `request.approved`, `access.granted`, with the
handler's context variables), plus a foreign stdlib record as slack_bolt writes one.
Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

import core.logging  # noqa: E402
import core.secrets  # noqa: E402

# The last revision whose pipeline went through stdlib logging for every line (structlog's stdlib
# BoundLogger → a LogRecord → ProcessorFormatter); the default thing to compare against.
BEFORE = "29da1e2"
# What a deployed bot registers: its two Slack tokens, a webhook signing secret, an integration's API
# token, a database password, an AWS secret with a JSON key (each also in its escaped forms).
SECRET_VALUES = [
    "xoxb-1111111111-2222222222222-AbCdEfGhIjKlMnOpQrStUvWx",
    "xapp-1-A0123456789-3333333333333-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "whsec-bench-0123456789abcdef",
    "00aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_ab",
    "pg-pässwörd\"with'quotes",
    '{"api_key": "dd0123456789abcdef0123456789abcd"}',
    "dd0123456789abcdef0123456789abcd",
    "sk_live_51H0123456789abcdefghijklmnop",
]


def load_revision(rev: str) -> tuple[ModuleType, ModuleType]:
    """`core.secrets` and `core.logging` as they were at `rev`, as fresh modules beside the current ones."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
        ).stdout

    def module(name: str, path: str) -> ModuleType:
        spec = importlib.util.spec_from_loader(name, loader=None)
        assert spec is not None
        made = importlib.util.module_from_spec(spec)
        sys.modules[name] = made  # dataclasses look their module up while the class is built
        exec(compile(source(path), f"{rev}:{path}", "exec"), made.__dict__)
        return made

    secrets = module("_before_core_secrets", "core/secrets.py")
    current = sys.modules["core.secrets"]
    sys.modules["core.secrets"] = secrets  # the old logging module imports the old registry
    try:
        logging_module = module("_before_core_logging", "core/logging.py")
    finally:
        sys.modules["core.secrets"] = current
    return secrets, logging_module


@contextmanager
def pipeline(logging_module: ModuleType, secrets_module: ModuleType, stream: Any, fmt: str, count: int):
    """One pipeline configured as `bot.py run` configures it; everything put back afterwards."""
    registry = secrets_module.SecretRegistry()
    for value in SECRET_VALUES[:count]:
        registry.register(value)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging_module.configure_logging(fmt, "INFO", stream=stream, secrets=registry)
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:], level = saved
        root.setLevel(level)


def approval_lines(n: int) -> Callable[[], None]:
    """Write the lines of n/3 approvals through the configured pipeline."""
    log = structlog.get_logger("jitbot.engine").bind()  # bound to the configuration of this moment

    def run() -> None:
        for i in range(n // 3):
            request_id = f"{i:016x}"
            structlog.contextvars.bind_contextvars(slack_user="U_BENCH00001", slack_type="view_submission")
            log.info("request.created", request_id=request_id, flow="db_access", target="prod_admin")
            structlog.contextvars.bind_contextvars(slack_user="U_BENCH00002", slack_type="block_actions")
            log.info("request.approved", request_id=request_id, actor="U_BENCH00002")
            log.info("access.granted", request_id=request_id, expires_at="2026-11-30T15:50:46.249570+00:00")
        structlog.contextvars.clear_contextvars()

    return run


def foreign_lines(n: int) -> Callable[[], None]:
    """Write n stdlib records as slack_bolt writes them (a message with %-arguments)."""
    log = logging.getLogger("slack_bolt.AsyncApp")

    def run() -> None:
        for i in range(n):
            log.warning("A new session (%s) has been established", f"s_{i:013d}")

    return run


class _Client:
    """A third-party client whose repr shows its token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Client(token={self.token!r})"


def every_kind_of_line() -> None:
    """One line of each shape jitbot and its libraries write: values of every type, exceptions, records."""
    token, other = SECRET_VALUES[0], SECRET_VALUES[4]
    log = structlog.get_logger("jitbot.engine").bind()
    structlog.contextvars.bind_contextvars(slack_user="U1", slack_type="block_actions")
    log.info("request.approved", request_id="r1", actor="U2")
    log.info("positional %s", token, n=3)
    log.warning("odd", seen={"a"}, pair=("a", 1), client=_Client(other), raw=b"x\xff", nested={"k": [1, {other}]})
    log.debug("below the level")
    try:
        raise KeyError(other)
    except KeyError:
        log.exception("handler.crashed", x=1)
    log.error("grant.failed", exc_info=ValueError(token))
    log.critical("crit")
    log.log(logging.WARNING, "via log", text="é\n")
    logging.getLogger("slack_bolt.AsyncApp").warning("session %s lost with %s", "s_1", token)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("slack_sdk").exception("socket lost")
    logging.getLogger("slack_sdk").info("below the libraries' level")
    structlog.contextvars.clear_contextvars()


def same_output(pipelines: dict[str, tuple[ModuleType, ModuleType]], fmt: str, count: int) -> bool:
    """Whether both pipelines write the same text for every_kind_of_line (timestamps and file paths aside)."""
    outputs = []
    for secrets_module, logging_module in pipelines.values():
        buffer = io.StringIO()
        with pipeline(logging_module, secrets_module, buffer, fmt, count):
            every_kind_of_line()
        outputs.append(re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<time>", buffer.getvalue()))
    return len(set(outputs)) == 1


def measure(make: Callable[[int], Callable[[], None]], n: int) -> float:
    """CPU µs per line (this thread) for n lines."""
    run = make(n)
    started = time.thread_time()
    run()
    return (time.thread_time() - started) / (n // 3 * 3 if make is approval_lines else n) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lines", type=int, default=3000, help="lines per trial (default 3000)")
    parser.add_argument("--trials", type=int, default=9, help="trials per pipeline, alternating (default 9)")
    parser.add_argument("--before", default=BEFORE, help=f"revision to compare with (default {BEFORE})")
    parser.add_argument("--secrets", type=int, default=6, help=f"secrets registered (up to {len(SECRET_VALUES)})")
    parser.add_argument("--console", action="store_true", help="console lines instead of JSON")
    args = parser.parse_args()

    before = load_revision(args.before)
    pipelines = {f"before ({args.before})": before, "now": (core.secrets, core.logging)}
    fmt = "console" if args.console else "json"
    identical = same_output(pipelines, fmt, args.secrets)
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "bot.log", "a", encoding="utf-8") as stream:
        for trial in range(args.trials + 1):  # the first round warms up and is not counted
            for name, (secrets_module, logging_module) in pipelines.items():
                with pipeline(logging_module, secrets_module, stream, fmt, args.secrets):
                    for kind, make in (("approval lines", approval_lines), ("foreign record", foreign_lines)):
                        figure = measure(make, args.lines)
                        if trial:
                            results.setdefault((kind, name), []).append(figure)
        size = stream.tell()
    print(
        f"CPU per log line ({fmt}, {args.secrets} secrets registered, {args.lines} lines x {args.trials} trials "
        f"per pipeline, alternating; {size / 1e6:.1f} MB written)"
    )
    print(f"same text from both for every kind of line (values, exceptions, library records): {identical}")
    print(f"{'line':<16} {'pipeline':<18} {'median µs':>10} {'min':>8} {'max':>8}")
    for (kind, name), figures in results.items():
        print(f"{kind:<16} {name:<18} {statistics.median(figures):>10.1f} {min(figures):>8.1f} {max(figures):>8.1f}")


if __name__ == "__main__":
    main()
