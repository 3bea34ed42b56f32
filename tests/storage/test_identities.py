from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from storage import IdentityImportError, IdentityOverride

from .conftest import T0


async def test_exact_system_wins_over_wildcard(identities):
    await identities.set("U1", "*", "alice@corp.example", actor="U0ADMIN")
    await identities.set("U1", "Okta", "alice.okta", actor="U0ADMIN")
    assert await identities.get("U1", "Okta") == "alice.okta"
    assert await identities.get("U1", "AWS") == "alice@corp.example"
    assert await identities.get("U2", "Okta") is None


async def test_set_replaces_and_audits_with_previous_value(identities, audit_log, clock):
    await identities.set("U1", "Okta", "first", actor="U0ADMIN")
    clock.advance(timedelta(minutes=1))
    await identities.set("U1", "Okta", "second", actor="U0OTHER")
    assert await identities.list() == [IdentityOverride("U1", "Okta", "second", T0 + timedelta(minutes=1), "U0OTHER")]
    trail = await audit_log.list()
    assert [(e.action, e.actor, e.request_id, e.detail["identity"], e.detail["previous"]) for e in trail] == [
        ("identity.set", "U0ADMIN", None, "first", None),
        ("identity.set", "U0OTHER", None, "second", "first"),
    ]
    assert trail[1].at == T0 + timedelta(minutes=1)


async def test_set_refuses_blank_values(identities):
    with pytest.raises(ValueError, match="identity"):
        await identities.set("U1", "Okta", "  ", actor="U0ADMIN")


async def test_set_refuses_a_value_too_long_to_be_a_key_on_any_engine_and_stores_nothing(identities, audit_log):
    # Random, so PostgreSQL cannot compress it under its index entry limit (about 2,700 bytes).
    long_id = "U" + secrets.token_hex(1600)
    with pytest.raises(ValueError, match="slack_id is longer than 256 characters"):
        await identities.set(long_id, "Okta", "alice", actor="U0ADMIN")
    assert await identities.list() == [] and await audit_log.list() == []


async def test_the_list_is_in_the_same_order_on_every_engine_whatever_the_servers_text_order(identities):
    # Byte order, as SQLite compares: a PostgreSQL server's locale (en_US: case and punctuation folded)
    # must not reorder what `bot.py identities list` prints.
    ids = ["U_b", "Ua", "UB", "U0", "u1", "U-2"]
    for slack_id in ids:
        await identities.set(slack_id, "*", "x@example.com", actor="U0ADMIN")
    assert [o.slack_id for o in await identities.list()] == sorted(ids)


async def test_remove_reports_and_audits_only_real_removals(identities, audit_log):
    await identities.set("U1", "Okta", "alice", actor="U0ADMIN")
    assert await identities.remove("U1", "Okta", actor="U0ADMIN") is True
    assert await identities.remove("U1", "Okta", actor="U0ADMIN") is False
    assert await identities.get("U1", "Okta") is None
    actions = [(e.action, e.detail.get("previous")) for e in await audit_log.list()]
    assert actions == [("identity.set", None), ("identity.remove", "alice")]


async def test_import_csv_text_in_any_column_order(identities, audit_log):
    text = '\ufeffidentity,slack_id,system\nalice.okta,U1,Okta\n\n"bob, jr",U2,*\n'
    assert await identities.import_csv(text, actor="U0ADMIN") == 2
    assert await identities.get("U1", "Okta") == "alice.okta"
    assert await identities.get("U2", "AWS") == "bob, jr"
    assert {e.detail["source"] for e in await audit_log.list()} == {"csv"}


async def test_import_csv_from_a_file(identities, tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_text("slack_id,system,identity\nU1,Okta,alice\n", encoding="utf-8")
    assert await identities.import_csv(path, actor="U0ADMIN") == 1
    assert await identities.get("U1", "Okta") == "alice"


async def test_import_csv_reports_every_bad_row_and_imports_nothing(identities, audit_log):
    text = (
        "slack_id,system,identity\n"  # 1
        "U1,Okta,alice\n"  # 2 good
        "U2,Okta\n"  # 3 too few
        "U3,,carol\n"  # 4 empty system
        "U4,AWS,dave,extra\n"  # 5 too many
        "U1,Okta,alice-again\n"  # 6 duplicate of line 2
        "U5,AWS,eve\n"  # 7 good
        'U6,"AWS"x,frank\n'  # 8 bad quoting
        "U7,AWS,gina\n"  # 9 good
    )
    with pytest.raises(IdentityImportError) as info:
        await identities.import_csv(text, actor="U0ADMIN")
    assert [line for line, _ in info.value.issues] == [3, 4, 5, 6, 8]
    assert "system is empty" in info.value.issues[1][1]
    assert "line 2" in info.value.issues[3][1]
    assert "line 3:" in str(info.value)
    assert await identities.list() == []
    assert await audit_log.list() == []


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("", 1, "missing header"),
        ("U1,Okta,alice\n", 1, "header must name"),
        ("slack_id,system\nU1,Okta\n", 1, "header must name"),
        ('slack_id,system,identity\nU1,Okta,"unterminated\n', 2, "unreadable CSV"),
    ],
    ids=["empty", "no-header", "missing-column", "bad-quoting"],
)
async def test_import_csv_structural_errors(identities, text, line, message):
    with pytest.raises(IdentityImportError) as info:
        await identities.import_csv(text, actor="U0ADMIN")
    assert info.value.issues[0][0] == line
    assert message in info.value.issues[0][1]


async def test_import_csv_hints_when_given_a_file_name_as_text(identities):
    with pytest.raises(IdentityImportError, match="pathlib.Path"):
        await identities.import_csv("overrides.csv", actor="U0ADMIN")
