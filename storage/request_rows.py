"""How an AccessRequest is a row of the `requests` table: its columns, and encoding and decoding them.

`FIELDS` is the column order (the dataclass's field order, so a selected row maps positionally onto
`AccessRequest`); `encoders` turns each field into what its column stores (times as fixed-width UTC
text, mappings and lists as compact JSON, free text scrubbed of registered secrets);
`encode_changes` checks that a change names fields that exist and may change; `row_to_request`
reads a row back. It is apart from `storage.requests` because it is a different concern from the
repository's compare-and-sets and lifecycle queries, and every module that reads or writes request
rows (the repository, the approvals' CAS, the listings for people, the after-approval queries)
shares it: one codec, no SQL, one place where a column's stored form is decided.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from core.models import AccessRequest, RequestStatus
from core.secrets import SecretRegistry
from storage.db import from_db_time, optional_db_time

# Column order is the dataclass field order, so a selected row maps positionally onto AccessRequest.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AccessRequest))
_TIME_FIELDS = frozenset(
    {"created_at", "decided_at", "timeout_at", "granted_at", "expires_at", "ended_at", "next_attempt_at", "warn_at"}
)
_DICT_FIELDS = frozenset({"fields", "grant_state", "grant_spec", "grant_to"})
# Free text that may quote an upstream error or a hook's reason: scrubbed of registered secrets.
_SCRUBBED_FIELDS = frozenset({"decision_reason", "failure_reason", "last_error", "end_reason"})
# A request's identity never changes, and status only moves through transition().
_IMMUTABLE_FIELDS = frozenset({"id", "status", "flow", "target", "requester", "created_at", "extends"})

_TIME_INDEXES = tuple(FIELDS.index(name) for name in sorted(_TIME_FIELDS))
_DICT_INDEXES = tuple(FIELDS.index(name) for name in sorted(_DICT_FIELDS))
_STATUS_INDEX = FIELDS.index("status")
_APPROVERS_INDEX = FIELDS.index("approvers")
_APPROVALS_INDEX = FIELDS.index("approvals")


# A shared encoder: json.dumps with non-default options builds a new JSONEncoder on every call.
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _encode_dict(value: Any) -> str:
    return _to_json(dict(value or {}))


def _encode_approvers(value: Any) -> str | None:
    return None if value is None else _to_json(list(value))


def _encode_approvals(value: Any) -> str:
    return _to_json(list(value or ()))


def _encode_status(value: Any) -> str:
    return RequestStatus(value).value


def _unchanged(value: Any) -> Any:
    return value


def _encoder_for(name: str) -> Callable[[Any], Any]:
    if name in _TIME_FIELDS:
        return optional_db_time
    if name in _DICT_FIELDS:
        return _encode_dict
    if name == "approvers":
        return _encode_approvers
    if name == "approvals":
        return _encode_approvals
    if name == "status":
        return _encode_status
    return _unchanged


Encoders = dict[str, Callable[[Any], Any]]


def encoders(secrets: SecretRegistry) -> Encoders:
    """Each AccessRequest field's column encoder, in FIELDS order; free text is scrubbed of `secrets`."""

    def encode_text(value: Any) -> Any:
        return secrets.scrub(value) if isinstance(value, str) else value

    return {name: encode_text if name in _SCRUBBED_FIELDS else _encoder_for(name) for name in FIELDS}


def request_to_values(request: AccessRequest, encode: Encoders) -> list[Any]:
    """All column values of one request, in FIELDS order, ready for INSERT."""
    return [encoder(getattr(request, name)) for name, encoder in encode.items()]


def row_to_request(row: tuple[Any, ...]) -> AccessRequest:
    """Build an AccessRequest from a row selected with FIELDS (times aware UTC, approvers a tuple)."""
    values = list(row)
    for i in _TIME_INDEXES:
        if values[i] is not None:
            values[i] = from_db_time(values[i])
    for i in _DICT_INDEXES:
        values[i] = {} if values[i] == "{}" else json.loads(values[i])
    if values[_APPROVERS_INDEX] is not None:
        values[_APPROVERS_INDEX] = tuple(json.loads(values[_APPROVERS_INDEX]))
    values[_APPROVALS_INDEX] = () if values[_APPROVALS_INDEX] == "[]" else tuple(json.loads(values[_APPROVALS_INDEX]))
    values[_STATUS_INDEX] = RequestStatus(values[_STATUS_INDEX])
    return AccessRequest(*values)


def encode_changes(changes: Mapping[str, Any], encode: Encoders) -> dict[str, Any]:
    """The columns `changes` set, encoded; ValueError for a field that is not one or may not change here."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown request fields: {', '.join(sorted(unknown))}")
    immutable = set(changes) & _IMMUTABLE_FIELDS
    if immutable:
        raise ValueError(f"fields that cannot be changed here: {', '.join(sorted(immutable))}")
    return {name: encode[name](value) for name, value in changes.items()}
