"""`bot.py request --wait`: one live status line on a terminal, one line per change otherwise, and the
exit code of the outcome."""

from __future__ import annotations

import io

import pytest

from cli.api_client import ApiClient, ApiFailure
from cli.requests import follow


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Answers(ApiClient):
    """A client whose GETs answer the next of `states` (no network)."""

    def __init__(self, states: list[dict]) -> None:
        super().__init__("http://jitbot.test", "jit_x")
        self.states = states

    def call(self, method: str, path: str, body=None):
        return self.states.pop(0)


def state(status: str, **more) -> dict:
    return {"id": "r1", "status": status, **more}


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (state("granted", decided_by="U_BOB", expires_at="2026-12-01T10:00:00Z"), 0),
        (state("denied", decided_by="U_BOB", decision_reason="not now"), 1),
        (state("expired"), 1),
        (state("cancelled", decided_by="U_ALICE"), 1),
        (state("failed", decided_by="U_BOB", failure_reason="Okta down"), 1),
    ],
)
def test_the_exit_code_says_how_it_ended(final, code):
    out = io.StringIO()
    client = Answers([state("pending"), state("approved", decided_by="U_BOB"), final])
    assert follow(client, state("pending"), status_line=out, poll=0, sleep=lambda _: None) == code
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("request r1: waiting for approval") and lines[-1].startswith(
        f"request r1: {final['status']}"
    )
    assert len(lines) == 3  # one line per change, the repeated pending state is not printed again


def test_on_a_terminal_the_status_line_is_rewritten_in_place():
    tty = Terminal()
    client = Answers([state("pending"), state("granted", decided_by="U_BOB", expires_at="2026-12-01T10:00:00Z")])
    assert follow(client, state("pending"), status_line=tty, poll=0, sleep=lambda _: None) == 0
    text = tty.getvalue()
    assert text.count("\r\033[K") == 3 and text.endswith("granted by U_BOB until 2026-12-01T10:00:00Z\n")


def test_missing_settings_are_named():
    with pytest.raises(ApiFailure) as missing:
        ApiClient.from_env({"JITBOT_API_URL": "https://jitbot.example"})
    assert missing.value.code == 2 and "JITBOT_API_TOKEN is not set" in missing.value.message
    with pytest.raises(ApiFailure, match="must start with http"):
        ApiClient.from_env({"JITBOT_API_URL": "jitbot.example", "JITBOT_API_TOKEN": "t"})
