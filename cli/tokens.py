"""`bot.py tokens create|list|revoke`: API tokens in the database named by JITBOT_DB.

`create` prints the token once, alone on stdout (so `TOKEN=$(bot.py tokens create …)` works), and
what it is on stderr; only its SHA-256 is stored. Tokens expire (90 days unless `--expires`).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

from core.schema import parse_duration
from core.tokens import DEFAULT_SCOPES, parse_scopes
from storage.db import Store
from storage.tokens import TokenStore

DEFAULT_EXPIRY = "90d"


def parse_expiry(text: str) -> timedelta | None:
    """'90d' as a timedelta, 'never' as None; ValueError otherwise."""
    if text.strip().lower() == "never":
        return None
    return parse_duration(text)


async def create(
    db_path: str, user: str, name: str | None, expires: str, scopes: str | None, *, out: TextIO = sys.stdout
) -> int:
    """Make a token; print it once."""
    expires_in = parse_expiry(expires)
    chosen = parse_scopes(scopes) if scopes is not None else frozenset(DEFAULT_SCOPES)
    store = await Store.open(db_path)
    try:
        token, fresh = await TokenStore(store).create(
            user, actor=_actor(), name=name, scopes=chosen, expires_in=expires_in
        )
    finally:
        await store.close()
    print(fresh.text, file=out)
    until = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "never expires"
    print(
        f"token {token.name} for {token.user} ({', '.join(sorted(token.scopes))}), "
        f"{'until ' + until if token.expires_at else until}. It is shown only this once: store it as a secret.",
        file=sys.stderr,
    )
    return 0


async def list_tokens(db_path: str, *, out: TextIO = sys.stdout) -> int:
    """Every token: name, id, user, scopes, state, expiry, last use (never the token)."""
    store = await Store.open(db_path)
    try:
        tokens = await TokenStore(store).list()
    finally:
        await store.close()
    now = datetime.now(UTC)
    header = ("NAME", "ID", "USER", "SCOPES", "STATE", "EXPIRES", "LAST USED")

    def when(value: datetime | None) -> str:
        return value.isoformat(timespec="minutes").replace("+00:00", "Z") if value else "-"

    rows = [header] + [
        (t.name, t.id, t.user, ",".join(sorted(t.scopes)), t.state(now), when(t.expires_at), when(t.last_used_at))
        for t in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    return 0


async def revoke(db_path: str, name_or_id: str, *, out: TextIO = sys.stdout) -> int:
    """Revoke a token by name or id."""
    store = await Store.open(db_path)
    try:
        token = await TokenStore(store).revoke(name_or_id, actor=_actor())
    finally:
        await store.close()
    print(f"revoked {token.name} ({token.user})", file=out)
    return 0


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"
