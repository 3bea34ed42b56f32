"""Errors as `application/problem+json` (RFC 9457), and the one table from jitbot's errors to statuses.

Every refusal the API gives is a `Problem`; `problem_for(exc)` turns any exception into one, through
`STATUSES` (the only place an error class meets an HTTP status). An unexpected exception is a 500
with an error id the operators can find in the log; nothing of it reaches the caller.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web

from core.decisions import AlreadyDecided
from core.errors import (
    HookError,
    InvalidInput,
    InvalidTransition,
    JitError,
    NotAllowed,
    RequestNotFound,
    StrategyError,
    StrategyUnavailable,
)
from core.secrets import SecretRegistry

log = structlog.get_logger("jitbot.api")

PROBLEM_JSON = "application/problem+json"


@dataclass
class Problem(Exception):
    """An HTTP error answer: status, a human `detail`, and extension members (`errors`, …)."""

    status: int
    detail: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        """The problem document."""
        return {
            "type": "about:blank",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> web.Response:
        """The answer to send."""
        return web.Response(
            status=self.status,
            text=json.dumps(self.body(), ensure_ascii=False),
            content_type=PROBLEM_JSON,
            headers=dict(self.headers),
        )


def field_problem(errors: Mapping[str, str]) -> Problem:
    """422 naming every field that is wrong and why."""
    listed = [{"field": name, "message": message} for name, message in errors.items()]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in listed)
    return Problem(422, f"Some fields are not valid: {summary}"[:2000], {"errors": listed})


# The one table from jitbot's error tree to HTTP statuses, most specific class first.
STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (AlreadyDecided, 409),  # a NotAllowed: the request is no longer pending
    (InvalidInput, 422),  # the form's rules, the requester's identity, an extension's length (SubmissionRejected)
    (NotAllowed, 403),
    (InvalidTransition, 409),
    (RequestNotFound, 404),
    (StrategyUnavailable, 503),
    (StrategyError, 502),
    (HookError, 502),
    (TimeoutError, 503),
    (JitError, 400),
)


def status_of(error: BaseException) -> int | None:
    """The status of a known error, or None for an unexpected one."""
    for kind, status in STATUSES:
        if isinstance(error, kind):
            return status
    return None


def problem_for(error: BaseException, secrets: SecretRegistry) -> Problem:
    """The Problem to answer for `error` (its message scrubbed of secrets); logs the unexpected ones."""
    if isinstance(error, Problem):
        return error
    status = status_of(error)
    if status is None:
        error_id = uuid.uuid4().hex[:8]
        log.error("api.crashed", error_id=error_id, exc_info=error)
        return Problem(500, f"Something went wrong (error id {error_id}); the operators can find it in the logs.")
    if isinstance(error, InvalidInput):
        return field_problem({k: secrets.scrub(v) for k, v in error.errors.items()})
    extra: dict[str, Any] = {}
    if isinstance(error, AlreadyDecided):
        extra = {"request_status": error.status, "decided_by": error.by}
    elif isinstance(error, InvalidTransition):
        extra = {"request_status": error.current}
    headers = {"Retry-After": "30"} if status == 503 else {}
    message = error.user_message if isinstance(error, JitError) else "The target system did not answer in time."
    return Problem(status, secrets.scrub(message), extra, headers)
