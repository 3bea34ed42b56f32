"""One table from jitbot's errors to HTTP statuses, and problem documents that leak nothing."""

from __future__ import annotations

import inspect

import core.errors
from api.problems import STATUSES, problem_for, status_of
from core.decisions import AlreadyDecided
from core.engine import SubmissionRejected
from core.errors import InvalidTransition, JitError, NotAllowed, RequestNotFound, StrategyUnavailable
from core.secrets import SecretRegistry


def test_every_error_of_the_tree_has_a_status():
    for _name, kind in inspect.getmembers(core.errors, inspect.isclass):
        if issubclass(kind, JitError):
            assert any(issubclass(kind, known) for known, _ in STATUSES), kind


def test_the_statuses_say_what_happened():
    assert status_of(AlreadyDecided("granted", "U_BOB")) == 409
    assert status_of(InvalidTransition("r1", "denied", "approved")) == 409
    assert status_of(NotAllowed("You are not an approver for this request.")) == 403
    assert status_of(RequestNotFound("no request r1")) == 404
    assert status_of(SubmissionRejected({"target": "Choose one of the listed targets."})) == 422
    assert status_of(StrategyUnavailable("okta down")) == 503
    assert status_of(RuntimeError("boom")) is None


def test_a_refusal_keeps_its_reason_and_a_field_error_names_the_field():
    secrets = SecretRegistry()
    body = problem_for(NotAllowed("You can't approve or deny your own request."), secrets).body()
    assert body == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "You can't approve or deny your own request.",
    }
    body = problem_for(SubmissionRejected({"target": "No such user in Okta."}), secrets).body()
    assert body["status"] == 422 and body["errors"] == [{"field": "target", "message": "No such user in Okta."}]
    decided = problem_for(AlreadyDecided("granted", "U_BOB"), secrets).body()
    assert decided["request_status"] == "granted" and decided["decided_by"] == "U_BOB"


def test_an_unexpected_error_is_a_500_with_an_id_and_nothing_of_its_text():
    secrets = SecretRegistry()
    problem = problem_for(RuntimeError("db password hunter2 leaked"), secrets)
    assert problem.status == 500 and "hunter2" not in problem.detail and "error id" in problem.detail


def test_a_registered_secret_never_reaches_a_problem():
    secrets = SecretRegistry()
    secrets.register("s3cr3t-value-123")
    problem = problem_for(StrategyUnavailable("upstream said s3cr3t-value-123"), secrets)
    assert "s3cr3t-value-123" not in str(problem.body())
