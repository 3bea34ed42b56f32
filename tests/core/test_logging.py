"""The real logging pipeline (`configure_logging`, JSON and console) never prints a registered secret.

Renderers escape what they print (`\\"`, `\\u00e9`, `\\n`), and Python's repr and tracebacks escape too,
so each test logs a secret with such characters in every place a value can sit and looks for a
piece of it in the captured output, raw or escaped.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from core.logging import configure_logging
from core.secrets import Secret, SecretRegistry

# Each secret ends in a plain ASCII tail that every escaping leaves as it is: finding the tail in
# the output anywhere means the secret leaked, whatever form it was printed in.
SECRETS = [
    'pa"ss\\wörd\nline2',
    'q"uote-Q1tail',
    "back\\slash-B2tail",
    "n\u00e9on-U3tail",
    "new\nline-N4tail",
    "it's-both\"-S5tail",
    "key\U0001f511-E6tail",
    "ctl\x07-C7tail",
]
FORMATS = ["json", "console"]


def tail(secret: str) -> str:
    return secret[-5:]


@contextmanager
def logging_to_buffer(
    fmt: str | None,
    secrets: SecretRegistry | None = None,
    *,
    level: str = "INFO",
    stream: io.StringIO | None = None,
) -> Iterator[io.StringIO]:
    """Configure logging exactly as `bot.py run` does, into a buffer; put everything back afterwards."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_levels = {name: logging.getLogger(name).level for name in ("jitbot.engine", "slack_bolt", "slack_sdk")}
    stream = io.StringIO() if stream is None else stream
    configure_logging(fmt, level, stream=stream, secrets=SecretRegistry() if secrets is None else secrets)
    structlog.configure(cache_logger_on_first_use=False)  # no logger outlives the test with this buffer
    try:
        yield stream
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
        root.handlers[:], level_was = saved_root
        root.setLevel(level_was)
        for name, value in saved_levels.items():
            logging.getLogger(name).setLevel(value)


@dataclass
class Client:
    """An object whose repr shows its token, as many third-party clients' do."""

    token: str


def write_leaky_module(directory: Path, secret: str) -> Path:
    """A hooks-like module with the secret hard-coded in the line that raises (so the traceback quotes it)."""
    path = directory / "leaky_hook.py"
    path.write_text(
        "def single():\n"
        f"    raise RuntimeError('login failed') from ValueError({secret!r})\n"
        "def double():\n"
        f"    raise RuntimeError({json.dumps(secret, ensure_ascii=False)})\n",
        encoding="utf-8",
    )
    return path


def load(path: Path):
    namespace: dict = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return namespace


def log_secret_everywhere(secret: str, leaky) -> None:
    """Log `secret` as event text, kwargs (nested too), exception messages, tracebacks and stdlib records."""
    log = structlog.get_logger("jitbot.test")
    log.info(f"login with {secret} failed")
    log.info(
        "call.failed",
        token=secret,
        request={"headers": {"Authorization": f"Bearer {secret}"}},
        attempts=[secret, (secret, 1)],
        seen={secret},
        client=Client(secret),
        wrapped=Secret(secret),
        raw=secret.encode(),
    )
    log.info("positional %s", secret)
    for error in (ValueError(f"bad token {secret}"), KeyError(secret)):
        try:
            raise error
        except Exception:
            log.exception("handler.crashed")
        log.warning("grant.failed", error=error)
    for raiser in (leaky["single"], leaky["double"]):
        try:
            raiser()
        except Exception:
            log.exception("hook.crashed")
    stdlib = logging.getLogger("slack_sdk.socket_mode")
    stdlib.warning("reconnecting with %s", secret)
    try:
        raise ConnectionError(f"handshake rejected {secret!r}")
    except ConnectionError:
        stdlib.exception("connection lost")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("secret", SECRETS, ids=tail)
def test_a_registered_secret_never_reaches_a_log_line_raw_or_escaped(fmt, secret, tmp_path):
    secrets = SecretRegistry()
    secrets.register(secret)
    leaky = load(write_leaky_module(tmp_path, secret))
    with logging_to_buffer(fmt, secrets) as stream:
        log_secret_everywhere(secret, leaky)
    output = stream.getvalue()
    assert "Traceback" in output and "***" in output, output  # the lines were written, with redactions
    assert tail(secret) not in output, output


@pytest.mark.parametrize("secret", SECRETS, ids=tail)
def test_json_log_lines_carry_the_redaction_where_the_secret_was(secret, tmp_path):
    secrets = SecretRegistry()
    secrets.register(secret)
    with logging_to_buffer("json", secrets) as stream:
        log = structlog.get_logger("jitbot.test")
        log.info(f"login with {secret} failed", token=secret, request={"headers": [f"Bearer {secret}"]})
        try:
            raise KeyError(secret)
        except KeyError:
            log.exception("handler.crashed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "login with *** failed"
    assert first["token"] == "***" and first["request"] == {"headers": ["Bearer ***"]}
    assert second["exception"].endswith("KeyError: '***'"), second["exception"]


def test_console_lines_show_the_redaction_and_keep_other_values_readable():
    secret = 'pa"ss\\wörd\nline2'
    secrets = SecretRegistry()
    secrets.register(secret)
    with logging_to_buffer("console", secrets) as stream:
        structlog.get_logger("jitbot.test").info(
            "call.failed", token=secret, user="U_ALICE", count=3, client=Client(secret)
        )
    line = stream.getvalue()
    assert "token='***'" in line or "token=***" in line, line
    assert "user=U_ALICE" in line or "user='U_ALICE'" in line, line
    assert "count=3" in line and "Client(token='***')" in line, line


def test_values_without_secrets_render_as_before():
    with logging_to_buffer("json") as stream:
        structlog.get_logger("jitbot.test").info(
            "timers.armed",
            count=3,
            ratio=0.5,
            ok=True,
            nothing=None,
            flows=["db_access"],
            pair=("a", 1),
            nested={"k": {"v": [1, 2]}},
            client=Client("not-a-secret"),
        )
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["event"] == "timers.armed"
    assert (line["count"], line["ratio"], line["ok"], line["nothing"]) == (3, 0.5, True, None)
    assert line["flows"] == ["db_access"] and line["pair"] == ["a", 1] and line["nested"] == {"k": {"v": [1, 2]}}
    assert line["client"] == "Client(token='not-a-secret')"


def test_slack_sdks_web_client_formats_no_debug_message_at_info():
    # slack_sdk checks its logger's own level (`logger.level <= logging.DEBUG`), not the effective one:
    # at NOTSET it formats every request's headers and every answer's body for nothing, on every call.
    with logging_to_buffer("json"):
        for name in ("slack_sdk.web.async_base_client", "slack_sdk.web.base_client"):
            assert logging.getLogger(name).level > logging.DEBUG
