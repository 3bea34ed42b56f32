"""API tokens at rest: shown once, stored only as a digest, audited when made or revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.tokens import Scope, digest, matches, token_id
from storage.tokens import TokenError, TokenStore

from .conftest import T0


@pytest.fixture
def tokens(store, clock, secrets) -> TokenStore:
    return TokenStore(store, clock, secrets=secrets)


async def test_a_new_token_is_returned_once_and_only_its_digest_is_stored(tokens, store):
    token, fresh = await tokens.create("U_ALICE", actor="cli:ops", name="ci-deploy", expires_in=timedelta(days=90))
    assert token_id(fresh.text) == token.id and fresh.text.startswith("jit_")
    rows = await store.read(lambda db: [tuple(r) for r in db.execute("SELECT * FROM api_tokens").fetchall()])
    dumped = repr(rows)
    secret = fresh.text.removeprefix(f"jit_{token.id}_")  # the random part (it may hold "_" itself)
    assert len(secret) >= 32 and secret not in dumped and digest(fresh.text) in dumped
    found, stored = await tokens.find(token.id)
    assert found == token and matches(fresh.text, stored) and not matches(fresh.text + "x", stored)
    assert token.expires_at == T0 + timedelta(days=90) and token.scopes == {Scope.REQUEST, Scope.READ}


async def test_creating_and_revoking_are_audited_without_the_token(tokens, audit_log):
    token, fresh = await tokens.create("U_BOB", actor="cli:ops", name="bob-laptop", scopes=frozenset(Scope))
    revoked = await tokens.revoke("bob-laptop", actor="cli:ops")
    assert revoked.state(T0) == "revoked" and revoked.revoked_by == "cli:ops"
    trail = await audit_log.list()
    assert [(e.action, e.detail["token"], e.detail["user"]) for e in trail] == [
        ("token.created", "bob-laptop", "U_BOB"),
        ("token.revoked", "bob-laptop", "U_BOB"),
    ]
    assert fresh.text not in repr(trail)
    with pytest.raises(TokenError, match="already revoked"):
        await tokens.revoke(token.id, actor="cli:ops")


async def test_names_are_unique_and_bounded(tokens):
    await tokens.create("U_ALICE", actor="cli:ops", name="ci")
    with pytest.raises(TokenError, match="already exists"):
        await tokens.create("U_BOB", actor="cli:ops", name="ci")
    for bad in ("", "with space", "x" * 65, "-dash-first"):
        with pytest.raises(ValueError, match="token name"):
            await tokens.create("U_BOB", actor="cli:ops", name=bad)
    with pytest.raises(TokenError, match="no token named"):
        await tokens.revoke("nope", actor="cli:ops")


async def test_a_token_expires_at_its_time(tokens, clock):
    token, _ = await tokens.create("U_ALICE", actor="cli:ops", expires_in=timedelta(hours=1))
    assert token.state(T0) == "active"
    assert token.state(T0 + timedelta(hours=1)) == "expired"
    assert [t.name for t in await tokens.list()] == [token.name]


async def test_last_use_is_recorded_at_most_once_a_minute(tokens):
    token, _ = await tokens.create("U_ALICE", actor="cli:ops")
    await tokens.touch(token.id, T0)
    await tokens.touch(token.id, T0 + timedelta(seconds=30))
    assert (await tokens.find(token.id))[0].last_used_at == T0
    await tokens.touch(token.id, T0 + timedelta(minutes=2))
    assert (await tokens.find(token.id))[0].last_used_at == T0 + timedelta(minutes=2)


def test_only_well_formed_tokens_have_an_id():
    assert token_id("jit_0123456789ab_" + "A" * 43) == "0123456789ab"
    for bad in ("", "jit_", "Bearer x", "jit_0123456789ab_" + "A" * 42, "jit_0123456789AB_" + "A" * 43, "x" * 10_000):
        assert token_id(bad) is None
