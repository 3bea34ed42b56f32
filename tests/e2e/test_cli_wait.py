"""`bot.py request --wait` through a busy or restarting API: it keeps following the request (the
request is still being decided) and its exit code says how the request ended, not that a poll failed."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from cli.api_client import EXIT_REFUSED, ApiClient, ApiFailure
from cli.requests import OUTAGE_SECONDS, follow


class ScriptedApi(ApiClient):
    """An ApiClient whose calls answer the scripted items in turn (the last one from then on)."""

    def __init__(self, answers: list[Any]) -> None:
        super().__init__("http://jitbot.test", "jit_x")
        self.answers = answers

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, ApiFailure):
            raise answer
        return answer


PENDING = {"id": "r1", "status": "pending"}
GRANTED = {"id": "r1", "status": "granted", "decided_by": "U_BOB", "expires_at": "2026-01-01T10:00:00+00:00"}


def test_a_rate_limit_and_a_restart_while_waiting_do_not_end_the_wait():
    busy = ApiFailure("Too many calls (429)", passing=True, retry_after=7)
    down = ApiFailure("could not reach the jitbot API", passing=True)
    api = ScriptedApi([busy, down, PENDING, GRANTED])
    pauses: list[float] = []
    status = io.StringIO()
    assert follow(api, PENDING, status_line=status, poll=2.0, sleep=pauses.append) == 0
    assert pauses == [2.0, 7.0, 2.0, 2.0] and "Asking again in 7 s" in status.getvalue()


def test_an_api_that_stays_away_ends_the_wait_with_1_naming_the_request():
    api = ScriptedApi([ApiFailure("could not reach the jitbot API", passing=True)])
    pauses: list[float] = []
    with pytest.raises(ApiFailure) as ended:
        follow(api, PENDING, status_line=io.StringIO(), poll=2.0, sleep=pauses.append)
    assert ended.value.code == EXIT_REFUSED and "r1 may still be decided" in ended.value.message
    assert sum(pauses) >= OUTAGE_SECONDS


def test_a_refusal_while_waiting_is_not_retried():
    api = ScriptedApi([ApiFailure("This token was revoked (401)")])
    pauses: list[float] = []
    with pytest.raises(ApiFailure):
        follow(api, PENDING, status_line=io.StringIO(), poll=2.0, sleep=pauses.append)
    assert pauses == [2.0]


def test_an_answer_that_is_not_json_is_a_failure_not_a_traceback(monkeypatch):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>proxy</html>"))

    def through_mock(method: str, url: str, **options: Any) -> httpx.Response:
        options.pop("timeout", None)
        with httpx.Client(transport=transport, trust_env=options.pop("trust_env", True)) as client:
            return client.request(method, url, **options)

    monkeypatch.setattr(httpx, "request", through_mock)
    with pytest.raises(ApiFailure) as failed:
        ApiClient("http://jitbot.test", "jit_x").call("GET", "/v1/flows")
    assert "not JSON" in failed.value.message
