"""The documented audit event: type mapping, via, ids, and the canonical JSON the chain hashes."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from core.audit_events import (
    EVENT_TYPES,
    OTHER,
    TYPES,
    canonical,
    chain_hash,
    event_type,
    json_safe,
    new_event_id,
    via_for,
)


def test_every_mapped_type_is_a_documented_one():
    schema = json.loads(open("docs/audit-event.schema.json").read())
    assert set(EVENT_TYPES.values()) | {"other"} == set(schema["properties"]["type"]["enum"]) == set(TYPES)


def test_the_named_types_of_the_issue_exist():
    for action in ("request.created", "request.approved", "access.granted", "access.revoked", "click.refused"):
        assert event_type(action) == action
    assert event_type("request.cancel") == "request.cancelled" and event_type("extend") == "access.extended"
    assert event_type("never.heard.of") == "other"


def test_via_is_read_from_the_actor():
    assert via_for("U0ALICE") == "slack" and via_for("W0ENTERPRISE") == "slack"
    assert via_for("hook:hooks.py:on_request") == "hook" and via_for("api:ci") == "api"
    assert via_for("cli:root") == "cli" and via_for("system") == "system" and via_for("something") == "system"
    assert via_for("U0ALICE", "api") == "api" and via_for("U0ALICE", "pigeon") == "slack"


def test_event_ids_are_uuid7_and_sort_by_time():
    ids = [new_event_id() for _ in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100 and all(i[14] == "7" for i in ids)


def test_the_hash_covers_the_previous_hash_and_every_field_but_itself():
    doc = {"seq": 1, "reason": "x", "hash": "ignored"}
    assert chain_hash("0" * 64, doc) == chain_hash("0" * 64, {**doc, "hash": "other"})
    assert chain_hash("0" * 64, doc) != chain_hash("1" * 64, doc)
    assert chain_hash("0" * 64, doc) != chain_hash("0" * 64, {**doc, "reason": "y"})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_json_is_rfc_8785_whatever_the_content(document):
    assert canonical(document) == rfc8785.dumps({k: v for k, v in document.items() if k != "hash"})


@given(st.dictionaries(st.text(), json_values | st.integers() | st.just(float("nan")), max_size=6))
def test_canonical_json_never_fails_whatever_a_legacy_row_holds(document):
    assert isinstance(canonical(document), bytes)


def test_what_rfc_8785_cannot_write_is_stored_as_text():
    assert json_safe({"n": 2**60, "ok": 2**53 - 1, "x": [float("inf")], "f": 1.5}) == {
        "n": str(2**60),
        "ok": 2**53 - 1,
        "x": ["inf"],
        "f": 1.5,
    }


# ── every action the code writes has a documented type ───────────────────────────────────────────

_REPO = Path(__file__).resolve().parents[2]
_ACTION = re.compile(r"[a-z_]+\.[a-z_]+")


def _written_actions() -> dict[str, str]:
    """Every action string the bot's code passes to an audit event (`life.event(request, actor, ACTION, …)`,
    `AuditEvent(action=ACTION)`, a reconciler's `_event(…, ACTION, …)`, or a name chosen by a conditional)."""
    found: dict[str, str] = {}
    for path in sorted(_REPO.glob("**/*.py")):
        parts = path.relative_to(_REPO).parts
        if parts[0] in ("tests", "bench", ".venv", "sandbox", "examples") or "site-packages" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "action" for t in node.targets):
                values = [node.value]  # `action = "a" if … else "b"`, then passed on by name
            elif not isinstance(node, ast.Call):
                continue
            elif (name := getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "AuditEvent":
                values = [k.value for k in node.keywords if k.arg == "action"]
            elif name in ("event", "_event") and isinstance(node.func, ast.Attribute):
                values = [a for a in node.args if isinstance(a, (ast.Constant, ast.IfExp))]
            else:
                continue
            for value in values:
                for sub in ast.walk(value):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and _ACTION.fullmatch(sub.value):
                        found.setdefault(sub.value, f"{path.relative_to(_REPO)}:{node.lineno}")
    return found


def test_every_audit_action_the_code_writes_has_a_documented_type() -> None:
    written = _written_actions()
    assert {"access.handed_over", "access.revoke_requested", "request.escalated", "token.created"} <= set(written)
    unmapped = {action: where for action, where in written.items() if event_type(action) == OTHER}
    assert unmapped == {}


def test_the_json_schema_and_the_docs_list_exactly_the_documented_types() -> None:
    schema = json.loads((_REPO / "docs" / "audit-event.schema.json").read_text())
    assert schema["properties"]["type"]["enum"] == list(TYPES)
    docs = (_REPO / "docs" / "audit.md").read_text()
    assert [t for t in TYPES if f"`{t}`" not in docs] == []
