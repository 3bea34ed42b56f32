"""API tokens in SQLite: create (the token is returned once, only its digest is kept), list, revoke.

Creating and revoking a token each write an audit row in the same transaction, naming the token
and its user, never the token itself. `find` and `touch` serve the HTTP API (core.tokens.TokenLookup).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import sqlite_utils

from core.clock import Clock, SystemClock
from core.errors import JitError
from core.models import AuditEvent
from core.secrets import SecretRegistry
from core.tokens import ApiToken, NewToken, Scope, check_name, new_token
from storage.audit import AuditWriter
from storage.db import Store, from_db_time, optional_db_time, to_db_time

_COLUMNS = (
    "id, name, slack_user, scopes, created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at, digest"
)
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is for people, not a write per call


class TokenError(JitError):
    """A token command was refused (a name in use, no such token); the message says why."""


def _row_to_token(row: tuple[object, ...]) -> tuple[ApiToken, str]:
    token_id, name, user, scopes, created, created_by, expires, revoked, revoked_by, used, stored = row
    token = ApiToken(
        id=str(token_id),
        name=str(name),
        user=str(user),
        scopes=frozenset(Scope(s) for s in str(scopes).split(",") if s),
        created_at=from_db_time(str(created)),
        created_by=str(created_by),
        expires_at=from_db_time(str(expires)) if expires else None,
        revoked_at=from_db_time(str(revoked)) if revoked else None,
        revoked_by=str(revoked_by) if revoked_by else None,
        last_used_at=from_db_time(str(used)) if used else None,
    )
    return token, str(stored)


class TokenStore:
    """The API tokens of a database; every change is audited."""

    def __init__(self, store: Store, clock: Clock | None = None, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._audit = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def create(
        self,
        user: str,
        *,
        actor: str,
        name: str | None = None,
        scopes: frozenset[Scope] = frozenset({Scope.REQUEST, Scope.READ}),
        expires_in: timedelta | None = None,
    ) -> tuple[ApiToken, NewToken]:
        """Make a token acting as Slack user `user`; returns its record and the token (shown once)."""
        user = user.strip()
        if not user:
            raise TokenError("give the Slack user id the token acts as (--user U123)")
        if not scopes:
            raise TokenError("a token needs at least one scope")
        fresh = new_token()
        name = check_name(name) if name is not None else f"token-{fresh.id}"
        now = self._clock.now()
        token = ApiToken(
            id=fresh.id,
            name=name,
            user=user,
            scopes=frozenset(scopes),
            created_at=now,
            created_by=actor,
            expires_at=now + expires_in if expires_in is not None else None,
        )

        def insert(db: sqlite_utils.Database) -> None:
            if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", [name]).fetchone():
                raise TokenError(f"a token named {name} already exists: choose another --name")
            db.execute(
                f"INSERT INTO api_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                [
                    token.id,
                    token.name,
                    token.user,
                    ",".join(sorted(s.value for s in token.scopes)),
                    to_db_time(now),
                    actor,
                    optional_db_time(token.expires_at),
                    fresh.digest,
                ],
            )
            detail = {
                "token": name,
                "token_id": token.id,
                "user": user,
                "scopes": sorted(s.value for s in token.scopes),
                "expires_at": token.expires_at,
            }
            self._audit.insert(db, AuditEvent(at=now, actor=actor, action="token.created", detail=detail))

        await self._store.write(insert)
        return token, fresh

    async def list(self) -> list[ApiToken]:
        """Every token, revoked and expired ones included, oldest first."""

        def query(db: sqlite_utils.Database) -> list[ApiToken]:
            rows = db.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, id").fetchall()
            return [_row_to_token(tuple(r))[0] for r in rows]

        return await self._store.read(query)

    async def revoke(self, name_or_id: str, *, actor: str) -> ApiToken:
        """Revoke a token by name or id, for good; TokenError if there is none or it is already revoked."""
        now = self._clock.now()

        def apply(db: sqlite_utils.Database) -> ApiToken:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE name = ? OR id = ? ORDER BY name = ? DESC LIMIT 1",
                [name_or_id, name_or_id, name_or_id],
            ).fetchone()
            if row is None:
                raise TokenError(f"no token named {name_or_id}")
            token, _ = _row_to_token(tuple(row))
            if token.revoked_at is not None:
                raise TokenError(f"the token {token.name} was already revoked")
            db.execute(
                "UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?", [to_db_time(now), actor, token.id]
            )
            detail = {"token": token.name, "token_id": token.id, "user": token.user}
            self._audit.insert(db, AuditEvent(at=now, actor=actor, action="token.revoked", detail=detail))
            return replace(token, revoked_at=now, revoked_by=actor)

        return await self._store.write(apply)

    async def find(self, token_id: str) -> tuple[ApiToken, str] | None:
        """The token with this id and its stored digest, or None."""

        def query(db: sqlite_utils.Database) -> tuple[ApiToken, str] | None:
            row = db.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", [token_id]).fetchone()
            return None if row is None else _row_to_token(tuple(row))

        return await self._store.read(query)

    async def touch(self, token_id: str, at: datetime) -> None:
        """Record a use at `at`, unless one was recorded less than TOUCH_EVERY before."""
        stamp, before = to_db_time(at), to_db_time(at - TOUCH_EVERY)

        def apply(db: sqlite_utils.Database) -> None:
            db.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                [stamp, token_id, before],
            )

        await self._store.write(apply)
