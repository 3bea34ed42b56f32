"""How log lines reach the stream: levels, one writer for jitbot's lines and other libraries' records,
each line flushed before the call returns (so `kill -9` loses none), and a line that cannot be
rendered never raising into the code that logged it nor printing a secret anywhere.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog

from core.secrets import SecretRegistry
from tests.core.test_logging import logging_to_buffer

REPO = Path(__file__).resolve().parents[2]
TOKEN = "xoxb-pipeline-test-0123456789"


def registry() -> SecretRegistry:
    secrets = SecretRegistry()
    secrets.register(TOKEN)
    return secrets


@contextmanager
def configured(
    fmt: str | None = "json", level: str = "INFO", stream: io.StringIO | None = None
) -> Iterator[io.StringIO]:
    """`configure_logging` as `bot.py run` calls it, into a buffer; everything put back afterwards."""
    with logging_to_buffer(fmt, registry(), level=level, stream=stream) as buffer:
        yield buffer


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Watched:
    """A value that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.rendered = 0

    def __repr__(self) -> str:
        self.rendered += 1
        return "Watched()"


def test_a_line_below_the_configured_level_is_neither_rendered_nor_written():
    watched = Watched()
    with configured(level="WARNING") as stream:
        log = structlog.get_logger("jitbot.engine")
        log.info("request.approved", value=watched)
        log.debug("timer.fired", value=watched)
        log.warning("grant.retrying", value=watched)
    assert [(line["event"], line["level"]) for line in lines(stream)] == [("grant.retrying", "warning")]
    assert watched.rendered == 1


def test_debug_lines_appear_when_the_level_is_debug():
    with configured(level="DEBUG") as stream:
        structlog.get_logger("jitbot.scheduler").debug("timer.fired", timer="revoke:r1")
    (line,) = lines(stream)
    assert (line["event"], line["level"], line["timer"]) == ("timer.fired", "debug", "revoke:r1")


def test_one_jitbot_logger_can_be_quieted_through_stdlib_logging_as_before():
    with configured() as stream:
        logging.getLogger("jitbot.engine").setLevel(logging.ERROR)
        structlog.get_logger("jitbot.engine").info("request.approved")
        structlog.get_logger("jitbot.engine").error("grant.failed")
        structlog.get_logger("jitbot.api").info("api.called")
    assert [line["event"] for line in lines(stream)] == ["grant.failed", "api.called"]


def test_jitbot_lines_and_library_records_come_out_in_order_with_the_same_fields():
    with configured() as stream:
        structlog.contextvars.bind_contextvars(slack_user="U_ALICE")
        try:
            structlog.get_logger("jitbot.engine").info("request.approved", request_id="r1")
            logging.getLogger("slack_bolt.AsyncApp").warning("session %s lost with %s", "s_1", TOKEN)
            logging.getLogger("slack_bolt.AsyncApp").info("below the libraries' level")
            structlog.get_logger("jitbot.engine").info("access.granted", request_id="r1")
        finally:
            structlog.contextvars.clear_contextvars()
    first, foreign, last = lines(stream)
    assert [first["event"], foreign["event"], last["event"]] == [
        "request.approved",
        "session s_1 lost with ***",
        "access.granted",
    ]
    assert (foreign["level"], foreign["logger"], foreign["slack_user"]) == ("warning", "slack_bolt.AsyncApp", "U_ALICE")
    assert (first["level"], first["logger"], first["slack_user"]) == ("info", "jitbot.engine", "U_ALICE")
    for line in (first, foreign, last):
        assert set(line) >= {"event", "level", "logger", "timestamp"} and line["timestamp"].endswith("Z")


def test_the_format_is_console_on_a_terminal_and_json_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with configured(None, stream=Terminal()) as terminal:
        structlog.get_logger("jitbot.engine").info("request.approved", token=TOKEN)
    with configured(None) as pipe:
        structlog.get_logger("jitbot.engine").info("request.approved", token=TOKEN)
    console = terminal.getvalue()
    assert "request.approved" in console and "\x1b[" in console and "***" in console  # coloured, for a person
    assert not console.startswith("{") and TOKEN not in console
    assert lines(pipe)[0]["token"] == "***"


class Recording(io.StringIO):
    """A stream that notes each write and flush, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append("write")
        return super().write(text)

    def flush(self) -> None:
        self.calls.append("flush")
        super().flush()


def test_every_line_is_written_whole_and_flushed_before_the_call_returns():
    stream = Recording()
    with configured(stream=stream):
        for log in (
            lambda: structlog.get_logger("jitbot.engine").info("request.approved"),
            lambda: logging.getLogger("slack_sdk").error("socket closed"),
        ):
            written = len(stream.getvalue())
            log()
            assert stream.calls[-1] == "flush"
            assert stream.getvalue()[written:].count("\n") == 1 and stream.getvalue().endswith("\n")


def test_lines_from_several_threads_never_mix():
    with configured() as stream:

        def write(n: int) -> None:
            log = structlog.get_logger("jitbot.engine")
            library = logging.getLogger("slack_sdk")
            for i in range(200):
                log.info("request.approved", thread=n, i=i, padding="x" * 500)
                library.warning("thread %d record %d", n, i)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(lines(stream)) == 4 * 200 * 2  # each line parses: none was cut into by another


KILLED_CHILD = """
import logging, os, signal, sys
sys.path.insert(0, {repo!r})
import structlog
from core.logging import configure_logging
from core.secrets import SecretRegistry

secrets = SecretRegistry()
secrets.register({token!r})
stream = open(sys.argv[1], "a", encoding="utf-8") if len(sys.argv) > 1 else None  # a block-buffered file
configure_logging("json", stream=stream, secrets=secrets)
structlog.get_logger("jitbot.engine").info("access.granted", request_id="r1", token={token!r})
logging.getLogger("slack_bolt.AsyncApp").warning("session %s lost", "s_1")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("where", ["stderr", "a log file"])
def test_lines_logged_just_before_kill_9_are_already_written(where, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(KILLED_CHILD.format(repo=str(REPO), token=TOKEN), encoding="utf-8")
    log_file = tmp_path / "bot.log"
    args = [sys.executable, str(script)] + ([str(log_file)] if where == "a log file" else [])
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as stderr:
        child = subprocess.run(args, stderr=stderr, stdout=subprocess.DEVNULL, timeout=60, env=dict(os.environ))
        stderr.seek(0)
        text = stderr.read() if where == "stderr" else log_file.read_text(encoding="utf-8")
    assert child.returncode == -9
    granted, lost = (json.loads(line) for line in text.splitlines())
    assert (granted["event"], granted["token"]) == ("access.granted", "***")
    assert lost["event"] == "session s_1 lost" and TOKEN not in text


class BrokenMapping(dict):
    """A mapping that fails when walked, as a lazy or proxied one can."""

    def items(self):
        raise RuntimeError(f"backend gone while reading {TOKEN}")


def test_a_line_that_cannot_be_rendered_does_not_raise_and_shows_no_secret(capsys):
    with configured() as stream:
        log = structlog.get_logger("jitbot.engine")
        log.error(f"grant.failed for {TOKEN}", response=BrokenMapping(token=TOKEN), token=TOKEN)
        log.info("request.approved")
    broken, after = lines(stream)
    assert broken["event"] == "grant.failed for ***" and broken["level"] == "error"
    assert "could not be rendered" in broken["log_error"] and "token" not in broken
    assert after["event"] == "request.approved"
    assert TOKEN not in stream.getvalue() + capsys.readouterr().err


def test_a_library_record_that_cannot_be_formatted_is_reported_without_its_arguments(capsys):
    with configured() as stream:
        logging.getLogger("slack_sdk").warning("retry %d of %d", TOKEN)  # wrong arguments: formatting fails
        structlog.get_logger("jitbot.engine").info("request.approved")
    err = capsys.readouterr().err
    assert "Logging error" in err and "slack_sdk" in err
    assert TOKEN not in err and TOKEN not in stream.getvalue()
    assert [line["event"] for line in lines(stream)] == ["request.approved"]
